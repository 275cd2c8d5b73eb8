//! The active configuration snapshot and atomic reloads.
//!
//! A reload reads every file, validates each resource on its own (pure, [`crate::isolate`]: an invalid
//! Policy, RateLimit or Telemetry keeps its last good version, one that never validated is left out), and
//! only then builds and swaps in a new snapshot. Any other error (an Adapter, an unreadable directory) leaves
//! the previous snapshot serving. The errors are logged and exported in `/metrics` either way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hub_config::{ConfigErrors, ConfigFiles, ConfigSet};
use hub_policy::Snapshot;
use hub_quota::{LocalBackend, QuotaBackend, ScopedBackend};
use hub_quota_redis::RedisBackend;
use sextant_attributes::{Bag, Changes};
use tracing::Instrument;

use crate::failure::LoadFailure;
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
    /// Where GLOBAL RateLimits are counted (`--redis-url`); without it they are counted by this hub alone.
    pub global_quota: Option<Arc<RedisBackend>>,
    /// What a call whose attributes name another workload than its client certificate gets (with client
    /// certificates required).
    pub caller_identity: crate::caller::CallerIdentity,
}

impl Default for DecisionOptions {
    fn default() -> Self {
        DecisionOptions {
            ttl: Duration::from_secs(60),
            uses: 10_000,
            max_rate_limit_keys: 100_000,
            rate_limit_overflow: hub_quota::Overflow::Shared,
            default_telemetry: true,
            global_quota: None,
            caller_identity: crate::caller::CallerIdentity::default(),
        }
    }
}

/// Where the hub's resources come from.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// A directory (searched recursively) or a file of YAML resources.
    Dir(PathBuf),
    /// The Kubernetes API server (`--kubernetes`): the resources its watchers hold, and status written
    /// back.
    Kubernetes(Arc<hub_kube::HubKube>),
}

impl From<&Path> for ConfigSource {
    fn from(dir: &Path) -> ConfigSource {
        ConfigSource::Dir(dir.to_path_buf())
    }
}

impl From<&PathBuf> for ConfigSource {
    fn from(dir: &PathBuf) -> ConfigSource {
        ConfigSource::Dir(dir.clone())
    }
}

impl ConfigSource {
    /// The resources as they are now: `None` while the API server's resources have not all been listed.
    fn read(&self) -> Option<Result<ConfigFiles, hub_config::ConfigError>> {
        match self {
            ConfigSource::Dir(dir) => Some(ConfigFiles::read(dir)),
            ConfigSource::Kubernetes(kube) => kube.files().map(Ok),
        }
    }
}

/// The hub's shared state: the current snapshot and how to make the next one.
pub struct HubState {
    source: ConfigSource,
    options: DecisionOptions,
    backend: Arc<ScopedBackend>,
    current: RwLock<Option<Arc<Snapshot>>>,
    /// The resources the serving snapshot was built from: the last good version of each.
    last_good: RwLock<Option<Arc<ConfigSet>>>,
    /// `file\0group\0kind` of the unread Istio documents already warned about.
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
    last_failure: RwLock<Option<LoadFailure>>,
    last_digest: RwLock<Option<u64>>,
    /// The hub's metrics.
    pub metrics: Metrics,
    /// The Report path: Telemetry rules and adapters.
    pub telemetry: Telemetry,
    /// Supervised tasks that are down (shown by `/readyz`).
    pub tasks: Arc<sextant_supervise::TaskHealth>,
    /// Recent telemetry and decisions for the query API.
    pub window: hub_window::Window,
}

impl HubState {
    /// State reading resources from `source` (a directory, or the API server) and running adapters on
    /// `runtime`; nothing is loaded yet.
    pub fn new(
        source: impl Into<ConfigSource>,
        options: DecisionOptions,
        runtime: Arc<hub_adapters::Runtime>,
    ) -> Self {
        Self::with_tasks(source, options, runtime, Arc::default())
    }

