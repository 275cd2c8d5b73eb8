//! The adapters Sextant ships, built to Wasm components and embedded in the binary.
//!
//! The hub resolves an `Adapter` whose `spec.module` is `builtin:<name>` with [`get`]; the hub's
//! fault-isolation tests load the misbehaving `faulty` adapter with [`test_module`].
//!
//! # Build flow
//! This crate's build script builds the `adapters/` cargo workspace (its own `Cargo.lock` and `target/`) for
//! `wasm32-wasip2` in release mode through `sextant-adapter-build`, which finds a toolchain by itself:
//! rustup with the `wasm32-wasip2` target, else Debian's `rustc-web` with `-Zbuild-std` (installed by
//! `.ci/wasm-toolchain`), else the build fails naming both fixes. The components are copied into `OUT_DIR`
//! and embedded with `include_bytes!`. The guest build reruns when a source of `adapters/`, `sdk/src`,
//! `sdk/wit` or `sdk/batch/src` changes; it takes ~1 min cold (std is compiled too on the Debian path) and
//! ~2 s when nothing changed in the guests. `SEXTANT_SKIP_ADAPTERS=1` builds this crate without components
//! ([`get`] then returns `None`), for machines that have no wasm toolchain and do not run adapters.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// The adapters the hub ships as `builtin:<name>`.
pub const NAMES: &[&str] = &["prometheus", "zipkin", "otlp", "logs"];

/// Adapters built only for tests: `faulty` traps, loops or allocates without bound on command.
pub const TEST_NAMES: &[&str] = &["faulty"];

/// The component of the builtin adapter `name` (one of [`NAMES`]).
pub fn get(name: &str) -> Option<&'static [u8]> {
    if !NAMES.contains(&name) {
        return None;
    }
    find(name)
}

/// The component of the test adapter `name` (one of [`TEST_NAMES`]); not reachable as `builtin:`.
pub fn test_module(name: &str) -> Option<&'static [u8]> {
    if !TEST_NAMES.contains(&name) {
        return None;
    }
    find(name)
}

/// True when the crate was built with its components (not with `SEXTANT_SKIP_ADAPTERS`).
pub fn embedded() -> bool {
    !COMPONENTS.is_empty()
}

fn find(name: &str) -> Option<&'static [u8]> {
    COMPONENTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn shipped_adapters_are_components() {
        if !embedded() {
            return;
        }
        for name in NAMES.iter().chain(TEST_NAMES) {
            let wasm = get(name)
                .or_else(|| test_module(name))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(wasm[..8], PREAMBLE, "{name}");
        }
    }

    #[test]
    fn test_adapters_are_not_builtin() {
        assert!(get("faulty").is_none());
        assert!(test_module("prometheus").is_none());
        assert!(get("nonexistent").is_none());
    }
}
