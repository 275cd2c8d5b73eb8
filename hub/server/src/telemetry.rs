//! The Report path: Telemetry rules and the adapters they deliver to, swapped as one on reload.
//!
//! A reload validates Telemetry and Adapter resources (pure), then starts the adapters that are new or
//! changed (their `init` runs: an adapter that refuses its config fails the whole reload, and the running
//! pipeline stays). Only then is the new pipeline swapped in; replaced adapters drain what they have queued in
//! the background. Unchanged adapters keep running: their queue and instance carry over.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use hub_adapters::{AdapterConfig, AdapterHandle, Capabilities, Limits, ModuleSource, Runtime};
use hub_config::{AdapterSpec, ConfigError, ConfigErrors, ConfigSet, PolicySpec, Resource};
use hub_policy::{AdapterVerdict, PolicyAdapters, VerdictFuture};
use hub_telemetry::{Batches, RecordStats, Rules};
use sextant_attributes::{Bag, Changes};

use crate::metrics::Metrics;

/// How long a replaced adapter may take to deliver what it had queued.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The rules and the running adapter of each adapter they name (same order as `rules.adapters`), and every
/// running adapter by `namespace/name` (policy adapters need not receive telemetry).
struct Pipeline {
    rules: Rules,
    handles: Vec<Option<AdapterHandle>>,
    by_key: HashMap<String, AdapterHandle>,
    /// Told when the pipeline is dropped, that is when the last Report still evaluating with it (after a
    /// reload replaced it) has submitted its records: the adapters it replaced drain only then.
    on_retired: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Segment writers of finished Reports (empty, reset by `Batches::take`), kept so the next Report writes
    /// into grown buffers and string tables instead of new ones. Bounded by [`SPARE_BATCHES`].
    spare: std::sync::Mutex<Vec<Batches>>,
}

/// Most spare segment writers a pipeline keeps (about the Reports evaluated at the same time).
const SPARE_BATCHES: usize = 16;

impl Drop for Pipeline {
    fn drop(&mut self) {
        let tx = self
            .on_retired
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
    }
}

struct RunningAdapter {
    fingerprint: String,
    handle: AdapterHandle,
}

/// Module files of the active adapters with their (length, mtime), to notice a rebuilt `.wasm`.
type ModuleStamps = Vec<(PathBuf, Option<(u64, SystemTime)>)>;

/// A validated, started, not yet active pipeline.
pub struct Prepared {
    pipeline: Pipeline,
    running: HashMap<String, RunningAdapter>,
    modules: ModuleStamps,
}

/// What happened to one batch of reported bags.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Bags evaluated.
    pub bags: u64,
    /// Records made.
    pub stats: RecordStats,
    /// Segments an adapter's full queue refused.
    pub segments_dropped: u64,
}

/// The hub's telemetry: the active pipeline and the adapter runtime.
pub struct Telemetry {
    runtime: Arc<Runtime>,
    active: RwLock<Arc<Pipeline>>,
    running: tokio::sync::Mutex<HashMap<String, RunningAdapter>>,
    modules: RwLock<ModuleStamps>,
}