    /// [`HubState::new`] with the health of supervised tasks started before it (the API server's
    /// watchers).
    pub fn with_tasks(
        source: impl Into<ConfigSource>,
        options: DecisionOptions,
        runtime: Arc<hub_adapters::Runtime>,
        tasks: Arc<sextant_supervise::TaskHealth>,
    ) -> Self {
        let source = source.into();
        let backend = Arc::new(ScopedBackend::new(
            Arc::new(LocalBackend::with_overflow(
                options.max_rate_limit_keys,
                options.rate_limit_overflow,
            )),
            options
                .global_quota
                .clone()
                .map(|g| g as Arc<dyn QuotaBackend>),
        ));
        let metrics = Metrics::with_extra(|r| {
            runtime.register_metrics(r);
            sextant_otel::stats::register(r.sub_registry_with_prefix("sextant_hub"));
            r.register(
                "sextant_hub_task_panics",
                "Panics of the hub's long-lived tasks, by task (each restarted, or left down after repeated panics)",
                tasks.panics(),
            );
            if let ConfigSource::Kubernetes(kube) = &source {
                kube.register_metrics(r);
            }
            if let Some(global) = &options.global_quota {
                global.register_metrics(r);
            }
        });
        HubState {
            source,
            options,
            backend,
            current: RwLock::new(None),
            last_good: RwLock::new(None),
            warned: std::sync::Mutex::default(),
            last_failure: RwLock::new(None),
            last_digest: RwLock::new(None),
            metrics,
            telemetry: Telemetry::new(runtime),
            tasks,
            window: hub_window::Window::new(hub_window::WindowOptions::default()),
        }
    }

    /// Evaluates reported bags with the Telemetry rules and hands the records to the adapters.
    pub fn ingest(&self, front_door: &'static str, bags: Vec<Bag>) -> Ingested {
        let n = bags.len() as u64;
        for bag in &bags {
            self.window.observe(bag);
        }
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
        let window = &self.window;
        let out = self.telemetry.ingest_each(
            |visit| {
                feed(&mut |bag, changes| {
                    window.observe(bag);
                    visit(bag, changes);
                });
            },
            &self.metrics,
        );
        self.metrics.reports(front_door, "accepted", out.bags);
        out
    }

