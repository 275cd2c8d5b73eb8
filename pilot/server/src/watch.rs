//! Watches the configuration directory: reads and hashes the files every poll interval, and when they
//! changed and then stayed unchanged for the debounce time, validates them and publishes the new mesh. An
//! invalid change is logged and kept for `/debug/config`; the mesh being served stays.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hub_config::{ConfigErrors, ConfigFiles};
use pilot_config::{FileRegistry, NetworkingSet, ServiceRegistry};
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
            source,
            last_digest: RwLock::new(None),
            last_errors: RwLock::new(Vec::new()),
            reloads: Family::default(),
        }
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
                let generation = self.source.publish(Mesh {
                    config: Arc::new(config),
                    services: self.registry.snapshot(),
                });
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
