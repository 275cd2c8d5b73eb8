//! The active configuration snapshot and atomic reloads.
//!
//! A reload reads every file, validates the whole set (pure), and only then builds and swaps in a new
//! snapshot. Any error leaves the previous snapshot serving; the errors are logged and exported in `/metrics`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hub_attributes::{Bag, Changes};
use hub_config::{ConfigErrors, ConfigFiles, ConfigSet};
use hub_policy::{Compiled, Snapshot};
use hub_quota::{LocalBackend, QuotaBackend};
use hub_telemetry::Rules;

use crate::metrics::Metrics;
use crate::telemetry::{Ingested, Telemetry};

/// Tunables of the decision path that are runtime flags, not resources.
#[derive(Clone, Debug)]
pub struct DecisionOptions {
    /// How long proxies may cache a cacheable decision.
    pub ttl: Duration,
    /// How many requests may reuse a cacheable decision.
    pub uses: i32,
    /// The most buckets one RateLimit keeps in memory.
    pub max_rate_limit_keys: usize,
    /// What happens to new keys of a RateLimit whose buckets are all in use: share one bucket, or be refused.
    pub rate_limit_overflow: hub_quota::Overflow,
    /// Load the default Telemetry (Istio's standard metrics into the builtin prometheus adapter).
    pub default_telemetry: bool,
}

impl Default for DecisionOptions {
    fn default() -> Self {
        DecisionOptions {
            ttl: Duration::from_secs(60),
            uses: 10_000,
            max_rate_limit_keys: 100_000,
            rate_limit_overflow: hub_quota::Overflow::Shared,
            default_telemetry: true,
        }
    }
}

/// What the last reload attempt found wrong, kept for `/debug/config` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct LoadFailure {
    /// One line per error: `file:line: kind name: field: message`.
    pub errors: Vec<String>,
    /// (file, line, field) of each error, for the metric labels.
    pub locations: Vec<(String, u32, String)>,
}

/// The hub's shared state: the current snapshot and how to make the next one.
pub struct HubState {
    config_dir: PathBuf,
    options: DecisionOptions,
    backend: Arc<LocalBackend>,
    current: RwLock<Option<Arc<Snapshot>>>,
    last_failure: RwLock<Option<LoadFailure>>,
    last_digest: RwLock<Option<u64>>,
    /// The hub's metrics.
    pub metrics: Metrics,
    /// The Report path: Telemetry rules and adapters.
    pub telemetry: Telemetry,
    /// Supervised tasks that are down (shown by `/readyz`).
    pub tasks: Arc<sextant_supervise::TaskHealth>,
}

impl HubState {
    /// State reading resources from `config_dir` and running adapters on `runtime`; nothing is loaded yet.
    pub fn new(
        config_dir: &Path,
        options: DecisionOptions,
        runtime: Arc<hub_adapters::Runtime>,
    ) -> Self {
        let backend = Arc::new(LocalBackend::with_overflow(
            options.max_rate_limit_keys,
            options.rate_limit_overflow,
        ));
        let tasks = Arc::new(sextant_supervise::TaskHealth::default());
        let metrics = Metrics::with_extra(|r| {
            runtime.register_metrics(r);
            r.register(
                "sextant_hub_task_panics",
                "Panics of the hub's long-lived tasks, by task (each restarted, or left down after repeated panics)",
                tasks.panics(),
            );
        });
        HubState {
            config_dir: config_dir.to_path_buf(),
            options,
            backend,
            current: RwLock::new(None),
            last_failure: RwLock::new(None),
            last_digest: RwLock::new(None),
            metrics,
            telemetry: Telemetry::new(runtime),
            tasks,
        }
    }

    /// Evaluates reported bags with the Telemetry rules and hands the records to the adapters.
    pub fn ingest(&self, front_door: &'static str, bags: Vec<Bag>) -> Ingested {
        let n = bags.len() as u64;
        let out = self.telemetry.ingest_with(bags, &self.metrics);
        self.metrics.reports(front_door, "accepted", n);
        out
    }

