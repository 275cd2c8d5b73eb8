//! The store data of one adapter instance and the host interfaces it imports (log, clock, metrics, http),
//! plus the restricted WASI p2 context every Rust `std` guest needs.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::sextant::adapter::{clock, http, log, metrics, types};
use crate::metrics::AdapterCounters;
use crate::outbound::{Outbound, Sender};
use crate::registry::{FamilyDef, Registry};

/// What the host interfaces of every instance share: the registry adapters record metrics into, and
/// outbound HTTP.
pub(crate) struct HostServices {
    /// The metrics adapters define and record.
    pub(crate) registry: Registry,
    /// `http.send`.
    pub(crate) outbound: Outbound,
}

/// Per-instance state: WASI, limits, the adapter's identity and the call deadline.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) adapter: Arc<str>,
    pub(crate) services: Arc<HostServices>,
    pub(crate) counters: Arc<AdapterCounters>,
    pub(crate) allowlist: Arc<crate::Allowlist>,
    /// Families this adapter defined: it may record only into these.
    /// Indexed by family handle (handles are dense registry indexes): asked once per recorded sample.
    families: Vec<bool>,
    /// When the current call must end; host calls that wait (http.send) stop by then.
    pub(crate) deadline: Instant,
    started: Instant,
}

impl HostState {
    pub(crate) fn new(
        wasi: WasiCtx,
        memory: u64,
        adapter: Arc<str>,
        services: Arc<HostServices>,
        counters: Arc<AdapterCounters>,
        allowlist: Arc<crate::Allowlist>,
    ) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory),
            adapter,
            services,
            counters,
            allowlist,
            families: Vec::new(),
            deadline: Instant::now(),
            started: Instant::now(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory limit of one store; remembers whether it refused a growth, to tell a memory-exhaustion crash
/// from other traps.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exhausted: bool,
}

/// Most table elements per table: guests compiled from Rust need a few thousand at most.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            exhausted: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exhausted = true;
            // A trap rather than a failed `memory.grow`: Rust guests abort on allocation failure anyway, and a
            // trap names the cause.
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        // A component instantiates a few core modules (the guest, WASI adapter shims).
        32
    }

    fn memories(&self) -> usize {
        8
    }

    fn tables(&self) -> usize {
        32
    }
}

/// Builds the restricted WASI context: no preopened directories, no environment or arguments, no sockets or
/// name lookups; stdout inherited or appended to a file; stderr inherited.
pub(crate) fn wasi_ctx(stdout: Option<&wasmtime_wasi::cli::OutputFile>) -> WasiCtx {
    let mut b = WasiCtx::builder();
    match stdout {
        Some(file) => b.stdout(file.clone()),
        None => b.inherit_stdout(),
    };
    b.inherit_stderr()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    b.build()
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        let adapter = &*self.adapter;
        match level {
            log::Level::Trace => tracing::trace!(adapter, "{message}"),
            log::Level::Debug => tracing::debug!(adapter, "{message}"),
            log::Level::Info => tracing::info!(adapter, "{message}"),
            log::Level::Warn => tracing::warn!(adapter, "{message}"),
            log::Level::Error => tracing::error!(adapter, "{message}"),
        }
    }
}

impl clock::Host for HostState {
    fn now_unix_nanos(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn monotonic_nanos(&mut self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl metrics::Host for HostState {
    fn define(&mut self, family: metrics::Family) -> Result<u32, String> {
        let kind = match family.kind {
            metrics::Kind::Counter => sextant_batch::MetricKind::Counter,
            metrics::Kind::Gauge => sextant_batch::MetricKind::Gauge,
            metrics::Kind::Histogram => sextant_batch::MetricKind::Histogram,
        };
        let handle = self
            .services
            .registry
            .define(FamilyDef {
                name: family.name,
                help: family.help,
                kind,
                label_names: family.label_names,
                buckets: family.buckets,
            })
            .map_err(|e| e.to_string())?;
        let i = handle as usize;
        if self.families.len() <= i {
            self.families.resize(i + 1, false);
        }
        self.families[i] = true;
        Ok(handle)
    }

    fn record(&mut self, samples: Vec<u8>) -> Result<u32, String> {
        let families = &self.families;
        let outcome = self.services.registry.record(&samples, &|h| {
            families.get(h as usize).copied().unwrap_or(false)
        })?;
        if outcome.skipped > 0 {
            self.counters.samples_skipped(u64::from(outcome.skipped));
        }
        Ok(outcome.applied)
    }
}

impl http::Host for HostState {
    fn send(&mut self, req: http::Request) -> Result<http::Response, http::Error> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let from = Sender {
            adapter: &self.adapter,
            allowlist: &self.allowlist,
            counters: &self.counters,
        };
        self.services.outbound.send(from, req, left)
    }
}

impl types::Host for HostState {}
