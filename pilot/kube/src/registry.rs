//! [`KubeRegistry`]: three `kube` watchers (Services, EndpointSlices, Pods) feed bounded stores; a rebuild
//! task turns them into a [`RegistrySnapshot`] once all three have listed, coalescing bursts of events into
//! one new version.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use pilot_config::registry::limits;
use pilot_config::{RegistrySnapshot, ServiceRegistry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use sextant_supervise::TaskHealth;
use tokio::sync::{Notify, watch};

use crate::KubeOptions;
use crate::build::build;
use crate::objects::{PodInfo, ServiceInfo, SliceInfo, key};
use sextant_kube::{Outcome, Store};

/// Labels of the per-kind metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `Service`, `EndpointSlice` or `Pod`.
    pub kind: &'static str,
}

/// Labels of the event counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `Service`, `EndpointSlice` or `Pod`.
    pub kind: &'static str,
    /// `apply`, `delete`, `relist` (a (re-)list started), `list` (an object of it) or `list_done` (it
    /// completed).
    pub event: &'static str,
}

/// The registry's metrics.
#[derive(Clone, Debug, Default)]
pub struct KubeMetrics {
    /// Watch events received.
    pub events: Family<EventLabels, Counter>,
    /// Failed lists and watches (each is retried after a backoff).
    pub errors: Family<KindLabels, Counter>,
    /// Objects refused because their kind's store was full.
    pub refused: Family<KindLabels, Counter>,
    /// Ready endpoints left out of the current services by the endpoint limits.
    pub endpoints_left_out: Gauge,
}

impl KubeMetrics {
    /// Registers every metric under `pilot_kube_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pilot_kube_events",
            "Kubernetes watch events received, by kind and event",
            self.events.clone(),
        );
        registry.register(
            "pilot_kube_watch_errors",
            "Kubernetes lists and watches that failed (retried after a backoff)",
            self.errors.clone(),
        );
        registry.register(
            "pilot_kube_refused_objects",
            "Kubernetes objects refused because the registry's limit for their kind was reached",
            self.refused.clone(),
        );
        registry.register(
            "pilot_kube_endpoints_left_out",
            "Ready endpoints left out of the services by the endpoint limits",
            self.endpoints_left_out.clone(),
        );
    }
}

struct Stores {
    services: Store<ServiceInfo>,
    slices: Store<SliceInfo>,
    pods: Store<PodInfo>,
}

/// The Kubernetes-mode service registry. Its snapshot is empty (version 0) until Services,
/// EndpointSlices and Pods have all been listed once; afterwards every change of the services makes a new
/// version. While a watch fails, it is retried with a backoff and the last services keep serving.
pub struct KubeRegistry {
    current: RwLock<Arc<RegistrySnapshot>>,
    version: watch::Sender<u64>,
    synced: watch::Sender<bool>,
    stores: Mutex<Stores>,
    dirty: Arc<Notify>,
    domain: String,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Its metrics.
    pub metrics: KubeMetrics,
}

impl Drop for KubeRegistry {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl Debug for KubeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeRegistry")
            .field("domain", &self.domain)
            .field("version", &*self.version.borrow())
            .finish_non_exhaustive()
    }
}

impl KubeRegistry {
    /// Starts watching through `client` (on the current tokio runtime); the tasks end when the registry
    /// is dropped. Each task is supervised in `health`: a panic is counted and the task restarted (a
    /// restarted watch lists its kind again).
    pub fn start(
        client: Client,
        options: &KubeOptions,
        health: &Arc<TaskHealth>,
    ) -> Arc<KubeRegistry> {
        let registry = Arc::new(KubeRegistry {
            current: RwLock::new(Arc::new(RegistrySnapshot::default())),
            version: watch::Sender::new(0),
            synced: watch::Sender::new(false),
            stores: Mutex::new(Stores {
                services: Store::new(limits::MAX_SERVICES),
                slices: Store::new(limits::MAX_ENDPOINTS),
                pods: Store::new(limits::MAX_ENDPOINTS),
            }),
            dirty: Arc::new(Notify::new()),
            domain: options.cluster_domain.clone(),
            tasks: Mutex::new(Vec::new()),
            metrics: KubeMetrics::default(),
        });
        let weak = Arc::downgrade(&registry);
        let (dirty, debounce) = (registry.dirty.clone(), options.debounce);
        let tasks = [
            supervised_watch::<KubeService, _>(
                health,
                &weak,
                &client,
                "Service",
                ServiceInfo::of,
                |s| &mut s.services,
            ),
            supervised_watch::<EndpointSlice, _>(
                health,
                &weak,
                &client,
                "EndpointSlice",
                SliceInfo::of,
                |s| &mut s.slices,
            ),
            supervised_watch::<Pod, _>(health, &weak, &client, "Pod", PodInfo::of, |s| &mut s.pods),
            sextant_supervise::restarting("kube-rebuild", health.clone(), move || {
                rebuild_loop(weak.clone(), dirty.clone(), debounce)
            }),
        ];
        *registry.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect();
        registry
    }

