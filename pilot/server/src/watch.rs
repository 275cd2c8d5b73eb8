//! Watches the configuration directory: reads and hashes the files every poll interval, and when they
//! changed and then stayed unchanged for the debounce time, validates them and publishes the new mesh. An
//! invalid change is logged and kept for `/debug/config`; the mesh being served stays.
//!
//! With a second registry (Kubernetes), its services are served together with the directory's
//! ServiceEntries (a host both define is the Kubernetes Service's), and each of its changes republishes the
//! mesh with the configuration last loaded.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hub_config::{ConfigErrors, ConfigFiles};
use pilot_config::{FileRegistry, MeshConfig, NetworkingSet, RegistrySnapshot, ServiceRegistry};
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
        match NetworkingSet::load(&files).and_then(|set| pilot_config::validate(&set)) {
            Ok(config) => {
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

    /// Polls every `poll`; a change is loaded once the files stayed the same for `debounce`, so a burst of
    /// edits makes one push.
    pub async fn run(self: Arc<Self>, poll: Duration, debounce: Duration) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(mut digest) = self.changed_digest() else {
                continue;
            };
            loop {
                tokio::time::sleep(debounce).await;
                match ConfigFiles::read(&self.dir) {
                    Ok(f) if f.digest != digest => digest = f.digest,
                    _ => break,
                }
            }
            let watch = self.clone();
            // Parsing and validation are CPU work: off the async workers.
            let _ = tokio::task::spawn_blocking(move || watch.load(false)).await;
        }
    }

    /// The digest of the files when it differs from the last loaded one.
    fn changed_digest(&self) -> Option<u64> {
        let digest = ConfigFiles::read(&self.dir).map_or(0, |f| f.digest);
        let last = *self.last_digest.read().unwrap_or_else(|p| p.into_inner());
        (last != Some(digest)).then_some(digest)
    }
}
