//! The snapshot source pilot serves: the current mesh (configuration and services) translated per proxy
//! view, cached, and replaced as a whole when the mesh changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::SystemTime;

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

    /// The first time later than `after` when translations go stale by themselves (a workload certificate
    /// due for renewal): the server translates the views in use again then. `None`: never.
    fn renewal_after(&self, _after: SystemTime) -> Option<SystemTime> {
        None
    }
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

/// One view's snapshot for one generation: translated once, by whichever stream (or publication) gets there
/// first, while the view's other streams wait for it.
struct Entry {
    generation: u64,
    /// A proxy of the view, to translate it again when the mesh changes.
    node: Node,
    snapshot: Arc<OnceLock<Arc<Snapshot>>>,
}

/// The mesh, translated per view, with a change signal for the ADS streams.
pub struct MeshSource {
    translator: Arc<dyn Translator>,
    current: RwLock<Arc<Current>>,
    /// View → its snapshot for a generation.
    cache: Mutex<HashMap<String, Entry>>,
    /// One publication at a time.
    publishing: Mutex<()>,
    changes: watch::Sender<u64>,
    /// Translations that produced an inconsistent snapshot (the view kept its previous one).
    pub inconsistent: Counter,
    /// Times the view cache was full and started over.
    pub cache_resets: Counter,
}

impl MeshSource {
    /// The translator's next renewal after `after` (see [`Translator::renewal_after`]).
    pub fn renewal_after(&self, after: SystemTime) -> Option<SystemTime> {
        self.translator.renewal_after(after)
    }

    /// A source with an empty mesh.
    pub fn new(translator: Arc<dyn Translator>) -> Self {
        MeshSource {
            translator,
            current: RwLock::new(Arc::new(Current {
                generation: 0,
                mesh: Mesh::default(),
            })),
            cache: Mutex::new(HashMap::new()),
            publishing: Mutex::new(()),
            changes: watch::Sender::new(0),
            inconsistent: Counter::default(),
            cache_resets: Counter::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `mesh` from now on and wakes every stream. The views in use are translated first, once each,
    /// so their streams find their snapshots ready instead of translating in turn.
    pub fn publish(&self, mesh: Mesh) -> u64 {
        let _one = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.mesh().0 + 1;
        let in_use: Vec<(String, Node, Option<Arc<Snapshot>>)> = self
            .cache()
            .iter()
            .map(|(view, e)| (view.clone(), e.node.clone(), e.snapshot.get().cloned()))
            .collect();
        let fresh: Vec<(String, Entry)> = in_use
            .into_iter()
            .map(|(view, node, previous)| {
                let snapshot = self.build(&view, &mesh, &node, previous.as_ref());
                let entry = Entry {
                    generation,
                    node,
                    snapshot: Arc::new(OnceLock::from(snapshot)),
                };
                (view, entry)
            })
            .collect();
        {
            let mut cache = self.cache();
            cache.extend(fresh);
            *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                Arc::new(Current { generation, mesh });
        }
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

    /// Translates one view; an inconsistent result keeps `previous`. Types whose resources did not change
    /// keep `previous`'s maps, so streams see at a glance that they have nothing to send.
    fn build(
        &self,
        view: &str,
        mesh: &Mesh,
        node: &Node,
        previous: Option<&Arc<Snapshot>>,
    ) -> Arc<Snapshot> {
        let mut fresh = self
            .translator
            .translate(&mesh.config, &mesh.services, node);
        match fresh.consistent() {
            Ok(()) => {
                if let Some(previous) = previous {
                    fresh.reuse_unchanged(previous);
                }
                Arc::new(fresh)
            }
            Err(e) => {
                self.inconsistent.inc();
                tracing::error!(%view, error = %e, "translation produced an inconsistent snapshot; the proxy keeps its previous one");
                previous.map_or_else(|| Arc::new(Snapshot::default()), Arc::clone)
            }
        }
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
        let (cell, previous) = {
            let mut cache = self.cache();
            let known = cache
                .get(&view)
                .map(|e| (e.generation == cur.generation, e.snapshot.clone()));
            match known {
                Some((true, cell)) => (cell, None),
                stale => {
                    let previous = stale.as_ref().and_then(|(_, cell)| cell.get().cloned());
                    if cache.len() >= MAX_VIEWS && stale.is_none() {
                        cache.clear();
                        self.cache_resets.inc();
                    }
                    let cell = Arc::new(OnceLock::new());
                    let entry = Entry {
                        generation: cur.generation,
                        node: node.clone(),
                        snapshot: cell.clone(),
                    };
                    cache.insert(view.clone(), entry);
                    (cell, previous)
                }
            }
        };
        // Translated outside the lock: proxies of other views are not held up.
        cell.get_or_init(|| self.build(&view, &cur.mesh, node, previous.as_ref()))
            .clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
