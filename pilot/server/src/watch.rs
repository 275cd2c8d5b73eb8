//! Watches the configuration directory ([`sextant_watch::DirWatch`]: file-system events, a stat poll as
//! safety net, debounce). After a change the files are read; if their contents changed, the changed files
//! are parsed (the others' resources are reused), the whole set is validated and the new mesh is published.
//! All of it runs on the blocking pool. An invalid change is logged and kept for `/debug/config`; the mesh
//! being served stays.
//!
//! With a second registry (Kubernetes), its services are served together with the directory's
//! ServiceEntries (a host both define is the Kubernetes Service's), and each of its changes republishes the
//! mesh with the configuration last loaded.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hub_config::{ConfigErrors, ConfigFiles};
use pilot_config::{
    FileRegistry, MeshConfig, NetworkingSet, ParsedFiles, RegistrySnapshot, ServiceRegistry,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::source::{Mesh, MeshSource};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

/// The configuration directory and what was last loaded from it.
pub struct ConfigWatch {
    dir: PathBuf,
    registry: FileRegistry,
    kube: Option<Arc<dyn ServiceRegistry>>,
    /// Held while a mesh is composed and published, so the last publish has the latest of both sources.
    publishing: Mutex<()>,
    source: Arc<MeshSource>,
    last_digest: RwLock<Option<u64>>,
    parsed: Mutex<ParsedFiles>,
    last_errors: RwLock<Vec<String>>,
    pub(crate) reloads: Family<ResultLabels, Counter>,
}

impl ConfigWatch {
    /// Watches `dir` and publishes into `source`.
    pub fn new(dir: PathBuf, source: Arc<MeshSource>) -> Self {
        ConfigWatch {
            dir,
            registry: FileRegistry::new(),
            kube: None,
            publishing: Mutex::new(()),
            source,
            last_digest: RwLock::new(None),
            parsed: Mutex::new(ParsedFiles::default()),
            last_errors: RwLock::new(Vec::new()),
            reloads: Family::default(),
        }
    }

    /// Serves `registry`'s services too (Kubernetes mode); follow its changes with [`ConfigWatch::follow`].
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<dyn ServiceRegistry>) -> Self {
        self.kube = Some(registry);
        self
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

    /// The errors of the last rejected change (empty when the last attempt loaded).
    pub fn last_errors(&self) -> Vec<String> {
        self.last_errors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn reject(&self, errors: &ConfigErrors) {
        for e in &errors.0 {
            tracing::error!(error = %e, "networking configuration rejected; the previous configuration keeps serving");
        }
        self.reloads
            .get_or_create(&ResultLabels { result: "failure" })
            .inc();
        *self.last_errors.write().unwrap_or_else(|p| p.into_inner()) =
            errors.0.iter().map(ToString::to_string).collect();
    }

    /// Loads the directory now if its files changed (always with `force`); true when a mesh was published.
    pub fn load(&self, force: bool) -> bool {
        let started = Instant::now();
        let files = match ConfigFiles::read(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                self.reject(&ConfigErrors(vec![e]));
                return false;
            }
        };
        {
            let mut last = self.last_digest.write().unwrap_or_else(|p| p.into_inner());
            if !force && *last == Some(files.digest) {
                return false;
            }
            *last = Some(files.digest);
        }
        let read = started.elapsed();
        let parsed = {
            let mut cache = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
            NetworkingSet::load_with(&files, &mut cache)
        };
        let typed = started.elapsed();
        match parsed.and_then(|set| pilot_config::validate(&set)) {
            Ok(config) => {
                let validated = started.elapsed();
                self.registry.update(config.services.clone());
                let generation = self.publish(Some(Arc::new(config)));
                self.reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                self.last_errors
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                tracing::info!(
                    generation,
                    files = files.files.len(),
                    read_ms = millis(read),
                    parse_ms = millis(typed - read),
                    validate_ms = millis(validated - typed),
                    translate_ms = millis(started.elapsed() - validated),
                    "networking configuration loaded"
                );
                true
            }
            Err(errors) => {
                self.reject(&errors);
                false
            }
        }
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

/// Runs CPU work (reading, parsing, validation, translation) on the blocking pool. A panic there is the
/// caller's task's panic, so its supervisor sees it.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => Some(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
