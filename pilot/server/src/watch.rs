//! Watches the configuration directory: woken by file-system events (inotify) and, as a safety net, by a
//! poll that compares the files' names, sizes and modification times. Once a change stayed still for the
//! debounce time, the files are read; if their contents changed, the changed files are parsed (the others'
//! resources are reused), the whole set is validated and the new mesh is published. An invalid change is
//! logged and kept for `/debug/config`; the mesh being served stays.
//!
//! With a second registry (Kubernetes), its services are served together with the directory's
//! ServiceEntries (a host both define is the Kubernetes Service's), and each of its changes republishes the
//! mesh with the configuration last loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hub_config::{ConfigErrors, ConfigFiles, yaml_files};
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
    /// The files' names, sizes and times when they were last read.
    last_fingerprint: RwLock<Option<u64>>,
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
            last_fingerprint: RwLock::new(None),
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
    /// load: a mesh is never served without a loaded configuration).
    pub async fn follow(self: Arc<Self>) {
        let Some(kube) = self.kube.clone() else {
            return;
        };
        let mut changes = kube.changes();
        while changes.changed().await.is_ok() {
            if let Some(generation) = self.publish(None) {
                tracing::debug!(generation, "registry services changed; mesh republished");
            }
        }
    }

    /// Translates the mesh being served again (after the first successful load) whenever the translator
    /// says its translations went stale by themselves: workload certificates due for renewal. Checked every
    /// second, since certificates are issued whenever a new proxy's view is first translated.
    pub async fn renew(self: Arc<Self>) {
        const CHECK_EVERY: Duration = Duration::from_secs(1);
        let mut handled = std::time::SystemTime::UNIX_EPOCH;
        loop {
            let now = std::time::SystemTime::now();
            match self.source.renewal_after(handled) {
                Some(due) if due <= now => {
                    let watch = self.clone();
                    if let Ok(Some(generation)) =
                        tokio::task::spawn_blocking(move || watch.publish(None)).await
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
        *self
            .last_fingerprint
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(fingerprint(&self.dir));
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

    /// Waits for changes (file-system events, or every `poll` a look at the files' names, sizes and times);
    /// a change is loaded once the files stayed the same for `debounce`, so a burst of edits makes one push.
    pub async fn run(self: Arc<Self>, poll: Duration, debounce: Duration) {
        let events = Arc::new(Events::default());
        let _watcher = events.watch(&self.dir);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let woken_by_event = tokio::select! {
                _ = tick.tick() => false,
                () = events.wake.notified() => true,
            };
            let mut seen = fingerprint(&self.dir);
            let last = *self
                .last_fingerprint
                .read()
                .unwrap_or_else(|p| p.into_inner());
            if !woken_by_event && last == Some(seen) {
                continue;
            }
            loop {
                let count = events.count.load(Ordering::Relaxed);
                tokio::time::sleep(debounce).await;
                let now = fingerprint(&self.dir);
                if now == seen && events.count.load(Ordering::Relaxed) == count {
                    break;
                }
                seen = now;
            }
            let watch = self.clone();
            // Reading, parsing, validation and translation are CPU work: off the async workers. Unchanged
            // contents (an event that changed nothing) publish nothing.
            let _ = tokio::task::spawn_blocking(move || watch.load(false)).await;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A digest of the YAML files' names, sizes and modification times: cheap to take every poll.
fn fingerprint(dir: &Path) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for f in yaml_files(dir).unwrap_or_default() {
        f.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&f) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

/// File-system events under the configuration directory: a count and a wake-up (coalesced).
#[derive(Default)]
struct Events {
    count: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Events {
    /// Starts watching `dir` (recursively); `None`, with a warning, where the platform cannot, and then the
    /// poll alone finds changes.
    fn watch(self: &Arc<Self>, dir: &Path) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        let events = self.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            // Reads (ours included) are not changes.
            if event.is_ok_and(|e| e.kind.is_access()) {
                return;
            }
            events.count.fetch_add(1, Ordering::Relaxed);
            events.wake.notify_one();
        };
        let watched = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::Recursive)?;
            Ok(w)
        });
        match watched {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration directory for changes; polling it only");
                None
            }
        }
    }
}