impl Telemetry {
    /// An empty pipeline on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Telemetry {
            runtime,
            active: RwLock::new(Arc::new(Pipeline {
                rules: Rules::default(),
                handles: Vec::new(),
                by_key: HashMap::new(),
                on_retired: std::sync::Mutex::new(None),
                spare: std::sync::Mutex::new(Vec::new()),
            })),
            running: tokio::sync::Mutex::new(HashMap::new()),
            modules: RwLock::new(Vec::new()),
        }
    }

    /// The adapter runtime (its registry is what `:42422/metrics` serves).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn pipeline(&self) -> Arc<Pipeline> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Evaluates `bags` and hands the records to the adapters. Never blocks: a full adapter queue drops.
    pub fn ingest_with(&self, bags: impl IntoIterator<Item = Bag>, metrics: &Metrics) -> Ingested {
        self.ingest_each(
            |visit| {
                for bag in bags {
                    visit(&bag, Changes::All);
                }
            },
            metrics,
        )
    }

    /// Like [`Telemetry::ingest_with`] for bags produced one at a time: `feed` hands each bag to the visitor it
    /// is given, with what changed since the previous one (values computed from unchanged attributes are kept).
    pub fn ingest_each(
        &self,
        feed: impl FnOnce(&mut dyn FnMut(&Bag, Changes<'_>)),
        metrics: &Metrics,
    ) -> Ingested {
        let p = self.pipeline();
        let mut out = Ingested::default();
        if p.rules.is_empty() {
            feed(&mut |_, _| out.bags += 1);
            return out;
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let spare = || p.spare.lock().unwrap_or_else(|e| e.into_inner());
        let mut batches: Batches = spare().pop().unwrap_or_else(|| p.rules.batches());
        feed(&mut |bag, changes| {
            out.stats += p.rules.record_changed(bag, changes, now, &mut batches);
            out.bags += 1;
        });
        let segments = batches.take();
        {
            let mut spare = spare();
            if spare.len() < SPARE_BATCHES {
                spare.push(batches);
            }
        }
        for seg in segments {
            let accepted = match p.handles.get(seg.adapter).and_then(Option::as_ref) {
                Some(h) => h.submit(seg.kind, seg.bytes, seg.records),
                None => false,
            };
            if !accepted {
                out.segments_dropped += 1;
            }
        }
        metrics.telemetry(&out.stats, out.segments_dropped);
        out
    }

    /// A check of whether a module file of the active adapters changed on disk since it was loaded: it
    /// `stat`s the files, so run it off the runtime's workers.
    pub fn modules_check(&self) -> impl FnOnce() -> bool + Send + 'static {
        let stamps = self
            .modules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        move || stamps.iter().any(|(path, seen)| file_stamp(path) != *seen)
    }

    /// Starts the adapters of `v` that are new or changed (their init runs). Nothing active changes; on error
    /// every adapter started here is stopped.
    pub async fn prepare(&self, v: Validated<'_>) -> Result<Prepared, ConfigErrors> {
        let Validated {
            rules,
            adapters: configs,
            policy_adapters,
        } = v;
        let mut errors = Vec::new();
        let current = self.running.lock().await;
        let mut running = HashMap::new();
        let mut started = Vec::new();
        let mut modules = Vec::new();
        for (res, cfg) in configs {
            let key = res.key();
            if let ModuleSource::Path(p) = &cfg.module {
                modules.push((p.clone(), file_stamp(p)));
            }
            let fingerprint = fingerprint(&res.spec, &cfg);
            if let Some(r) = current.get(&key).filter(|r| r.fingerprint == fingerprint) {
                running.insert(
                    key,
                    RunningAdapter {
                        fingerprint,
                        handle: r.handle.clone(),
                    },
                );
                continue;
            }
            match self.runtime.start(cfg).await {
                Ok(handle) => {
                    started.push(handle.clone());
                    running.insert(
                        key,
                        RunningAdapter {
                            fingerprint,
                            handle,
                        },
                    );
                }
                Err(e) => errors.push(res.invalid("Adapter", load_error_field(&e), e.to_string())),
            }
        }
        drop(current);
        errors.extend(not_policy_adapters(&policy_adapters, |key| {
            running.get(key).map(|r| r.handle.capabilities())
        }));
        if !errors.is_empty() {
            for h in started {
                tokio::spawn(async move { h.drain(Duration::ZERO).await });
            }
            return Err(ConfigErrors(errors));
        }
        let handles = rules
            .adapters
            .iter()
            .map(|k| running.get(k).map(|r| r.handle.clone()))
            .collect();
        let by_key = running
            .iter()
            .map(|(k, r)| (k.clone(), r.handle.clone()))
            .collect();
        Ok(Prepared {
            pipeline: Pipeline {
                rules,
                handles,
                by_key,
                on_retired: std::sync::Mutex::new(None),
                spare: std::sync::Mutex::new(Vec::new()),
            },
            running,
            modules,
        })
    }

    /// Delivers what every running adapter has queued, all of them at once, within `deadline`: the hub is
    /// stopping, and what it acknowledged must reach the adapters. The adapters stop after. Returns each
    /// adapter's delivery counts, by `namespace/name`.
    pub async fn drain_all(
        &self,
        deadline: Duration,
    ) -> Vec<(String, hub_adapters::DeliveryStats)> {
        let running = std::mem::take(&mut *self.running.lock().await);
        let mut drains = tokio::task::JoinSet::new();
        for (key, r) in running {
            drains.spawn(async move { (key, r.handle.drain(deadline).await) });
        }
        let mut out = Vec::new();
        while let Some(done) = drains.join_next().await {
            match done {
                Ok(drained) => out.push(drained),
                Err(e) => tracing::error!(error = %e, "an adapter's drain failed"),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Makes `prepared` active; adapters it no longer runs drain in the background.
    pub async fn commit(&self, prepared: Prepared) {
        let Prepared {
            pipeline,
            running,
            modules,
        } = prepared;
        let mut current = self.running.lock().await;
        let old = std::mem::replace(
            &mut *self.active.write().unwrap_or_else(|e| e.into_inner()),
            Arc::new(pipeline),
        );
        let (retired_tx, retired) = tokio::sync::oneshot::channel();
        *old.on_retired.lock().unwrap_or_else(|e| e.into_inner()) = Some(retired_tx);
        drop(old);
        *self.modules.write().unwrap_or_else(|e| e.into_inner()) = modules;
        let old = std::mem::replace(&mut *current, running);
        let replaced: Vec<(String, RunningAdapter)> = old
            .into_iter()
            .filter(|(key, r)| {
                // Still running when the same handle carried over.
                current
                    .get(key)
                    .is_none_or(|n| n.fingerprint != r.fingerprint)
            })
            .collect();
        if replaced.is_empty() {
            return;
        }
        tokio::spawn(async move {
            // Reports that took the old pipeline before the swap submit to the replaced adapters: drain them
            // once those are done (bounded: a drain is bounded anyway).
            let _ = tokio::time::timeout(DRAIN_DEADLINE, retired).await;
            for (key, r) in replaced {
                tokio::spawn(async move {
                    let stats = r.handle.drain(DRAIN_DEADLINE).await;
                    tracing::info!(adapter = %key, ?stats, "replaced adapter drained");
                });
            }
        });
    }

    /// Each running adapter's health for the query API: queue, deliveries, drops by reason, retries,
    /// restarts, refused outbound requests.
    pub fn adapter_health(&self) -> serde_json::Value {
        let p = self.pipeline();
        let adapters: Vec<_> = p
            .rules
            .adapters
            .iter()
            .enumerate()
            .map(|(i, key)| match p.handles.get(i).and_then(Option::as_ref) {
                None => serde_json::json!({"adapter": key, "running": false}),
                Some(h) => {
                    let s = h.stats();
                    let d = &s.dropped;
                    serde_json::json!({
                        "adapter": key,
                        "running": true,
                        "queued": s.queued,
                        "accepted": s.accepted,
                        "delivered": s.delivered,
                        "dropped": d.total(),
                        "dropped_by_reason": {
                            "queue_full": d.queue_full,
                            "permanent_error": d.permanent_error,
                            "retries_exhausted": d.retries_exhausted,
                            "adapter_down": d.adapter_down,
                            "unsupported": d.unsupported,
                            "drain_deadline": d.drain_deadline,
                        },
                        "retried": s.retried,
                        "restarts": s.restarts,
                        "http_denied": h.http_denied(),
                        "last_error": h.last_error().map(|e| serde_json::json!({
                            "time": e.at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                            "message": e.message,
                        })),
                    })
                }
            })
            .collect();
        serde_json::json!({ "adapters": adapters })
    }

    /// Summary for `/debug/config`: the adapters and which Telemetry resources feed them.
    pub fn to_json(&self) -> serde_json::Value {
        let p = self.pipeline();
        let adapters: Vec<_> = p
            .rules
            .adapters
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let h = p.handles.get(i).and_then(Option::as_ref);
                serde_json::json!({
                    "adapter": key,
                    "from": p.rules.sources_of(i).collect::<Vec<_>>(),
                    "capabilities": h.map(|h| format!("{:?}", h.capabilities())),
                    "stats": h.map(|h| format!("{:?}", h.stats())),
                })
            })
            .collect();
        serde_json::json!({
            "telemetry": p.rules.len(),
            "families": p.rules.families.iter().map(|f| &f.name).collect::<Vec<_>>(),
            "adapters": adapters,
        })
    }
}

impl PolicyAdapters for Telemetry {
    fn check<'a>(&'a self, key: &'a str, bag: &'a Bag) -> VerdictFuture<'a> {
        let handle = self.pipeline().by_key.get(key).cloned();
        Box::pin(async move {
            let handle = handle.ok_or_else(|| format!("adapter {key} is not running"))?;
            let d = handle
                .check(hub_telemetry::attributes_batch(bag))
                .await
                .map_err(|e| e.to_string())?;
            Ok(AdapterVerdict {
                allow: d.allow,
                http_status: d.http_status,
                message: d.message,
                valid_for: Duration::from_millis(u64::from(d.valid_for_ms)),
            })
        })
    }
}

