//! The snapshot source pilot serves: the current mesh (configuration and services) translated per proxy
//! view, cached, and replaced as a whole when the mesh changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use pilot_config::{MeshConfig, RegistrySnapshot};
use pilot_xds::{Snapshot, SnapshotSource};
use prometheus_client::metrics::counter::Counter;
use sextant_proto::envoy::config::core::v3::Node;
use tokio::sync::watch;

/// Turns the mesh into one proxy's resources.
pub trait Translator: Send + Sync + 'static {
    /// A key equal for proxies that get identical resources (same namespace, labels, interception…).
    fn view(&self, node: &Node) -> String;

    /// The resources of the proxies of `node`'s view.
    fn translate(&self, mesh: &MeshConfig, services: &RegistrySnapshot, node: &Node) -> Snapshot;
}

/// The mesh a generation of snapshots is built from.
#[derive(Clone, Debug, Default)]
pub struct Mesh {
    /// Validated networking configuration.
    pub config: Arc<MeshConfig>,
    /// Services and endpoints.
    pub services: Arc<RegistrySnapshot>,
}

/// Views kept at most; beyond, the cache starts over (counted in `pilot_view_cache_resets_total`).
pub const MAX_VIEWS: usize = 10_000;

struct Current {
    generation: u64,
    mesh: Mesh,
}

/// The mesh, translated lazily per view, with a change signal for the ADS streams.
pub struct MeshSource {
    translator: Arc<dyn Translator>,
    current: RwLock<Arc<Current>>,
    /// (generation, view) → snapshot, and the last consistent snapshot of each view.
    cache: Mutex<HashMap<String, (u64, Arc<Snapshot>)>>,
    changes: watch::Sender<u64>,
    /// Translations that produced an inconsistent snapshot (the view kept its previous one).
    pub inconsistent: Counter,
    /// Times the view cache was full and started over.
    pub cache_resets: Counter,
}

impl MeshSource {
    /// A source with an empty mesh.
    pub fn new(translator: Arc<dyn Translator>) -> Self {
        MeshSource {
            translator,
            current: RwLock::new(Arc::new(Current {
                generation: 0,
                mesh: Mesh::default(),
            })),
            cache: Mutex::new(HashMap::new()),
            changes: watch::Sender::new(0),
            inconsistent: Counter::default(),
            cache_resets: Counter::default(),
        }
    }

    /// Serves `mesh` from now on and wakes every stream.
    pub fn publish(&self, mesh: Mesh) -> u64 {
        let generation = {
            let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
            let generation = cur.generation + 1;
            *cur = Arc::new(Current { generation, mesh });
            generation
        };
        self.changes.send_replace(generation);
        generation
    }

    /// The mesh being served and its generation.
    pub fn mesh(&self) -> (u64, Mesh) {
        let cur = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (cur.generation, cur.mesh.clone())
    }
}

impl SnapshotSource for MeshSource {
    fn snapshot(&self, node: &Node) -> Arc<Snapshot> {
        let cur = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let view = self.translator.view(node);
        if let Some((g, s)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&view)
            && *g == cur.generation
        {
            return s.clone();
        }
        // Translated outside the lock: proxies of other views are not held up.
        let fresh = self
            .translator
            .translate(&cur.mesh.config, &cur.mesh.services, node);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = match fresh.consistent() {
            Ok(()) => Arc::new(fresh),
            Err(e) => {
                self.inconsistent.inc();
                tracing::error!(%view, error = %e, "translation produced an inconsistent snapshot; the proxy keeps its previous one");
                cache
                    .get(&view)
                    .map_or_else(|| Arc::new(Snapshot::default()), |(_, s)| s.clone())
            }
        };
        if cache.len() >= MAX_VIEWS && !cache.contains_key(&view) {
            cache.clear();
            self.cache_resets.inc();
        }
        cache.insert(view, (cur.generation, snapshot.clone()));
        snapshot
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
