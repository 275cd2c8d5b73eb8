//! The hub's resources from the Kubernetes API server (`sextant hub --kubernetes`): watchers of the
//! `policy.sextant.dev` kinds (Policy, RateLimit, Telemetry, Adapter) feed bounded stores; once every kind
//! has listed, [`HubKube::files`] hands the hub the resources as the documents a configuration directory
//! would hold (`kubernetes/KIND/NAMESPACE/NAME`), so the same pure validation judges them and a bad resource
//! never replaces a good snapshot. The hub's verdict comes back through [`HubKube::judged`], and the replica
//! holding the status Lease ([`lease`]) writes each resource's `status`: the generation judged and the
//! `Accepted` condition, `False` with the same field-level message `sextant validate` prints.
//!
//! Watches re-list after a `410 Gone` or a lost connection (with a backoff); while they fail, the last
//! resources keep serving. At most [`MAX_PER_KIND`] resources of each kind are kept; more are refused and
//! counted (`sextant_hub_kube_refused_objects`).

pub mod lease;
pub mod objects;
pub mod status;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use hub_config::ConfigFiles;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sextant_kube::{Outcome, Store};
use sextant_supervise::TaskHealth;
use tokio::sync::{Notify, watch};

pub use lease::LeaseOptions;
pub use objects::{Kind, Object};
pub use status::Verdict;

/// The most resources of one kind kept.
pub const MAX_PER_KIND: usize = 10_000;

/// How the hub reads its resources from the API server.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The kubeconfig; `None` infers (in-cluster service account, else `$KUBECONFIG` or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// The status Lease.
    pub lease: LeaseOptions,
}

/// The metrics of the watches and the status writes.
#[derive(Debug, Default)]
pub struct KubeCounters {
    /// Watch events received.
    pub events: Counter,
    /// Lists and watches that failed (retried after a backoff).
    pub watch_errors: Counter,
    /// Resources refused because their kind's store was full.
    pub refused: Counter,
    /// Status writes that succeeded.
    pub status_written: Counter,
    /// Status writes that failed.
    pub status_failed: Counter,
    /// 1 while this replica holds the status lease.
    pub leader: Gauge,
}

/// The hub's resources as the API server has them.
pub struct HubKube {
    stores: Mutex<Vec<Store<Object>>>,
    version: watch::Sender<u64>,
    /// The resources (path → generation) of the last [`HubKube::files`], and the verdict on them.
    last: Mutex<(BTreeMap<PathBuf, i64>, Option<Verdict>)>,
    judged: Arc<Notify>,
    leader: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Its counters.
    pub counters: KubeCounters,
}

impl Drop for HubKube {
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

impl std::fmt::Debug for HubKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubKube")
            .field("version", &*self.version.borrow())
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl HubKube {
    /// Connects with `options` and starts watching (on the current tokio runtime); the tasks are supervised
    /// in `health` and end when the returned value is dropped.
    pub async fn start(
        options: &KubeOptions,
        health: &Arc<TaskHealth>,
    ) -> Result<Arc<HubKube>, sextant_kube::ClientError> {
        let client = sextant_kube::client(options.kubeconfig.as_deref()).await?;
        Ok(HubKube::with_client(client, options, health))
    }

    /// [`HubKube::start`] with a client made elsewhere.
    pub fn with_client(
        client: Client,
        options: &KubeOptions,
        health: &Arc<TaskHealth>,
    ) -> Arc<HubKube> {
        let kube = Arc::new(HubKube {
            stores: Mutex::new(Kind::ALL.iter().map(|_| Store::new(MAX_PER_KIND)).collect()),
            version: watch::Sender::new(0),
            last: Mutex::new((BTreeMap::new(), None)),
            judged: Arc::new(Notify::new()),
            leader: watch::Sender::new(false),
            tasks: Mutex::new(Vec::new()),
            counters: KubeCounters::default(),
        });
        let weak = Arc::downgrade(&kube);
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = Kind::ALL
            .iter()
            .map(|kind| {
                let (weak, kind) = (weak.clone(), *kind);
                let api = api(&client, kind, options.namespace.as_deref());
                sextant_supervise::restarting(task_name(kind), health.clone(), move || {
                    watch_kind(weak.clone(), api.clone(), kind)
                })
            })
            .collect();
        let (lease_client, lease_options, leader) =
            (client.clone(), options.lease.clone(), kube.leader.clone());
        tasks.push(sextant_supervise::restarting(
            "kube-status-lease",
            health.clone(),
            move || lease::hold(lease_client.clone(), lease_options.clone(), leader.clone()),
        ));
        let namespace = options.namespace.clone();
        tasks.push(sextant_supervise::restarting(
            "kube-status",
            health.clone(),
            move || write_status(weak.clone(), client.clone(), namespace.clone()),
        ));
        *kube.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect();
        kube
    }

    /// The resources as configuration documents, once every kind has listed (`None` before). The verdict
    /// given next to [`HubKube::judged`] is about these.
    pub fn files(&self) -> Option<ConfigFiles> {
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if !stores.iter().all(Store::synced) {
            return None;
        }
        let mut files = Vec::new();
        let mut generations = BTreeMap::new();
        for (kind, store) in Kind::ALL.iter().zip(stores.iter()) {
            for (key, object) in store.items() {
                let path = objects::path(*kind, key);
                generations.insert(path.clone(), object.generation);
                files.push((path, object.text.clone()));
            }
        }
        drop(stores);
        let files = ConfigFiles::from_texts(files);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // The same generations are the same documents: the verdict on them stands (a status write, or
        // another replica's, changes nothing the hub judges).
        if last.0 != generations {
            *last = (generations, None);
        }
        Some(files)
    }

    /// A receiver whose value changes with the resources (statuses included).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The hub's verdict on the resources of the last [`HubKube::files`]: the status writer writes it.
    pub fn judged(&self, verdict: Verdict) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(verdict);
        self.judged.notify_one();
    }

