//! The [`Runtime`]: one wasmtime engine per hub, the component cache, the shared metrics registry and the
//! loading, instantiation and initialisation of adapters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use crate::bindings::{Adapter, AdapterPre};
use crate::cache::{Cache, CacheStats, content_hash};
use crate::config::{AdapterConfig, ModuleSource, RuntimeOptions};
use crate::error::{LoadError, RuntimeError};
use crate::handle::AdapterHandle;
use crate::host::{self, HostState};
use crate::metrics::{AdapterCounters, CrashKind, RuntimeMetrics};
use crate::outbound::{self, Client};
use crate::registry::Registry;
use crate::{Allowlist, Capabilities};

/// Most pre-instantiated modules kept (distinct module contents); beyond it the map starts over.
const MAX_MODULES: usize = 64;

/// What every adapter of a runtime shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    cache: Cache,
    pub(crate) registry: Registry,
    pub(crate) metrics: RuntimeMetrics,
    pub(crate) http: Client,
    pub(crate) tokio: tokio::runtime::Handle,
    pub(crate) options: RuntimeOptions,
    modules: Mutex<HashMap<[u8; 32], AdapterPre<HostState>>>,
}

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
                registry: Registry::new(options.max_families, options.max_series_per_family),
                metrics: RuntimeMetrics::new(),
                http: outbound::client(),
                tokio,
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
        &self.shared.registry
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

/// Everything needed to (re-)create instances of one adapter.
pub(crate) struct AdapterSpec {
    pub(crate) name: Arc<str>,
    pub(crate) module: String,
    pre: AdapterPre<HostState>,
    config_json: String,
    pub(crate) limits: crate::Limits,
    allowlist: Arc<Allowlist>,
    stdout: Option<wasmtime_wasi::cli::OutputFile>,
    pub(crate) counters: Arc<AdapterCounters>,
    /// Epoch ticks per call.
    ticks: u64,
}

/// A live instance.
pub(crate) struct Live {
    pub(crate) store: Store<HostState>,
    pub(crate) adapter: Adapter,
    pub(crate) caps: Capabilities,
}

impl AdapterSpec {
    /// Checks the config, reads and compiles the module.
    pub(crate) fn new(
        shared: &Shared,
        cfg: &AdapterConfig,
        counters: Arc<AdapterCounters>,
    ) -> Result<Self, LoadError> {
        let config_error = |reason: String| LoadError::Config {
            adapter: cfg.name.clone(),
            reason,
        };
        let l = &cfg.limits;
        if l.time_per_batch.is_zero() || l.queue_records == 0 || l.batch_size == 0 || l.memory == 0
        {
            return Err(config_error(
                "limits: memory, timePerBatch, queueRecords and batchSize must be greater than zero".into(),
            ));
        }
        let allowlist = Allowlist::parse(&cfg.allowed_hosts).map_err(config_error)?;
        let stdout = match &cfg.stdout {
            Some(path) => Some(wasmtime_wasi::cli::OutputFile::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| config_error(format!("stdout file {}: {e}", path.display())))?,
            )),
            None => None,
        };
        let config_json = serde_json::to_string(&cfg.config)
            .map_err(|e| config_error(format!("config is not serializable: {e}")))?;
        let tick = shared.options.epoch_tick.max(Duration::from_millis(1));
        // One tick more than the quotient: the first tick may come right after the deadline is set.
        let ticks = u64::try_from(l.time_per_batch.as_nanos() / tick.as_nanos())
            .unwrap_or(u64::MAX / 2)
            + 1;
        Ok(Self {
            name: Arc::from(cfg.name.as_str()),
            module: cfg.module.to_string(),
            pre: load_module(shared, cfg)?,
            config_json,
            limits: cfg.limits.clone(),
            allowlist: Arc::new(allowlist),
            stdout,
            counters,
            ticks,
        })
    }

    /// Creates an instance and calls `init`.
    pub(crate) fn instantiate(&self, shared: &Arc<Shared>) -> Result<Live, LoadError> {
        let state = HostState::new(
            host::wasi_ctx(self.stdout.as_ref()),
            self.limits.memory,
            self.name.clone(),
            shared.clone(),
            self.counters.clone(),
            self.allowlist.clone(),
        );
        let mut store = Store::new(&shared.engine, state);
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store);
        let adapter = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate {
                adapter: self.name.to_string(),
                module: self.module.clone(),
                reason: crash_reason(&e, &store),
            })?;
        self.arm(&mut store);
        match adapter.call_init(&mut store, &self.config_json) {
            Ok(Ok(caps)) => Ok(Live {
                store,
                adapter,
                caps: Capabilities::from_wit(caps),
            }),
            Ok(Err(message)) => Err(LoadError::Init {
                adapter: self.name.to_string(),
                module: self.module.clone(),
                message,
            }),
            Err(e) => Err(LoadError::InitCrashed {
                adapter: self.name.to_string(),
                module: self.module.clone(),
                reason: crash_reason(&e, &store),
            }),
        }
    }

    /// Sets the deadline of the next call: epoch ticks for wasm code, an instant for host calls.
    pub(crate) fn arm(&self, store: &mut Store<HostState>) {
        store.set_epoch_deadline(self.ticks);
        store.data_mut().deadline = Instant::now() + self.limits.time_per_batch;
    }
}