    /// Whether Services, EndpointSlices and Pods have all been listed once.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// A receiver that turns true at the first full sync.
    pub fn sync_changes(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Rebuilds the services from the stores; a new version only when they differ.
    fn rebuild(&self) {
        let built = {
            let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
            if !(stores.services.synced() && stores.slices.synced() && stores.pods.synced()) {
                return;
            }
            build(
                stores.services.items(),
                stores.slices.items(),
                stores.pods.items(),
                &self.domain,
            )
        };
        self.metrics
            .endpoints_left_out
            .set(i64::try_from(built.left_out).unwrap_or(i64::MAX));
        if built.left_out > 0 {
            tracing::warn!(
                left_out = built.left_out,
                "Kubernetes registry: endpoints beyond the limits ({} per service, {} in all) left out",
                limits::MAX_ENDPOINTS_PER_SERVICE,
                limits::MAX_ENDPOINTS
            );
        }
        let changed = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            (*current.services != built.services).then(|| {
                let version = current.version + 1;
                let count = built.services.len();
                *current = Arc::new(RegistrySnapshot {
                    version,
                    services: Arc::new(built.services),
                });
                (version, count)
            })
        };
        // Synced before the new version is announced: whoever sees the services sees them synced.
        if !self.synced() {
            tracing::info!("Kubernetes registry: first full sync done");
            self.synced.send_replace(true);
        }
        if let Some((version, services)) = changed {
            tracing::info!(version, services, "Kubernetes registry: services changed");
            self.version.send_replace(version);
        }
    }
}

impl ServiceRegistry for KubeRegistry {
    fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// Waits for changed stores, lets a burst settle for `debounce`, and rebuilds once.
async fn rebuild_loop(
    registry: std::sync::Weak<KubeRegistry>,
    dirty: Arc<Notify>,
    debounce: Duration,
) {
    loop {
        // The permit of a change that arrived while rebuilding is kept, so nothing is missed.
        dirty.notified().await;
        tokio::time::sleep(debounce).await;
        let Some(strong) = registry.upgrade() else {
            return;
        };
        // Joining every Service with its slices and pods is CPU work: off the runtime's workers. A panic
        // there is this task's (its supervisor counts it and starts it over).
        if let Err(e) = tokio::task::spawn_blocking(move || strong.rebuild()).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// [`watch_kind`] of `K`, supervised as task `kube-watch-KIND`.
fn supervised_watch<K, T>(
    health: &Arc<TaskHealth>,
    registry: &std::sync::Weak<KubeRegistry>,
    client: &Client,
    kind: &'static str,
    project: fn(&K) -> T,
    store: fn(&mut Stores) -> &mut Store<T>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
    T: PartialEq + Send + 'static,
{
    let name = match kind {
        "Service" => "kube-watch-services",
        "EndpointSlice" => "kube-watch-endpointslices",
        _ => "kube-watch-pods",
    };
    let (registry, client) = (registry.clone(), client.clone());
    sextant_supervise::restarting(name, health.clone(), move || {
        watch_kind::<K, T>(
            registry.clone(),
            Api::all(client.clone()),
            kind,
            project,
            store,
        )
    })
}

/// Feeds one kind's watcher events into its store. Errors are counted and logged; the watcher re-lists
/// or resumes after a backoff (a `410 Gone` restarts with a list).
async fn watch_kind<K, T>(
    registry: std::sync::Weak<KubeRegistry>,
    api: Api<K>,
    kind: &'static str,
    project: fn(&K) -> T,
    store: fn(&mut Stores) -> &mut Store<T>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: PartialEq,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                registry
                    .metrics
                    .errors
                    .get_or_create(&KindLabels { kind })
                    .inc();
                tracing::warn!(kind, error = %e, "Kubernetes watch failed; retrying after a backoff, the last services keep serving");
                continue;
            }
        };
        let (name, outcome) = {
            let mut stores = registry.stores.lock().unwrap_or_else(|p| p.into_inner());
            let store = store(&mut stores);
            match event {
                watcher::Event::Init => {
                    store.init();
                    ("relist", Outcome::Unchanged)
                }
                watcher::Event::InitApply(o) => {
                    ("list", store.init_apply(key(o.meta()), project(&o)))
                }
                watcher::Event::InitDone => ("list_done", store.init_done()),
                watcher::Event::Apply(o) => ("apply", store.apply(key(o.meta()), project(&o))),
                watcher::Event::Delete(o) => ("delete", store.delete(&key(o.meta()))),
            }
        };
        registry
            .metrics
            .events
            .get_or_create(&EventLabels { kind, event: name })
            .inc();
        match outcome {
            Outcome::Refused => {
                registry
                    .metrics
                    .refused
                    .get_or_create(&KindLabels { kind })
                    .inc();
                tracing::warn!(
                    kind,
                    "Kubernetes registry full for this kind; object refused"
                );
            }
            Outcome::Changed => registry.dirty.notify_one(),
            Outcome::Unchanged if name == "list_done" => registry.dirty.notify_one(),
            Outcome::Unchanged => {}
        }
    }
}
