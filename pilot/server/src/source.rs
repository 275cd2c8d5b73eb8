//! The snapshot source pilot serves: the current mesh (configuration and services) translated per proxy
//! view, cached, and replaced as a whole when the mesh changes.
//!
//! A view is [`Translator::view`] ([`ProxyInfo::view`] by default): what translation may read of a proxy,
//! so proxies with equal views share one translation and translation is given the view, never the proxy.
//! Translations run on the blocking pool: a stream that misses the cache waits for its view's translation
//! without holding a runtime worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use pilot_config::{MeshConfig, RegistrySnapshot};
use pilot_translate::ProxyInfo;
use pilot_xds::{Snapshot, SnapshotSource};
use prometheus_client::metrics::counter::Counter;
use sextant_proto::envoy::config::core::v3::Node;
use tokio::sync::{OnceCell, watch};

/// Turns the mesh into one view's resources.
pub trait Translator: Send + Sync + 'static {
    /// The resources of the proxies whose view ([`Translator::view`]) is `view`. Runs on a blocking thread.
    fn translate(
        &self,
        mesh: &MeshConfig,
        services: &RegistrySnapshot,
        view: &ProxyInfo,
    ) -> Snapshot;

    /// What translation reads of `proxy`: the key under which proxies share one translation, and what
    /// [`Translator::translate`] is given. By default [`ProxyInfo::view`]; a translator reading more of a
    /// proxy (the hub's filters: [`ProxyInfo::view_with_hub`]) says so here.
    fn view(&self, proxy: &ProxyInfo) -> ProxyInfo {
        proxy.view()
    }

    /// Told of every mesh before it is published, whether or not a proxy is connected (to say once what
    /// the translator finds missing in it). By default this does nothing.
    fn published(&self, _mesh: &MeshConfig, _services: &RegistrySnapshot) {}

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
    /// The latest generation a stream of the view asked for: a view nobody asked for during the last two
    /// generations has no proxy left, and a publication drops it instead of translating it again.
    asked: u64,
    snapshot: Arc<OnceCell<Arc<Snapshot>>>,
}

/// What translating needs, apart from the mesh: shared with the blocking threads translations run on.
#[derive(Clone)]
struct Translation {
    translator: Arc<dyn Translator>,
    inconsistent: Counter,
    panics: Counter,
}

impl Translation {
    /// Translates one view; an inconsistent result keeps `previous`. Types whose resources did not change
    /// keep `previous`'s maps, so streams see at a glance that they have nothing to send.
    fn build(
        &self,
        view: &ProxyInfo,
        mesh: &Mesh,
        previous: Option<&Arc<Snapshot>>,
    ) -> Arc<Snapshot> {
        let span = sextant_otel::root_span!(
            None,
            "pilot.translate",
            sextant.view.kind = ?view.kind,
            sextant.view.namespace = %view.namespace,
            sextant.view.workload = %view.workload,
        );
        let _in_span = span.enter();
        let mut fresh = self
            .translator
            .translate(&mesh.config, &mesh.services, view);
        match fresh.consistent() {
            Ok(()) => {
                if let Some(previous) = previous {
                    fresh.reuse_unchanged(previous);
                }
                Arc::new(fresh)
            }
            Err(e) => {
                self.inconsistent.inc();
                tracing::error!(?view, error = %e, "translation produced an inconsistent snapshot; the proxy keeps its previous one");
                previous.map_or_else(|| Arc::new(Snapshot::default()), Arc::clone)
            }
        }
    }

    /// [`Translation::build`] on the blocking pool. A panicking translation is logged and counted, and the
    /// view keeps `previous` (a new view gets nothing).
    async fn build_blocking(
        &self,
        view: ProxyInfo,
        mesh: Mesh,
        previous: Option<Arc<Snapshot>>,
    ) -> Arc<Snapshot> {
        let this = self.clone();
        let kept = previous.clone();
        let built =
            tokio::task::spawn_blocking(move || this.build(&view, &mesh, previous.as_ref()));
        match built.await {
            Ok(snapshot) => snapshot,
            Err(e) => {
                self.panics.inc();
                let why = e
                    .try_into_panic()
                    .map_or_else(|e| e.to_string(), sextant_supervise::panic_message);
                tracing::error!(panic = %why, "translation panicked; the proxy keeps its previous resources");
                kept.unwrap_or_default()
            }
        }
    }
}