    /// Like [`State::ingest`] for bags produced one at a time: `feed` hands each bag to the visitor it is given
    /// with what changed since the previous bag (the bag need not outlive the call).
    pub fn ingest_each(
        &self,
        front_door: &'static str,
        feed: impl FnOnce(&mut dyn FnMut(&Bag, Changes<'_>)),
    ) -> Ingested {
        let out = self.telemetry.ingest_each(feed, &self.metrics);
        self.metrics.reports(front_door, "accepted", out.bags);
        out
    }

    /// The snapshot Checks are decided with, if one has loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The configuration directory (or file).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Whether an adapter's module file changed since it was loaded (checked on the blocking pool).
    pub async fn modules_changed(&self) -> bool {
        let changed = self.telemetry.modules_check();
        tokio::task::spawn_blocking(changed).await.unwrap_or(false)
    }

    /// The errors of the last failed reload, if the last attempt failed.
    pub fn last_failure(&self) -> Option<LoadFailure> {
        self.last_failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads when the files (or an adapter's module file) changed since the last attempt, or always with
    /// `force`. Returns whether a new configuration was swapped in. Reading, parsing, validation and CEL
    /// compilation (of the expressions the serving configuration has not compiled) run on a background
    /// thread ([`crate::background`]); only starting adapters and the swap run here.
    pub async fn reload(&self, force: bool) -> bool {
        let modules_changed = self.telemetry.modules_check();
        let last = *self.last_digest.read().unwrap_or_else(|p| p.into_inner());
        let (dir, defaults) = (self.config_dir.clone(), self.options.default_telemetry);
        let serving = self.snapshot();
        // A panic is the watcher's: its supervisor counts it and starts it over.
        let (digest, parsed) = crate::background::run(move || {
            parse(
                &dir,
                defaults,
                serving.as_deref(),
                last,
                force || modules_changed(),
            )
        })
        .await;
        self.swap_digest(digest);
        let (set, validated, rules) = match parsed {
            Parsed::Unchanged => return false,
            Parsed::Failed(errors) => {
                self.fail(errors);
                return false;
            }
            Parsed::Valid(v) => {
                let Valid { set, policy, rules } = *v;
                (set, policy, rules)
            }
        };
        let telemetry = match crate::telemetry::validate(&set, Ok(rules)) {
            Ok(t) => t,
            Err(errors) => {
                self.fail(errors);
                return false;
            }
        };
        let prepared = match self.telemetry.prepare(telemetry).await {
            Ok(p) => p,
            Err(errors) => {
                self.fail(errors);
                return false;
            }
        };
        let revision = self.snapshot().map_or(1, |s| s.revision + 1);
        let snapshot = {
            let backend = self.backend.clone();
            let (ttl, uses) = (self.options.ttl, self.options.uses);
            crate::background::run(move || {
                validated.build(revision, backend.as_ref() as &dyn QuotaBackend, ttl, uses)
            })
            .await
        };
        tracing::info!(
            revision,
            policies = snapshot.policies.len(),
            rate_limits = snapshot.rate_limits.len(),
            files = snapshot.source.files,
            "configuration loaded"
        );
        self.metrics.reload_succeeded(revision);
        let replaced = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(snapshot));
        // Dropping a large snapshot takes milliseconds: not on a worker, nor on a Check that held it last.
        if let Some(old) = replaced {
            crate::background::drop_when_unshared(old);
        }
        self.telemetry.commit(prepared).await;
        *self.last_failure.write().unwrap_or_else(|p| p.into_inner()) = None;
        // The parsed resources take milliseconds to free at 10 000 rules.
        crate::background::drop_elsewhere(set);
        true
    }

    /// Records `digest` as the last attempted; false when it equals the previous one.
    fn swap_digest(&self, digest: u64) -> bool {
        let mut last = self.last_digest.write().unwrap_or_else(|p| p.into_inner());
        let changed = *last != Some(digest);
        *last = Some(digest);
        changed
    }

    fn fail(&self, errors: ConfigErrors) {
        let serving = self.snapshot().map(|s| s.revision);
        for e in &errors.0 {
            match serving {
                Some(rev) => {
                    tracing::error!(error = %e, serving_revision = rev, "configuration rejected; the previous configuration keeps serving")
                }
                None => {
                    tracing::error!(error = %e, "configuration rejected; no configuration is serving yet")
                }
            }
        }
        let failure = LoadFailure {
            errors: errors.0.iter().map(ToString::to_string).collect(),
            locations: errors
                .0
                .iter()
                .map(|e| {
                    let (file, line) = e.location().map_or((String::new(), 0), |l| {
                        (l.file.display().to_string(), l.line)
                    });
                    (file, line, e.field().unwrap_or_default().to_string())
                })
                .collect(),
        };
        self.metrics.reload_failed(&failure);
        *self.last_failure.write().unwrap_or_else(|p| p.into_inner()) = Some(failure);
    }

    /// Drops idle rate-limit buckets and refreshes bucket gauges.
    pub fn housekeeping(&self) {
        self.backend.housekeeping();
        self.metrics.rate_limit_buckets(&self.backend.stats());
    }
}

/// What the blocking part of a reload found.
enum Parsed {
    /// The files are those last attempted (and nothing forces a reload).
    Unchanged,
    /// Reading, parsing or validation failed.
    Failed(ConfigErrors),
    /// A valid set (boxed: it is large and the other outcomes are not).
    Valid(Box<Valid>),
}

/// A valid set, its policies validated and its Telemetry rules compiled.
struct Valid {
    set: ConfigSet,
    policy: hub_policy::Validated,
    rules: Rules,
}

/// The CPU part of a reload: reads the files under `dir` and, when their digest differs from `last` (or
/// with `force`), parses and validates them whole, compiling the CEL expressions the `serving` snapshot
/// has not. Returns the digest attempted. Blocking.
fn parse(
    dir: &Path,
    default_telemetry: bool,
    serving: Option<&Snapshot>,
    last: Option<u64>,
    force: bool,
) -> (u64, Parsed) {
    // Reading is cheap and parsing is not: compare digests first.
    let files = match ConfigFiles::read(dir) {
        Ok(files) => files,
        Err(e) => {
            let digest = digest_of(&e.to_string());
            let outcome = if force || last != Some(digest) {
                Parsed::Failed(ConfigErrors(vec![e]))
            } else {
                Parsed::Unchanged
            };
            return (digest, outcome);
        }
    };
    if !force && last == Some(files.digest) {
        return (files.digest, Parsed::Unchanged);
    }
    let mut set = match files.load() {
        Ok(set) => set,
        Err(errors) => return (files.digest, Parsed::Failed(errors)),
    };
    if default_telemetry {
        hub_telemetry::add_defaults(&mut set);
    }
    // Everything pure first, every error at once; adapters start only when all of it is valid.
    let earlier = serving.map(Compiled::of).unwrap_or_default();
    let policy = hub_policy::validate_reusing(set.clone(), earlier);
    let rules = hub_telemetry::validate(&set);
    let outcome = match (policy, rules) {
        (Ok(policy), Ok(rules)) => Parsed::Valid(Box::new(Valid { set, policy, rules })),
        (p, r) => {
            let mut errors = p.err().map(|e| e.0).unwrap_or_default();
            errors.extend(r.err().unwrap_or_default());
            // Adapter resources are checked too, so one reload reports every error.
            if let Err(e) = crate::telemetry::validate(&set, Ok(Rules::default())) {
                errors.extend(e.0);
            }
            Parsed::Failed(ConfigErrors(errors))
        }
    };
    (files.digest, outcome)
}

fn digest_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
