//! The hub's configuration as Kubernetes-style resources.
//!
//! Policy authors write `Policy` and `RateLimit` resources (`policy.sextant.dev/v1alpha1`) as multi-document
//! YAML in a directory tree. This crate reads them ([`load_path`]), keeping for every field the file and line
//! it came from so that later validation (CEL compilation in `hub-policy`) can point at it, and generates the
//! CustomResourceDefinitions from the same Rust types ([`crds`]). Resources of other API groups (Istio's, for
//! pilot) are skipped.

mod error;
mod load;
mod locate;
mod resources;

pub use error::{ConfigError, ConfigErrors, Location};
pub use load::{ConfigFiles, ConfigSet, Origin, Resource, load_path, load_texts, yaml_files};
pub use resources::{
    API_VERSION, Action, DefaultAction, FailurePolicy, GROUP, HeaderEdits, HeaderRules, Limit,
    Policy, PolicySpec, RateLimit, RateLimitSpec, Rule, RuleStatus,
};

/// The CustomResourceDefinitions of the hub's kinds, generated from the Rust types.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![Policy::crd(), RateLimit::crd()]
}

/// Parses a duration such as `60s`, `1m`, `1h30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 60s, 1m, 1h"))
}

#[cfg(test)]
mod tests;
