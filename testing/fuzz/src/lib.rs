//! The bodies of Sextant's fuzz targets, as plain functions of the input bytes.
//!
//! Every decoder of untrusted input has a target here: the hub's native Check and Report decoders and the
//! compressed attribute form (`sextant-attributes`), the batch encoding at the hub↔adapter boundary
//! (`sextant-batch`), the YAML resource loader
//! (`sextant-resources` and the hub's kinds in `hub-config`), CEL compilation and type checking
//! (`hub-policy`) and pilot's loading and validation of the Istio kinds (`pilot-config`). Each function
//! returns normally for any input and panics only when it finds a bug: a panic in the code under test, or
//! an invariant it checks (decoders agreeing with prost, encode/decode round trips) failing.
//!
//! The libFuzzer binaries in `fuzz/fuzz_targets/` (a cargo workspace of its own, built with nightly
//! `cargo fuzz`) are one-liners calling these functions; this crate's test `tests/replay.rs` runs every input
//! of `fuzz/corpus/TARGET/` and `fuzz/artifacts/TARGET/` through them on stable, as part of
//! `cargo test --workspace`, so a crash once found and fixed stays fixed.

mod attributes;
mod batch;
mod cel;
mod config;
mod pilot;

pub use attributes::{compressed, native_check, native_report};
pub use batch::batch;
pub use cel::cel;
pub use config::config_yaml;
pub use pilot::pilot_config;

/// A fuzz target: its name (the file `fuzz/fuzz_targets/NAME.rs` and the directories `fuzz/corpus/NAME/`
/// and `fuzz/artifacts/NAME/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target, by name.
pub const TARGETS: &[Target] = &[
    ("native_check", native_check),
    ("native_report", native_report),
    ("compressed", compressed),
    ("batch", batch),
    ("config_yaml", config_yaml),
    ("cel", cel),
    ("pilot_config", pilot_config),
];