    /// Records a decision made for `bag` in the window (metrics are the caller's).
    pub fn decided(&self, bag: &Bag, d: &hub_policy::Decision) {
        use sextant_attributes::{Value, attr};
        let text = |id| match bag.get(id) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let deciding = if d.allowed() {
            d.hits.iter().find(|h| !h.dry_run && h.action == "ALLOW")
        } else {
            d.hits.iter().find(|h| !h.dry_run && h.action == "DENY")
        }
        .or_else(|| d.hits.iter().find(|h| !h.dry_run));
        let (result, policy, rule, action) = match (&d.rate_limited_by, deciding) {
            (Some(rl), _) if !d.allowed() => {
                ("rate_limited", rl.to_string(), String::new(), "RATE_LIMIT")
            }
            (_, Some(h)) => (
                if d.allowed() { "allow" } else { "deny" },
                h.policy.to_string(),
                h.rule.to_string(),
                h.action,
            ),
            (_, None) => (
                if d.allowed() { "allow" } else { "deny" },
                String::new(),
                String::new(),
                "",
            ),
        };
        let source = [
            text(attr!("source.principal", String)),
            text(attr!("source.workload.name", String)),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
        let service = [
            text(attr!("destination.service.name", String)),
            text(attr!("destination.workload.name", String)),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
        self.window.decision(hub_window::DecisionEvent {
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |t| t.as_secs_f64()),
            result,
            policy,
            rule,
            action: action.to_string(),
            code: d.code,
            http_status: d.http_status,
            message: d.message.clone(),
            service,
            source,
            path: text(attr!("request.url_path", String)),
        });
    }

    /// The snapshot Checks are decided with, if one has loaded.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the resources come from.
    pub fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Hands the verdict on the resources just read to the API server's status writer (a directory has
    /// none).
    fn verdict(&self, applied: bool, errors: &[hub_config::ConfigError], kept: &[String]) {
        if let ConfigSource::Kubernetes(kube) = &self.source {
            kube.judged(hub_kube::Verdict {
                applied,
                errors: errors.to_vec(),
                kept: kept.to_vec(),
            });
        }
    }

    /// Whether an adapter's module file changed since it was loaded (checked on the blocking pool).
    pub async fn modules_changed(&self) -> bool {
        let changed = self.telemetry.modules_check();
        tokio::task::spawn_blocking(changed).await.unwrap_or(false)
    }

    /// What a call claiming another workload than its client certificate gets.
    pub(crate) fn caller_identity(&self) -> crate::caller::CallerIdentity {
        self.options.caller_identity
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
        let started = std::time::Instant::now();
        let modules_changed = self.telemetry.modules_check();
        let last = *self.last_digest.read().unwrap_or_else(|p| p.into_inner());
        let (source, defaults) = (self.source.clone(), self.options.default_telemetry);
        let serving = self.snapshot();
        let last_good = self
            .last_good
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A panic is the watcher's: its supervisor counts it and starts it over.
        let (digest, parsed) = crate::background::run(move || {
            parse(
                &source,
                defaults,
                serving.as_deref(),
                last_good.as_deref(),
                last,
                force || modules_changed(),
            )
        })
        .await;
        self.swap_digest(digest);
        if matches!(parsed, Parsed::Unchanged) {
            return false;
        }
        let span = sextant_otel::root_span!(
            None,
            "hub.config.reload",
            sextant.parse_ms = started.elapsed().as_millis() as u64,
            sextant.revision = tracing::field::Empty,
            sextant.result = tracing::field::Empty,
        );
        let swapped = self.apply(parsed, &span).instrument(span.clone()).await;
        span.record("sextant.result", if swapped { "loaded" } else { "failed" });
        swapped
    }

    /// Validates and swaps in a changed configuration (the second half of [`HubState::reload`]).
    async fn apply(&self, parsed: Parsed, span: &tracing::Span) -> bool {
        let judged = match parsed {
            Parsed::Unchanged => return false,
            Parsed::Failed(errors) => {
                self.verdict(false, &errors.0, &[]);
                self.fail(errors);
                return false;
            }
            Parsed::Valid(v) => *v,
        };
        let crate::isolate::Judged {
            set,
            policy: validated,
            rules,
            errors: left_out,
            kept,
        } = judged;
        let telemetry = match crate::telemetry::validate(&set, Ok(rules)) {
            Ok(t) => t,
            Err(errors) => {
                self.verdict(false, &errors.0, &[]);
                self.fail(errors);
                return false;
            }
        };
        let prepared = match self.telemetry.prepare(telemetry).await {
            Ok(p) => p,
            Err(errors) => {
                self.verdict(false, &errors.0, &[]);
                self.fail(errors);
                return false;
            }
        };
        let revision = self.snapshot().map_or(1, |s| s.revision + 1);
        span.record("sextant.revision", revision);
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
            rejected = left_out.len(),
            "configuration loaded"
        );
        self.unread(&set.unread);
        self.verdict(true, &left_out, &kept);
        let partial = (!left_out.is_empty()).then(|| self.partial(&left_out, kept));
        match &partial {
            None => self.metrics.reload_succeeded(revision),
            Some(failure) => self.metrics.reload_partial(revision, failure),
        }
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
        *self.last_failure.write().unwrap_or_else(|p| p.into_inner()) = partial;
        let replaced = self
            .last_good
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::new(set));
        // The parsed resources take milliseconds to free at 10 000 rules.
        if let Some(old) = replaced {
            crate::background::drop_elsewhere(old);
        }
        true
    }

    /// Warns once per file and kind about documents of Istio kinds neither role reads, and counts them.
    fn unread(&self, unread: &[hub_config::istio::Unread]) {
        self.metrics.unread(unread);
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = std::collections::HashSet::with_capacity(unread.len());
        for u in unread {
            let key = format!("{}\0{}\0{}", u.at.file.display(), u.group, u.kind);
            if !warned.contains(&key) {
                tracing::warn!(at = %u.at, group = %u.group, kind = %u.kind, documents = u.documents, "{u}");
            }
            now.insert(key);
        }
        *warned = now;
    }

    /// Logs a reload that went on without some resources (or with their last good versions).
    fn partial(&self, errors: &[hub_config::ConfigError], kept: Vec<String>) -> LoadFailure {
        for e in errors {
            let blamed = crate::isolate::named(e).map(|(kind, key)| format!("{kind} {key}"));
            match blamed {
                Some(r) if kept.contains(&r) => {
                    tracing::error!(error = %e, "resource rejected; its last good version keeps serving, the other resources changed")
                }
                Some(_) => {
                    tracing::error!(error = %e, "resource rejected; it never validated, so it is left out")
                }
                None => {
                    tracing::error!(error = %e, "file rejected; the last good versions of its resources keep serving")
                }
            }
        }
        let mut failure = LoadFailure::of(errors);
        failure.kept = kept;
        failure.partial = true;
        failure
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
        let failure = LoadFailure::of(&errors.0);
        self.metrics.reload_failed(&failure);
        *self.last_failure.write().unwrap_or_else(|p| p.into_inner()) = Some(failure);
    }

    /// Drops idle rate-limit buckets and refreshes bucket gauges.
    pub fn housekeeping(&self) {
        self.backend.housekeeping();
        self.metrics
            .rate_limit_buckets(&self.backend.local().stats());
        self.metrics.window(&self.window.evictions());
    }
}

