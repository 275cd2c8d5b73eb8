//! Watches the configuration directory ([`sextant_watch::DirWatch`]: file-system events, a stat poll as
//! safety net, debounce). After a change the files are read (never those under `tokens/`, the bootstrap
//! tokens); if their contents changed, the changed files are parsed (the others' resources are reused),
//! each resource is validated on its own and the mesh of those that passed is published. All of it runs on
//! the blocking pool. A resource left out (and a file that is not valid YAML) is logged when it is first
//! left out, listed on `/debug/config` and counted in `pilot_config_rejected`; the others change freely.
//! Documents of Istio kinds pilot does not read are warned about once per file and kind and counted in
//! `pilot_config_unread_documents`. When the directory cannot be read at all, the mesh being served stays.
//!
//! With a second registry (Kubernetes), its services are served together with the directory's
//! ServiceEntries (a host both define is the Kubernetes Service's), and each of its changes republishes the
//! mesh with the configuration last loaded.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use pilot_config::{
    FileRegistry, MeshConfig, NetworkingSet, ParsedFiles, RegistrySnapshot, Rejected,
    ServiceRegistry, Unread, Validated,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sextant_resources::{ConfigErrors, ConfigFiles};

use crate::source::{Mesh, MeshSource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

/// The labels of `pilot_config_rejected`: one series per resource left out, up to
/// [`MAX_REJECTED_SERIES`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RejectedLabels {
    kind: String,
    namespace: String,
    name: String,
}

/// The labels of `pilot_config_unread_documents`, bounded by `pilot_config::report::unread_hint`'s table.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct UnreadLabels {
    group: &'static str,
    kind: &'static str,
}

/// The series `pilot_config_rejected` holds at most (no label set grows without a bound): beyond, the
/// resources left out are counted in one series whose labels are all `_other`.
pub const MAX_REJECTED_SERIES: usize = 1000;

/// What the last load left out and did not read.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// The resources (and files) left out, in the order written.
    pub rejected: Vec<Rejected>,
    /// Documents of Istio kinds pilot does not read, one entry per file and kind.
    pub unread: Vec<Unread>,
}

/// The configuration directory and what was last loaded from it.
pub struct ConfigWatch {
    dir: PathBuf,
    registry: FileRegistry,
    kube: Option<Arc<dyn ServiceRegistry>>,
    /// Istio's resources from the API server, served with the directory's.
    istio: Option<Arc<pilot_kube::istio::IstioConfig>>,
    /// Held for a whole load: the directory's watcher and the API server's follower load one at a time.
    loading: Mutex<()>,
    /// Held while a mesh is composed and published, so the last publish has the latest of both sources.
    publishing: Mutex<()>,
    source: Arc<MeshSource>,
    last_digest: RwLock<Option<u64>>,
    parsed: Mutex<ParsedFiles>,
    last_errors: RwLock<Vec<String>>,
    report: RwLock<Arc<LoadReport>>,
    /// `file\0group\0kind` of the unread documents already warned about.
    warned: Mutex<HashSet<String>>,
    pub(crate) reloads: Family<ResultLabels, Counter>,
    pub(crate) rejected: Family<RejectedLabels, Gauge>,
    pub(crate) unread: Family<UnreadLabels, Gauge>,
}

impl ConfigWatch {
    /// Watches `dir` and publishes into `source`.
    pub fn new(dir: PathBuf, source: Arc<MeshSource>) -> Self {
        ConfigWatch {
            dir,
            registry: FileRegistry::new(),
            kube: None,
            istio: None,
            loading: Mutex::new(()),
            publishing: Mutex::new(()),
            source,
            last_digest: RwLock::new(None),
            parsed: Mutex::new(ParsedFiles::default()),
            last_errors: RwLock::new(Vec::new()),
            report: RwLock::new(Arc::default()),
            warned: Mutex::new(HashSet::new()),
            reloads: Family::default(),
            rejected: Family::default(),
            unread: Family::default(),
        }
    }

