//! Kubernetes-style resources read from a tree of YAML files, shared by every role that reads configuration.
//!
//! A configuration directory holds multi-document YAML; each document is a resource with `apiVersion`, `kind`,
//! `metadata` and `spec`. This crate reads the files ([`ConfigFiles`]), splits them into documents whose
//! envelope is checked and whose spec is still untyped ([`RawResource`]), and types a spec on demand
//! ([`RawResource::into_resource`]), keeping for every field the file and line it came from ([`Origin`]) so that
//! any later validation can point at it ([`ConfigError`]). Each role's loader (the hub's `hub-config`, pilot's
//! `pilot-config`) picks the API group it knows from the same documents and skips the others; documents of
//! Istio kinds neither role reads are counted, with a hint ([`istio`]).

mod document;
mod error;
mod files;
pub mod istio;
mod locate;

pub use document::{Origin, RawResource, Resource, check_duplicates, documents, keep_first};
pub use error::{ConfigError, ConfigErrors, Location};
pub use files::{ConfigFiles, yaml_files};

#[cfg(test)]
mod tests;