    /// Whether this replica holds the status lease.
    pub fn leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Registers the metrics under `sextant_hub_kube_*`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let c = &self.counters;
        registry.register(
            "sextant_hub_kube_events",
            "Kubernetes watch events received",
            c.events.clone(),
        );
        registry.register(
            "sextant_hub_kube_watch_errors",
            "Kubernetes lists and watches that failed (retried after a backoff)",
            c.watch_errors.clone(),
        );
        registry.register(
            "sextant_hub_kube_refused_objects",
            "Resources left out because their kind had reached the limit",
            c.refused.clone(),
        );
        registry.register(
            "sextant_hub_kube_status_written",
            "Status writes on the hub's resources that succeeded",
            c.status_written.clone(),
        );
        registry.register(
            "sextant_hub_kube_status_failed",
            "Status writes on the hub's resources that failed",
            c.status_failed.clone(),
        );
        registry.register(
            "sextant_hub_kube_status_leader",
            "1 while this replica holds the status Lease and writes status",
            c.leader.clone(),
        );
    }

    /// The status each judged resource should carry and does not yet.
    fn pending_status(&self) -> Vec<(PathBuf, hub_config::ResourceStatus)> {
        let (judged, verdict) = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match &last.1 {
                Some(v) => (last.0.clone(), v.clone()),
                None => return Vec::new(),
            }
        };
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let current = |path: &PathBuf| {
            let (kind, key) = objects::of_path(path)?;
            stores[kind.index()].items().get(&key)?.status.clone()
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        status::desired(&judged, &verdict, current, now)
            .into_iter()
            .filter(|(path, wanted)| {
                // Only for the generation still there: a newer one gets its own verdict.
                let Some((kind, key)) = objects::of_path(path) else {
                    return false;
                };
                stores[kind.index()].items().get(&key).is_some_and(|o| {
                    Some(o.generation) == wanted.observed_generation
                        && !status::same(o.status.as_ref(), wanted)
                })
            })
            .collect()
    }
}

fn task_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Policy => "kube-watch-policies",
        Kind::RateLimit => "kube-watch-ratelimits",
        Kind::Telemetry => "kube-watch-telemetries",
        Kind::Adapter => "kube-watch-adapters",
    }
}

fn api(client: &Client, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = kind.api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// Feeds one kind's watch events into its store; a change bumps the version.
async fn watch_kind(kube: Weak<HubKube>, api: Api<DynamicObject>, kind: Kind) {
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let Some(kube) = kube.upgrade() else {
            return;
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                kube.counters.watch_errors.inc();
                tracing::warn!(
                    kind = kind.name(),
                    "Kubernetes watch failed (retrying): {e}"
                );
                continue;
            }
        };
        kube.counters.events.inc();
        // A completed list is news even when nothing changed: it may be the last kind to list.
        let listed = matches!(event, watcher::Event::InitDone);
        let outcome = {
            let mut stores = kube.stores.lock().unwrap_or_else(|p| p.into_inner());
            let store = &mut stores[kind.index()];
            let key = |o: &DynamicObject| {
                (
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                )
            };
            match event {
                watcher::Event::Init => {
                    store.init();
                    Outcome::Unchanged
                }
                watcher::Event::InitApply(o) => store.init_apply(key(&o), Object::of(kind, &o)),
                watcher::Event::InitDone => store.init_done(),
                watcher::Event::Apply(o) => store.apply(key(&o), Object::of(kind, &o)),
                watcher::Event::Delete(o) => store.delete(&key(&o)),
            }
        };
        match outcome {
            Outcome::Changed => {
                kube.version.send_modify(|v| *v += 1);
                // A status the writer waits for may have arrived, or a resource it judged changed.
                kube.judged.notify_one();
            }
            Outcome::Refused => {
                kube.counters.refused.inc();
                tracing::warn!(
                    kind = kind.name(),
                    "more than {MAX_PER_KIND} resources of this kind: one was left out"
                );
            }
            Outcome::Unchanged => {}
        }
        if listed && outcome != Outcome::Changed {
            kube.version.send_modify(|v| *v += 1);
        }
    }
}

/// While this replica holds the lease, writes the status the last verdict asks for, whenever a verdict,
/// a resource or the lease changes.
async fn write_status(kube: Weak<HubKube>, client: Client, namespace: Option<String>) {
    let Some(strong) = kube.upgrade() else {
        return;
    };
    let mut leader = strong.leader.subscribe();
    let judged = strong.judged.clone();
    drop(strong);
    loop {
        let Some(strong) = kube.upgrade() else {
            return;
        };
        strong.counters.leader.set(i64::from(strong.leader()));
        if strong.leader() {
            for (path, status) in strong.pending_status() {
                let Some((kind, (ns, name))) = objects::of_path(&path) else {
                    continue;
                };
                let api: Api<DynamicObject> = match &namespace {
                    Some(only) => Api::namespaced_with(client.clone(), only, &kind.api_resource()),
                    None => Api::namespaced_with(client.clone(), &ns, &kind.api_resource()),
                };
                let patch = serde_json::json!({"status": status});
                let counter = match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => &strong.counters.status_written,
                    Err(e) => {
                        tracing::warn!(kind = kind.name(), %ns, %name, "writing status: {e}");
                        &strong.counters.status_failed
                    }
                };
                counter.inc();
            }
        }
        drop(strong);
        tokio::select! {
            () = judged.notified() => {}
            changed = leader.changed() => if changed.is_err() { return },
        }
    }
}