    /// Serves `registry`'s services too (Kubernetes mode); follow its changes with [`ConfigWatch::follow`].
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<dyn ServiceRegistry>) -> Self {
        self.kube = Some(registry);
        self
    }

    /// Also serves Istio's resources from the API server, and judges them for their status.
    #[must_use]
    pub fn with_istio(mut self, istio: Arc<pilot_kube::istio::IstioConfig>) -> Self {
        self.istio = Some(istio);
        self
    }

    /// Loads again whenever Istio's resources in the API server change (a burst settles for `debounce`).
    /// Safe to restart.
    pub async fn follow_istio(self: Arc<Self>, debounce: Duration) {
        let Some(istio) = self.istio.clone() else {
            return;
        };
        let mut changes = istio.changes();
        // A change between the last load (or a crash of this loop) and this subscription: load once now.
        changes.mark_changed();
        while changes.changed().await.is_ok() {
            tokio::time::sleep(debounce).await;
            let watch = self.clone();
            blocking(move || watch.load(false)).await;
        }
    }

    /// Republishes the mesh whenever the second registry's services change (after the first successful
    /// load: a mesh is never served without a loaded configuration). Safe to restart.
    pub async fn follow(self: Arc<Self>) {
        let Some(kube) = self.kube.clone() else {
            return;
        };
        let mut changes = kube.changes();
        // A change between the first load (or a crash of this loop) and this subscription would otherwise
        // wait for the next one: publish once now.
        changes.mark_changed();
        while changes.changed().await.is_ok() {
            let watch = self.clone();
            // Merging the registries and translating every view in use: CPU work, off the workers.
            if let Some(generation) = blocking(move || watch.publish(None)).await.flatten() {
                tracing::debug!(generation, "registry services changed; mesh republished");
            }
        }
    }

    /// Translates the mesh being served again (after the first successful load) whenever the translator
    /// says its translations went stale by themselves: workload certificates due for renewal. Checked every
    /// second, since certificates are issued whenever a new proxy's view is first translated. Safe to restart.
    pub async fn renew(self: Arc<Self>) {
        const CHECK_EVERY: Duration = Duration::from_secs(1);
        let mut handled = std::time::SystemTime::UNIX_EPOCH;
        loop {
            let now = std::time::SystemTime::now();
            match self.source.renewal_after(handled) {
                Some(due) if due <= now => {
                    let watch = self.clone();
                    if let Some(generation) = blocking(move || watch.publish(None)).await.flatten()
                    {
                        tracing::info!(
                            generation,
                            "workload certificates renewed; mesh republished"
                        );
                    }
                    handled = now;
                }
                due => {
                    let wait = due.map_or(CHECK_EVERY, |d| {
                        d.duration_since(now).unwrap_or_default().min(CHECK_EVERY)
                    });
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Publishes `config` (or, for `None`, the configuration being served, if one was loaded) with the
    /// services of both registries; the generation published.
    fn publish(&self, config: Option<Arc<MeshConfig>>) -> Option<u64> {
        let _guard = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let config = match config {
            Some(c) => c,
            None => match self.source.mesh() {
                (0, _) => return None,
                (_, mesh) => mesh.config,
            },
        };
        let file = self.registry.snapshot();
        let services = match &self.kube {
            None => file,
            Some(kube) => {
                let kube = kube.snapshot();
                let mut merged = (*file.services).clone();
                merged.extend(kube.services.iter().map(|(h, s)| (h.clone(), s.clone())));
                Arc::new(RegistrySnapshot {
                    // Both versions only grow, so their sum grows whenever either changes.
                    version: file.version + kube.version,
                    services: Arc::new(merged),
                })
            }
        };
        Some(self.source.publish(Mesh { config, services }))
    }

    /// What the last load left out and did not read.
    pub fn report(&self) -> Arc<LoadReport> {
        self.report
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Logs what is newly left out or unread, sets the gauges and keeps `report` for `/debug/config`.
    fn record(&self, report: LoadReport) {
        let previous = self.report();
        let before: HashSet<String> = previous.rejected.iter().map(Rejected::message).collect();
        for r in &report.rejected {
            let error = r.message();
            if !before.contains(&error) {
                tracing::error!(
                    kind = %r.kind,
                    resource = %r.key(),
                    at = %r.at().map(ToString::to_string).unwrap_or_default(),
                    error = %error,
                    "networking resource left out; the rest of the configuration is served"
                );
            }
        }
        let now: HashSet<String> = report.rejected.iter().map(Rejected::message).collect();
        for r in &previous.rejected {
            if !now.contains(&r.message()) && !report.rejected.iter().any(|n| n.key() == r.key()) {
                tracing::info!(kind = %r.kind, resource = %r.key(), "networking resource no longer left out");
            }
        }
        self.rejected.clear();
        for labels in rejected_series(&report.rejected) {
            self.rejected.get_or_create(&labels).inc();
        }
        self.unread.clear();
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let mut now = HashSet::with_capacity(report.unread.len());
        for u in &report.unread {
            let labels = UnreadLabels {
                group: u.group_label,
                kind: u.kind_label,
            };
            self.unread
                .get_or_create(&labels)
                .inc_by(i64::try_from(u.documents).unwrap_or(i64::MAX));
            let key = format!("{}\0{}\0{}", u.at.file.display(), u.group, u.kind);
            if !warned.contains(&key) {
                tracing::warn!(
                    at = %u.at,
                    group = %u.group,
                    kind = %u.kind,
                    documents = u.documents,
                    "{u}"
                );
            }
            now.insert(key);
        }
        *warned = now;
        *self.report.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(report);
    }

    /// The errors of the last load that could not read the directory (empty when the last attempt read it).
    pub fn last_errors(&self) -> Vec<String> {
        self.last_errors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reject(&self, errors: &ConfigErrors) {
        for e in &errors.0 {
            tracing::error!(error = %e, "networking configuration unreadable; the previous configuration keeps serving");
        }
        self.reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .inc();
        *self.last_errors.write().unwrap_or_else(|p| p.into_inner()) =
            errors.0.iter().map(ToString::to_string).collect();
    }

    /// Loads the directory now if its files changed (always with `force`); true when a mesh was published.
    pub fn load(&self, force: bool) -> bool {
        let _loading = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let files = match ConfigFiles::read(&self.dir) {
            Ok(f) => without_tokens(&self.dir, f),
            Err(e) => {
                self.reject(&ConfigErrors(vec![e]));
                return false;
            }
        };
        // The API server's resources, once every kind has listed, as files at kubernetes/KIND/NS/NAME.
        let from_cluster = self.istio.as_ref().and_then(|i| i.documents());
        let files = match &from_cluster {
            Some(documents) if !documents.is_empty() => {
                let mut all = files.files;
                all.extend(documents.iter().cloned());
                ConfigFiles::from_texts(all)
            }
            _ => files,
        };
        {
            let mut last = self.last_digest.write().unwrap_or_else(|p| p.into_inner());
            if !force && *last == Some(files.digest) {
                return false;
            }
            *last = Some(files.digest);
        }
        let read = started.elapsed();
        let span = sextant_otel::root_span!(
            None,
            "pilot.config.load",
            sextant.files = files.files.len(),
            sextant.read_ms = millis(read),
            sextant.generation = tracing::field::Empty,
            sextant.left_out = tracing::field::Empty,
            sextant.result = tracing::field::Empty,
        );
        let _in_span = span.enter();
        let set = {
            let mut cache = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
            NetworkingSet::load_with(&files, &mut cache)
        };
        let typed = started.elapsed();
        // Security resources fail closed: an invalid one keeps what the served mesh enforces for it.
        let served = match self.source.mesh() {
            (0, _) => None,
            (_, mesh) => Some(mesh.config),
        };
        let Validated { config, rejected } = sextant_otel::child_span!("pilot.config.validate")
            .in_scope(|| pilot_config::validate_each_after(&set, served.as_deref()));
        for p in &config.security.authorization {
            if let Some(why) = &p.fail_closed {
                tracing::warn!(policy = %format!("{}/{}", p.namespace, p.name), "AuthorizationPolicy {why}");
            }
        }
        for p in &config.security.peer_authentication {
            if let Some(why) = &p.fail_closed {
                tracing::warn!(policy = %format!("{}/{}", p.namespace, p.name), "PeerAuthentication {why}");
            }
        }
        let validated = started.elapsed();
        self.registry.update(config.services.clone());
        let generation = self.publish(Some(Arc::new(config)));
        let result = if rejected.is_empty() {
            "success"
        } else {
            "partial"
        };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_errors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let left_out = rejected.len();
        span.record("sextant.generation", generation);
        span.record("sextant.left_out", left_out);
        span.record("sextant.result", result);
        if let (Some(istio), Some(_)) = (&self.istio, &from_cluster) {
            istio.judged(&rejected);
        }
        self.record(LoadReport {
            rejected,
            unread: set.unread,
        });
        tracing::info!(
            generation,
            files = files.files.len(),
            left_out,
            read_ms = millis(read),
            parse_ms = millis(typed - read),
            validate_ms = millis(validated - typed),
            translate_ms = millis(started.elapsed() - validated),
            "networking configuration loaded"
        );
        true
    }

    /// Loads the directory whenever it changes ([`sextant_watch::DirWatch`]: file-system events, or every
    /// `poll` a look at the files' names, sizes and times; a burst of edits settles for `debounce` first).
    /// Safe to restart: it starts watching, then loads what changed since the last load.
    pub async fn run(self: Arc<Self>, poll: Duration, debounce: Duration) {
        let mut dir = sextant_watch::DirWatch::start(self.dir.clone(), poll, debounce).await;
        loop {
            let watch = self.clone();
            // Unchanged contents (an event that changed nothing) publish nothing.
            blocking(move || watch.load(false)).await;
            dir.changed().await;
        }
    }
}

/// The `pilot_config_rejected` series of `rejected`, one per resource: at most [`MAX_REJECTED_SERIES`]
/// distinct label sets, the resources beyond the first `MAX_REJECTED_SERIES - 1` sharing the `_other` one.
fn rejected_series(rejected: &[Rejected]) -> impl Iterator<Item = RejectedLabels> + '_ {
    let over = rejected.len() > MAX_REJECTED_SERIES;
    rejected.iter().enumerate().map(move |(i, r)| {
        if over && i >= MAX_REJECTED_SERIES - 1 {
            RejectedLabels {
                kind: "_other".into(),
                namespace: "_other".into(),
                name: "_other".into(),
            }
        } else {
            RejectedLabels {
                kind: r.kind.clone(),
                namespace: r.namespace.clone(),
                name: r.name.clone(),
            }
        }
    })
}

/// Runs CPU work (reading, parsing, validation, translation) on the blocking pool. A panic there is the
/// caller's task's panic, so its supervisor sees it.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Some(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// `files` of the configuration directory `dir` without those of the bootstrap tokens' directory
/// ([`crate::TOKENS_DIR`]): a token is never configuration, whatever its file is named (only `*.yaml` and
/// `*.yml` files are read at all).
fn without_tokens(dir: &std::path::Path, files: ConfigFiles) -> ConfigFiles {
    let tokens = dir.join(crate::TOKENS_DIR);
    if !files.files.iter().any(|(p, _)| p.starts_with(&tokens)) {
        return files;
    }
    ConfigFiles::from_texts(
        (files.files.into_iter())
            .filter(|(p, _)| !p.starts_with(&tokens))
            .collect(),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use pilot_config::{NetworkingSet, ParsedFiles};
    use sextant_resources::ConfigFiles;

    use super::*;

    #[test]
    fn token_files_are_never_read_as_configuration() {
        let dir = std::env::temp_dir().join(format!("pilot-watch-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tokens/shop")).expect("dir");
        std::fs::write(dir.join("tokens/shop/web.yaml"), "a-token-named-like-yaml").expect("token");
        std::fs::write(dir.join("tokens/shop/front"), "front-token").expect("token");
        std::fs::write(dir.join("mesh.yaml"), "").expect("mesh");
        let files = without_tokens(&dir, ConfigFiles::read(&dir).expect("read"));
        let names: Vec<_> = files.files.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(names, [dir.join("mesh.yaml")]);
        assert_eq!(
            files.digest,
            ConfigFiles::from_texts(vec![(dir.join("mesh.yaml"), String::new())]).digest
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rejected_series_are_bounded() {
        let text: String = (0..MAX_REJECTED_SERIES + 5)
            .map(|i| {
                format!(
                    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g{i}}}\nspec: {{servers: []}}\n---\n"
                )
            })
            .collect();
        let files = ConfigFiles::from_texts(vec![(PathBuf::from("g.yaml"), text)]);
        let set = NetworkingSet::load_with(&files, &mut ParsedFiles::default());
        let rejected = pilot_config::validate_each(&set).rejected;
        assert_eq!(rejected.len(), MAX_REJECTED_SERIES + 5);
        let family: Family<RejectedLabels, Gauge> = Family::default();
        for labels in rejected_series(&rejected) {
            family.get_or_create(&labels).inc();
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("rejected", "", family);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("rejected{"))
            .collect();
        assert_eq!(series.len(), MAX_REJECTED_SERIES);
        assert!(series.contains(&"rejected{kind=\"Gateway\",namespace=\"default\",name=\"g0\"} 1"));
        assert!(
            series.contains(&"rejected{kind=\"_other\",namespace=\"_other\",name=\"_other\"} 6")
        );
    }
}
