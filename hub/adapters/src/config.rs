//! What to run: an adapter's module, its configuration and its limits, and the runtime's own options.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One adapter to run, built from an `Adapter` resource by the hub.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// `ns/name`, used in logs and as the `adapter` metric label.
    pub name: String,
    /// Where the component's bytes come from.
    pub module: ModuleSource,
    /// The adapter's `spec.config`, passed to its `init` as JSON text.
    pub config: serde_json::Value,
    /// Memory, time and queue limits.
    pub limits: Limits,
    /// Outbound HTTP allowlist: `host:port`, `host` (any port) or `*.domain` (any subdomain, any port; also
    /// `*.domain:port`). Empty: no outbound HTTP at all.
    pub allowed_hosts: Vec<String>,
    /// File the guest's stdout is appended to; `None`: the hub's stdout. The guest's stderr always goes to the
    /// hub's stderr.
    pub stdout: Option<PathBuf>,
}

impl AdapterConfig {
    /// A config with default limits, no outbound HTTP and stdout inherited.
    pub fn new(name: impl Into<String>, module: ModuleSource, config: serde_json::Value) -> Self {
        Self {
            name: name.into(),
            module,
            config,
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            stdout: None,
        }
    }
}

/// Where a component's bytes come from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// An adapter shipped with Sextant, looked up through [`RuntimeOptions::builtins`].
    Builtin(String),
    /// A `.wasm` component file on disk.
    Path(PathBuf),
    /// Bytes already in memory; `label` names them in errors and logs.
    Bytes {
        /// What to call these bytes in messages.
        label: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl std::fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(name) => write!(f, "builtin:{name}"),
            Self::Path(path) => write!(f, "{}", path.display()),
            Self::Bytes { label, .. } => f.write_str(label),
        }
    }
}

/// Per-adapter limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most bytes of linear memory an instance may have (all its memories together).
    pub memory: u64,
    /// Longest one call (`init`, a batch, `check`) may run before the instance is stopped.
    pub time_per_batch: Duration,
    /// Most records accepted but not yet delivered or dropped (queued plus in the batch being delivered).
    pub queue_records: usize,
    /// Records per batch: a batch is delivered as soon as it has this many records.
    pub batch_size: usize,
    /// A batch that is not full is delivered this long after its first record arrived.
    pub flush_interval: Duration,
    /// Further attempts for a batch after a retryable error or a crash of the instance.
    pub retries: u32,
    /// First wait before a retry or a re-instantiation; doubled after each consecutive failure.
    pub backoff_initial: Duration,
    /// Longest wait before a retry or a re-instantiation.
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: 64 << 20,
            time_per_batch: Duration::from_secs(2),
            queue_records: 10_000,
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            retries: 2,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// Looks up the bytes of a builtin adapter by name (the hub passes `hub_builtin_adapters::get`).
pub type BuiltinLookup = fn(&str) -> Option<&'static [u8]>;

/// Options of the [`Runtime`](crate::Runtime), one per hub.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Directory of precompiled components; `None`: compile every module on load.
    pub cache_dir: Option<PathBuf>,
    /// Where [`ModuleSource::Builtin`] modules come from; `None`: builtin modules cannot be loaded.
    pub builtins: Option<BuiltinLookup>,
    /// Most metric families adapters may define in the [`Registry`](crate::Registry), all adapters together.
    pub max_families: usize,
    /// Most label sets per family.
    pub max_series_per_family: usize,
    /// Largest response body an adapter's `http.send` accepts.
    pub max_http_response_bytes: usize,
    /// Interval of the epoch ticker that enforces call deadlines: a runaway call stops at most this long
    /// after its deadline.
    pub epoch_tick: std::time::Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: None,
            builtins: None,
            max_families: 1000,
            max_series_per_family: 10_000,
            max_http_response_bytes: 4 << 20,
            epoch_tick: std::time::Duration::from_millis(10),
        }
    }
}