/// What the blocking part of a reload found.
enum Parsed {
    /// The files are those last attempted (and nothing forces a reload).
    Unchanged,
    /// Reading, parsing or validation failed.
    Failed(ConfigErrors),
    /// A valid set, with what was left out of it (boxed: it is large and the other outcomes are not).
    Valid(Box<crate::isolate::Judged>),
}

/// The CPU part of a reload: reads the files under `dir` and, when their digest differs from `last` (or
/// with `force`), parses and validates each resource on its own against `last_good`
/// ([`crate::isolate::judge`]), compiling the CEL expressions the `serving` snapshot has not. Returns the
/// digest attempted. Blocking.
fn parse(
    source: &ConfigSource,
    default_telemetry: bool,
    serving: Option<&Snapshot>,
    last_good: Option<&ConfigSet>,
    last: Option<u64>,
    force: bool,
) -> (u64, Parsed) {
    // Reading is cheap and parsing is not: compare digests first.
    let files = match source.read() {
        // The API server's resources are not all listed yet: nothing to load.
        None => return (last.unwrap_or_default(), Parsed::Unchanged),
        Some(Ok(files)) => files,
        Some(Err(e)) => {
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
    let outcome = match crate::isolate::judge(&files, default_telemetry, serving, last_good) {
        Ok(judged) => Parsed::Valid(Box::new(judged)),
        Err(errors) => Parsed::Failed(errors),
    };
    (files.digest, outcome)
}

fn digest_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, path: &str) -> String {
        format!(
            "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  rules:\n  - name: r\n    action: DENY\n    when: '{path}'\n"
        )
    }

    fn active(state: &HubState) -> String {
        state
            .snapshot()
            .map(|s| s.to_json().to_string())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_bad_policy_keeps_its_last_good_version_while_the_others_change() {
        let dir = std::env::temp_dir().join(format!("hub-state-isolation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |f: &str, t: &str| std::fs::write(dir.join(f), t).unwrap();
        write("a.yaml", &policy("a", "request.path == \"/a\""));
        write("b.yaml", &policy("b", "request.path == \"/b\""));
        write(
            "legacy.yaml",
            "apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: r}\n---\napiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: s}\n",
        );
        let runtime =
            Arc::new(hub_adapters::Runtime::new(hub_adapters::RuntimeOptions::default()).unwrap());
        let options = DecisionOptions {
            default_telemetry: false,
            ..DecisionOptions::default()
        };
        let state = HubState::new(&dir, options, runtime);
        assert!(state.reload(true).await);
        assert!(state.last_failure().is_none());
        // Mixer's legacy kinds are not read, and said so (counted; warned once per file and kind).
        let metrics = state.metrics.encode();
        assert!(
            metrics.contains(
                "sextant_hub_config_unread_documents{group=\"config.istio.io\",kind=\"rule\"} 2"
            ),
            "{metrics}"
        );

        // a broken, b changed, c new and broken: b changes, a keeps its last good version, c is left out.
        write("a.yaml", &policy("a", "request.path =="));
        write("b.yaml", &policy("b", "request.path == \"/b2\""));
        write("c.yaml", &policy("c", "nonsense("));
        assert!(state.reload(true).await);
        let json = active(&state);
        assert!(json.contains(r#"request.path == \"/a\""#), "{json}");
        assert!(json.contains(r#"request.path == \"/b2\""#), "{json}");
        assert!(!json.contains("nonsense"), "{json}");
        let failure = state.last_failure().unwrap();
        assert!(failure.partial);
        assert_eq!(failure.kept, ["Policy default/a"]);
        assert_eq!(failure.errors.len(), 2, "{:?}", failure.errors);
        let metrics = state.metrics.encode();
        assert!(
            metrics.contains("sextant_hub_config_reloads_total{result=\"partial\"} 1"),
            "{metrics}"
        );

        // An invalid Adapter refuses the whole change: b's next edit waits.
        write("b.yaml", &policy("b", "request.path == \"/b3\""));
        write(
            "d.yaml",
            "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {name: x}\nspec: {nonsense: 1}\n",
        );
        assert!(!state.reload(true).await);
        assert!(active(&state).contains(r#"request.path == \"/b2\""#));
        assert!(!state.last_failure().unwrap().partial);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
