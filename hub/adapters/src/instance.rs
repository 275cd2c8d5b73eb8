//! Instances of one adapter: its module loaded (from the component cache, checked against the hub's ABI),
//! pre-instantiated once, and each instance created with its limits and `init` called; what every adapter of a
//! runtime shares; and how a failed call is told apart (memory, deadline, trap).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};

use crate::bindings::{Adapter, AdapterPre};
use crate::cache::{Cache, content_hash};
use crate::config::{AdapterConfig, ModuleSource, RuntimeOptions};
use crate::error::LoadError;
use crate::host::{self, HostServices, HostState};
use crate::metrics::{AdapterCounters, CrashKind, RuntimeMetrics};
use crate::{Allowlist, Capabilities};

/// Most pre-instantiated modules kept (distinct module contents); beyond it the map starts over.
const MAX_MODULES: usize = 64;

/// What every adapter of a runtime shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: Cache,
    pub(crate) host: Arc<HostServices>,
    pub(crate) metrics: RuntimeMetrics,
    pub(crate) options: RuntimeOptions,
    pub(crate) modules: Mutex<HashMap<[u8; 32], AdapterPre<HostState>>>,
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
            shared.host.clone(),
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
