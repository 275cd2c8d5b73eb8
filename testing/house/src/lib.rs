//! The house rules of the source tree, checked by reading it (see `tests/house.rs`).
//!
//! Each role (hub, pilot, proxy) is a folder of small crates; roles talk only through wire APIs and share only
//! neutral crates, never each other's ([`workspace::Workspace::cross_role`]); and no two modules of a crate
//! import each other in a circle ([`modules::ModuleGraph::circles`]).

pub mod modules;
pub mod workspace;

#[cfg(test)]
mod tests;