/// Telemetry and Adapter resources checked without running anything.
pub struct Validated<'a> {
    rules: Rules,
    adapters: Vec<(&'a Resource<AdapterSpec>, AdapterConfig)>,
    /// (policy, index in `spec.adapters`, adapter key): each must implement `check`.
    policy_adapters: Vec<(&'a Resource<PolicySpec>, usize, String)>,
}

impl Validated<'_> {
    /// Each Adapter resource with its runtime configuration.
    pub fn adapters(&self) -> impl Iterator<Item = (&Resource<AdapterSpec>, &AdapterConfig)> {
        self.adapters.iter().map(|(r, c)| (*r, c))
    }

    /// An error for each policy adapter that does not implement `check`; `caps` answers the capabilities of
    /// an adapter (by `namespace/name`) that initialised.
    pub fn policy_adapter_errors(
        &self,
        caps: impl Fn(&str) -> Option<Capabilities>,
    ) -> Vec<ConfigError> {
        not_policy_adapters(&self.policy_adapters, caps)
    }
}

type PolicyAdapterRefs<'a> = [(&'a Resource<PolicySpec>, usize, String)];

fn not_policy_adapters(
    refs: &PolicyAdapterRefs<'_>,
    caps: impl Fn(&str) -> Option<Capabilities>,
) -> Vec<ConfigError> {
    refs.iter()
        .filter_map(|(policy, i, key)| {
            // An adapter that did not initialise is an error of its own.
            let caps = caps(key)?;
            (!caps.check).then(|| {
                policy.invalid(
                    "Policy",
                    &format!("spec.adapters[{i}]"),
                    format!("adapter {key} does not implement check (its capabilities: {caps:?})"),
                )
            })
        })
        .collect()
}

