//! The [`Runtime`]: one wasmtime engine per hub, the component cache, the shared metrics registry and the
//! loading, instantiation and initialisation of adapters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use crate::Capabilities;
use crate::bindings::Adapter;
use crate::cache::{Cache, CacheStats};
use crate::config::{AdapterConfig, RuntimeOptions};
use crate::error::{LoadError, RuntimeError};
use crate::handle::AdapterHandle;
use crate::host::{HostServices, HostState};
use crate::instance::{AdapterSpec, Shared};
use crate::metrics::RuntimeMetrics;
use crate::outbound::Outbound;
use crate::registry::Registry;

/// The hub's Wasm adapter runtime. One per hub; create it inside the hub's tokio runtime.
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine (component model, epoch interruption), the linker with the host interfaces and a
    /// restricted WASI p2, and the epoch ticker thread. Must be called within a tokio runtime: adapters'
    /// outbound HTTP runs on it.
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let tokio = tokio::runtime::Handle::try_current()
            .map_err(|e| RuntimeError::NoTokio(e.to_string()))?;
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Epoch interruption rather than fuel: the deadline is wall-clock time (what `time_per_batch` means
        // and what covers time spent in host calls too), and it is the cheaper of the two (see the crate docs).
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Linker(format!("{e:#}")))?;
        Adapter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| RuntimeError::Linker(format!("{e:#}")))?;

        if let Some(dir) = &options.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let cache = Cache::new(options.cache_dir.clone(), &engine);
        spawn_ticker(&engine, options.epoch_tick)?;
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                host: Arc::new(HostServices {
                    registry: Registry::new(options.max_families, options.max_series_per_family),
                    outbound: Outbound::new(tokio, options.max_http_response_bytes),
                }),
                metrics: RuntimeMetrics::new(),
                options,
                modules: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Compiles (or loads from the cache) the module, instantiates it once and calls `init` with the config.
    /// Used by `sextant validate` and before a reload commits. Runs on its own thread, never on a tokio
    /// worker.
    pub async fn validate(&self, cfg: &AdapterConfig) -> Result<Capabilities, LoadError> {
        let shared = self.shared.clone();
        let cfg = cfg.clone();
        let (adapter, module) = (cfg.name.clone(), cfg.module.to_string());
        run_on_thread(format!("validate {}", cfg.name), move || {
            // A validation's counters go nowhere: only started adapters appear in the metrics.
            let counters = RuntimeMetrics::new().for_adapter(&cfg.name);
            let spec = AdapterSpec::new(&shared, &cfg, counters)?;
            spec.instantiate(&shared).map(|live| live.caps)
        })
        .await
        .unwrap_or_else(|reason| {
            Err(LoadError::Instantiate {
                adapter,
                module,
                reason,
            })
        })
    }

    /// Starts a worker for this adapter: loads, instantiates and initialises it (an error is returned as from
    /// [`Runtime::validate`]), then delivers what is submitted to the returned handle.
    pub async fn start(&self, cfg: AdapterConfig) -> Result<AdapterHandle, LoadError> {
        crate::worker::start(self.shared.clone(), cfg).await
    }

    /// What adapters recorded through the `metrics` host interface.
    pub fn registry(&self) -> &Registry {
        &self.shared.host.registry
    }

    /// Registers the runtime's own metrics (`sextant_hub_adapter_*`, label `adapter`) in the hub's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
    }

    /// How the component cache was used.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.counters.snapshot()
    }
}

fn spawn_ticker(engine: &Engine, tick: Duration) -> Result<(), RuntimeError> {
    let weak = engine.weak();
    let tick = tick.max(Duration::from_millis(1));
    std::thread::Builder::new()
        .name("sextant-epoch".into())
        .spawn(move || {
            // Ends when the engine is gone (the runtime and every store dropped).
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .map(drop)
        .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker thread: {e}")))
}

/// Runs blocking work on a new thread and awaits its result without blocking the tokio runtime. `Err` only
/// when the thread could not be started or panicked.
pub(crate) async fn run_on_thread<T: Send + 'static>(
    name: String,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    rx.await.map_err(|_| "the thread panicked".to_string())
}
