//! Errors of the adapter runtime.

use std::path::PathBuf;

/// The runtime could not be created.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `Runtime::new` was called outside a tokio runtime (adapters' outbound HTTP runs on it).
    #[error("the adapter runtime must be created inside a tokio runtime: {0}")]
    NoTokio(String),
    /// The wasmtime engine rejected its configuration.
    #[error("wasmtime engine: {0}")]
    Engine(String),
    /// The linker could not be set up with the host interfaces.
    #[error("linking host interfaces: {0}")]
    Linker(String),
    /// The cache directory could not be created.
    #[error("component cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An adapter could not be loaded, instantiated or initialised.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module's bytes could not be found or read.
    #[error("adapter {adapter}: module {module}: {reason}")]
    Source {
        /// The adapter's name.
        adapter: String,
        /// The module (path, `builtin:name` or label).
        module: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not a valid Wasm component (a core module, garbage, an unsupported feature).
    #[error("adapter {adapter}: module {module} is not a valid Wasm component: {reason}")]
    NotAComponent {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component does not implement the `sextant:adapter/adapter` world, or imports something the hub does
    /// not provide.
    #[error("adapter {adapter}: module {module} does not fit the sextant:adapter world: {reason}")]
    World {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// What wasmtime said.
        reason: String,
    },
    /// The component was built against another version of the adapter ABI (`sdk/wit`, the WIT package
    /// `sextant:adapter@VERSION` its imports name) than the one this hub implements.
    #[error(
        "adapter {adapter}: module {module} was built against the adapter ABI sextant:adapter@{built_with}, \
         but this hub implements sextant:adapter@{hub}: rebuild the adapter with a sextant-adapter-sdk for \
         sextant:adapter@{hub}"
    )]
    IncompatibleSdk {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// The ABI version the component imports.
        built_with: String,
        /// The ABI version of this hub ([`crate::ABI_VERSION`]).
        hub: &'static str,
    },
    /// Instantiation failed or trapped.
    #[error("adapter {adapter}: module {module}: instantiation failed: {reason}")]
    Instantiate {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// Why.
        reason: String,
    },
    /// `init` returned an error.
    #[error("adapter {adapter}: module {module}: init rejected the config: {message}")]
    Init {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// The adapter's message.
        message: String,
    },
    /// `init` trapped, ran out of time or memory.
    #[error("adapter {adapter}: module {module}: init crashed: {reason}")]
    InitCrashed {
        /// The adapter's name.
        adapter: String,
        /// The module.
        module: String,
        /// The trap.
        reason: String,
    },
    /// The configuration is unusable (limits of zero, a bad allowlist entry, an unwritable stdout file).
    #[error("adapter {adapter}: {reason}")]
    Config {
        /// The adapter's name.
        adapter: String,
        /// Why.
        reason: String,
    },
}

/// A `check` call did not produce a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterCallError {
    /// The adapter returned an error.
    #[error("adapter {adapter}: {message}")]
    Adapter {
        /// The adapter's name.
        adapter: String,
        /// Whether the adapter said that retrying could help.
        retryable: bool,
        /// The adapter's message.
        message: String,
    },
    /// The instance trapped, overran its deadline or its memory; it is being restarted.
    #[error("adapter {adapter} crashed: {reason}")]
    Crashed {
        /// The adapter's name.
        adapter: String,
        /// The trap.
        reason: String,
    },
    /// No answer within the time limit (the worker is busy or the instance is being restarted).
    #[error("adapter {adapter}: no decision within the time limit")]
    Timeout {
        /// The adapter's name.
        adapter: String,
    },
    /// The adapter does not implement `check`, or it was drained.
    #[error("adapter {adapter} is not available for check: {reason}")]
    Unavailable {
        /// The adapter's name.
        adapter: String,
        /// Why.
        reason: String,
    },
}