/// Maps the Adapter resources of `set` and joins them with its compiled Telemetry `rules` (pure). All errors
/// are returned.
pub fn validate(
    set: &ConfigSet,
    rules: Result<Rules, Vec<ConfigError>>,
) -> Result<Validated<'_>, ConfigErrors> {
    let mut errors = Vec::new();
    let rules = rules.map_err(|e| errors.extend(e)).ok();
    let mut adapters = Vec::new();
    for a in &set.adapters {
        match adapter_config(a) {
            Ok(c) => adapters.push((a, c)),
            Err(e) => errors.push(e),
        }
    }
    let policy_adapters = set
        .policies
        .iter()
        .flat_map(|p| {
            p.spec
                .adapters
                .iter()
                .enumerate()
                .map(move |(i, name)| (p, i, p.qualify(name)))
        })
        .collect();
    match rules {
        Some(rules) if errors.is_empty() => Ok(Validated {
            rules,
            adapters,
            policy_adapters,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// The field of an `Adapter` a load error is about: its config when init refused it, else its module.
pub fn load_error_field(e: &hub_adapters::LoadError) -> &'static str {
    match e {
        hub_adapters::LoadError::Init { .. } | hub_adapters::LoadError::InitCrashed { .. } => {
            "spec.config"
        }
        _ => "spec.module",
    }
}

fn file_stamp(p: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// What identifies a running adapter: its spec and, for a file, the file's size and time.
fn fingerprint(spec: &AdapterSpec, cfg: &AdapterConfig) -> String {
    let stamp = match &cfg.module {
        ModuleSource::Path(p) => format!("{:?}", file_stamp(p)),
        _ => String::new(),
    };
    format!("{}{stamp}", serde_json::to_string(spec).unwrap_or_default())
}

/// The runtime's view of an `Adapter` resource (pure: limits parsed, module located).
pub fn adapter_config(r: &Resource<AdapterSpec>) -> Result<AdapterConfig, ConfigError> {
    const KIND: &str = "Adapter";
    let spec = &r.spec;
    let base = r
        .origin
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let module = match spec.module.strip_prefix("builtin:") {
        Some(name) => {
            if hub_builtin_adapters::get(name).is_none() {
                return Err(r.invalid(
                    KIND,
                    "spec.module",
                    format!(
                        "no builtin adapter {name:?}; builtin adapters: {}",
                        hub_builtin_adapters::NAMES.join(", ")
                    ),
                ));
            }
            ModuleSource::Builtin(name.to_string())
        }
        None => {
            let path = base.join(&spec.module);
            if !path.is_file() {
                return Err(r.invalid(
                    KIND,
                    "spec.module",
                    format!(
                        "{} is not a file (a path to a .wasm component, relative to this file, or builtin:NAME)",
                        path.display()
                    ),
                ));
            }
            ModuleSource::Path(path)
        }
    };
    let mut limits = Limits::default();
    let l = &spec.limits;
    if let Some(m) = &l.memory {
        limits.memory =
            hub_config::parse_size(m).map_err(|e| r.invalid(KIND, "spec.limits.memory", e))?;
    }
    if let Some(t) = &l.time_per_batch {
        limits.time_per_batch = hub_config::parse_duration(t)
            .map_err(|e| r.invalid(KIND, "spec.limits.timePerBatch", e))?;
    }
    if let Some(t) = &l.flush_interval {
        limits.flush_interval = hub_config::parse_duration(t)
            .map_err(|e| r.invalid(KIND, "spec.limits.flushInterval", e))?;
    }
    if let Some(q) = l.queue_length {
        limits.queue_records = q as usize;
    }
    if let Some(b) = l.batch_size {
        limits.batch_size = b as usize;
    }
    for (field, zero) in [
        ("spec.limits.queueLength", limits.queue_records == 0),
        ("spec.limits.batchSize", limits.batch_size == 0),
        ("spec.limits.memory", limits.memory < 64 << 10),
        ("spec.limits.timePerBatch", limits.time_per_batch.is_zero()),
    ] {
        if zero {
            return Err(r.invalid(
                KIND,
                field,
                "too small (memory needs at least 64Ki; counts and times above 0)",
            ));
        }
    }
    if let Err(e) = hub_adapters::Allowlist::parse(&spec.allowed_hosts) {
        return Err(r.invalid(KIND, "spec.allowedHosts", e));
    }
    Ok(AdapterConfig {
        name: r.key(),
        module,
        config: spec.config.clone(),
        limits,
        allowed_hosts: spec.allowed_hosts.clone(),
        stdout: spec.stdout.as_ref().map(|s| base.join(s)),
    })
}