/// The mesh, translated per view, with a change signal for the ADS streams.
pub struct MeshSource {
    translation: Translation,
    current: RwLock<Arc<Current>>,
    /// View → its snapshot for a generation.
    cache: Mutex<HashMap<ProxyInfo, Entry>>,
    /// One publication at a time.
    publishing: Mutex<()>,
    changes: watch::Sender<u64>,
    /// Translations that produced an inconsistent snapshot (the view kept its previous one).
    pub inconsistent: Counter,
    /// Translations that panicked (the view kept its previous snapshot).
    pub translation_panics: Counter,
    /// Times the view cache was full and started over.
    pub cache_resets: Counter,
    /// Views dropped because no proxy of theirs asked for two generations.
    pub views_pruned: Counter,
}

impl MeshSource {
    /// The translator's next renewal after `after` (see [`Translator::renewal_after`]).
    pub fn renewal_after(&self, after: SystemTime) -> Option<SystemTime> {
        self.translation.translator.renewal_after(after)
    }

    /// A source with an empty mesh.
    pub fn new(translator: Arc<dyn Translator>) -> Self {
        let (inconsistent, panics) = (Counter::default(), Counter::default());
        MeshSource {
            translation: Translation {
                translator,
                inconsistent: inconsistent.clone(),
                panics: panics.clone(),
            },
            current: RwLock::new(Arc::new(Current {
                generation: 0,
                mesh: Mesh::default(),
            })),
            cache: Mutex::new(HashMap::new()),
            publishing: Mutex::new(()),
            changes: watch::Sender::new(0),
            inconsistent,
            translation_panics: panics,
            cache_resets: Counter::default(),
            views_pruned: Counter::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<ProxyInfo, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of views cached.
    pub fn views(&self) -> usize {
        self.cache().len()
    }

    /// Serves `mesh` from now on and wakes every stream. The views in use are translated first, once each,
    /// so their streams find their snapshots ready instead of translating in turn; views no proxy asked for
    /// during the last two generations are dropped. CPU work: call it from a blocking thread.
    pub fn publish(&self, mesh: Mesh) -> u64 {
        let _one = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        (self.translation.translator).published(&mesh.config, &mesh.services);
        let served = self.mesh().0;
        let generation = served + 1;
        let in_use: Vec<(ProxyInfo, u64, Option<Arc<Snapshot>>)> = {
            let mut cache = self.cache();
            let before = cache.len();
            cache.retain(|_, e| e.asked + 1 >= served);
            self.views_pruned.inc_by((before - cache.len()) as u64);
            cache
                .iter()
                .map(|(view, e)| (view.clone(), e.asked, e.snapshot.get().cloned()))
                .collect()
        };
        let fresh: Vec<(ProxyInfo, Entry)> = in_use
            .into_iter()
            .map(|(view, asked, previous)| {
                let snapshot = self.translation.build(&view, &mesh, previous.as_ref());
                let entry = Entry {
                    generation,
                    asked,
                    snapshot: Arc::new(OnceCell::from(snapshot)),
                };
                (view, entry)
            })
            .collect();
        {
            let mut cache = self.cache();
            for (view, mut entry) in fresh {
                // A stream may have asked while the view was translated.
                if let Some(e) = cache.get(&view) {
                    entry.asked = entry.asked.max(e.asked);
                }
                cache.insert(view, entry);
            }
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
}

impl SnapshotSource for MeshSource {
    async fn snapshot(&self, node: &Node) -> Arc<Snapshot> {
        let cur = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let view = (self.translation.translator).view(&ProxyInfo::from_node(node));
        let (cell, previous) = {
            let mut cache = self.cache();
            let known = cache.get_mut(&view).map(|e| {
                e.asked = e.asked.max(cur.generation);
                (e.generation == cur.generation, e.snapshot.clone())
            });
            match known {
                Some((true, cell)) => (cell, None),
                stale => {
                    let previous = stale.as_ref().and_then(|(_, cell)| cell.get().cloned());
                    if cache.len() >= MAX_VIEWS && stale.is_none() {
                        cache.clear();
                        self.cache_resets.inc();
                    }
                    let cell = Arc::new(OnceCell::new());
                    let entry = Entry {
                        generation: cur.generation,
                        asked: cur.generation,
                        snapshot: cell.clone(),
                    };
                    cache.insert(view.clone(), entry);
                    (cell, previous)
                }
            }
        };
        // Translated outside the lock and off the runtime's workers: proxies of other views are not held up,
        // and this view's other streams wait without blocking a thread.
        cell.get_or_init(|| {
            self.translation
                .build_blocking(view, cur.mesh.clone(), previous)
        })
        .await
        .clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