/// Why a call failed: memory exhaustion, deadline overrun or another trap.
pub(crate) fn classify(e: &wasmtime::Error, store: &Store<HostState>) -> CrashKind {
    if store.data().limiter.exhausted {
        CrashKind::Memory
    } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        CrashKind::Deadline
    } else {
        CrashKind::Trap
    }
}

/// A one-line description of a crash.
pub(crate) fn crash_reason(e: &wasmtime::Error, store: &Store<HostState>) -> String {
    match classify(e, store) {
        CrashKind::Deadline => {
            "deadline exceeded (time_per_batch): the call was interrupted".to_string()
        }
        CrashKind::Memory => format!("memory limit exceeded: {e:#}"),
        _ => format!("{e:#}"),
    }
}

fn load_module(shared: &Shared, cfg: &AdapterConfig) -> Result<AdapterPre<HostState>, LoadError> {
    let module = cfg.module.to_string();
    let source_error = |reason: String| LoadError::Source {
        adapter: cfg.name.clone(),
        module: module.clone(),
        reason,
    };
    let bytes: Arc<[u8]> = match &cfg.module {
        ModuleSource::Builtin(name) => {
            let lookup = shared.options.builtins.ok_or_else(|| {
                source_error("no builtin adapters are available in this runtime".into())
            })?;
            Arc::from(
                lookup(name)
                    .ok_or_else(|| source_error(format!("no builtin adapter named {name:?}")))?,
            )
        }
        ModuleSource::Path(path) => {
            Arc::from(std::fs::read(path).map_err(|e| source_error(format!("cannot read: {e}")))?)
        }
        ModuleSource::Bytes { bytes, .. } => bytes.clone(),
    };
    let hash = content_hash(&bytes);
    let modules = |s: &Shared| {
        s.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    };
    if let Some(pre) = modules(shared) {
        return Ok(pre);
    }
    let not_a_component = |reason: String| LoadError::NotAComponent {
        adapter: cfg.name.clone(),
        module: module.clone(),
        reason,
    };
    if bytes.len() < 8 || bytes[..4] != *b"\0asm" {
        return Err(not_a_component(
            "not a WebAssembly binary (no \\0asm header)".into(),
        ));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(not_a_component(
            "it is a core WebAssembly module; build the adapter for wasm32-wasip2 (or wrap it with \
             `wasm-tools component new`)"
                .into(),
        ));
    }
    let component: Component = shared
        .cache
        .load_or_compile(&shared.engine, &bytes, &hash)
        .map_err(|e| not_a_component(format!("{e:#}")))?;
    if let Some(built_with) = abi_version_of(&component, &shared.engine)
        && built_with != crate::ABI_VERSION
    {
        return Err(LoadError::IncompatibleSdk {
            adapter: cfg.name.clone(),
            module: module.clone(),
            built_with,
            hub: crate::ABI_VERSION,
        });
    }
    let world_error = |e: wasmtime::Error| LoadError::World {
        adapter: cfg.name.clone(),
        module: module.clone(),
        reason: format!("{e:#}"),
    };
    let pre = shared
        .linker
        .instantiate_pre(&component)
        .map_err(world_error)?;
    let pre = AdapterPre::new(pre).map_err(world_error)?;
    let mut map = shared.modules.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= MAX_MODULES {
        map.clear();
    }
    map.insert(hash, pre.clone());
    Ok(pre)
}

/// The version of the `sextant:adapter` package whose interfaces the component imports (`unversioned` for an
/// import without one); `None` when it imports none of them (nothing it calls can differ).
fn abi_version_of(component: &Component, engine: &wasmtime::Engine) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .find_map(|(name, _)| {
            let rest = name.strip_prefix("sextant:adapter/")?;
            Some(
                rest.split_once('@')
                    .map_or_else(|| "unversioned".to_string(), |(_, v)| v.to_string()),
            )
        })
}
