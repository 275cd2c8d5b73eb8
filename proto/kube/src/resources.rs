//! A role's configuration resources from the API server, as documents, with their status written back: the
//! hub's `policy.sextant.dev` kinds and pilot's Istio kinds both come through here. Watchers of the given
//! [`Kind`]s feed bounded [`Store`]s; once every kind has listed, [`Resources::documents`] hands out each
//! resource as the document a configuration file would hold, at the path `kubernetes/KIND/NAMESPACE/NAME`
//! (so the role's own loader and validation judge it, and its errors name that path). The role's verdict on
//! those documents comes back through [`Resources::judged`], and the replica holding the status Lease
//! ([`crate::lease`]) writes each judged resource's `status`: `observedGeneration` and the `Accepted`
//! condition, whose transition time moves only when its value does.
//!
//! A kind whose CRD is not installed counts as listed and empty (and is looked for again with the watch's
//! backoff), so one missing CRD does not hold the others back. Watches re-list after a `410 Gone` or a lost
//! connection; while they fail, the last resources stay. At most [`MAX_PER_KIND`] resources of each kind are
//! kept; more are refused and counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sextant_supervise::TaskHealth;
use tokio::sync::{Notify, watch};

use crate::lease::{self, LeaseOptions};
use crate::{Key, Outcome, Store};

/// The most resources of one kind kept.
pub const MAX_PER_KIND: usize = 10_000;
/// The longest condition message written (the API server allows 32 KiB).
pub const MAX_MESSAGE: usize = 4096;

/// One kind watched.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Its name (`Policy`, `VirtualService`): the second part of its documents' paths.
    pub name: &'static str,
    /// Its group, version and plural.
    pub resource: ApiResource,
    /// The name of its watch task (in `/ready` and the task metrics).
    pub task: &'static str,
}

/// One watched resource, as a role's loader reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its `metadata.generation` (0 when the server gave none).
    pub generation: i64,
    /// `apiVersion`, `kind`, `metadata` (name and namespace) and `spec`, as JSON with one field per line
    /// (JSON is YAML).
    pub text: String,
    /// Its `status` as read.
    pub status: Option<serde_json::Value>,
}

impl Object {
    /// The projection of `object`, a resource of `kind`.
    pub fn of(kind: &Kind, object: &DynamicObject) -> Object {
        let meta = &object.metadata;
        let document = serde_json::json!({
            "apiVersion": kind.resource.api_version,
            "kind": kind.name,
            "metadata": {
                "name": meta.name.clone().unwrap_or_default(),
                "namespace": meta.namespace.clone().unwrap_or_default(),
            },
            "spec": object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null),
        });
        Object {
            generation: meta.generation.unwrap_or(0),
            text: serde_json::to_string_pretty(&document).unwrap_or_default(),
            status: object.data.get("status").cloned(),
        }
    }
}

/// The path a resource of the kind named `kind` is known by: `kubernetes/KIND/NAMESPACE/NAME`.
pub fn path(kind: &str, key: &Key) -> PathBuf {
    Path::new("kubernetes").join(kind).join(&key.0).join(&key.1)
}

/// The kind name and key a [`path`] names.
pub fn of_path(path: &Path) -> Option<(&str, Key)> {
    let mut parts = path.strip_prefix("kubernetes").ok()?.iter();
    let kind = parts.next()?.to_str()?;
    let namespace = parts.next()?.to_str()?.to_string();
    let name = parts.next()?.to_str()?.to_string();
    parts.next().is_none().then_some((kind, (namespace, name)))
}

/// The role's word on one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Whether it serves.
    pub accepted: bool,
    /// The condition's reason (`Accepted`, `Invalid`, …).
    pub reason: String,
    /// The condition's message (cut at [`MAX_MESSAGE`] bytes).
    pub message: String,
}

/// The `status` saying `judgement` about `generation`, keeping `current`'s transition time when the
/// condition's value does not change (pure).
pub fn status(
    judgement: &Judgement,
    generation: i64,
    current: Option<&serde_json::Value>,
    now: Time,
) -> serde_json::Value {
    let value = if judgement.accepted { "True" } else { "False" };
    let previous: Option<Condition> = current
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value::<Vec<Condition>>(c.clone()).ok())
        .and_then(|c| {
            c.into_iter()
                .find(|c| c.type_ == "Accepted" && c.status == value)
        });
    let condition = Condition {
        type_: "Accepted".to_string(),
        status: value.to_string(),
        reason: judgement.reason.clone(),
        message: truncate(judgement.message.clone(), MAX_MESSAGE),
        observed_generation: Some(generation),
        last_transition_time: previous.map_or(now, |c| c.last_transition_time),
    };
    serde_json::json!({"observedGeneration": generation, "conditions": [condition]})
}

/// Whether `current` already says what `wanted` says (the transition time aside).
pub fn same(current: Option<&serde_json::Value>, wanted: &serde_json::Value) -> bool {
    let key = |s: &serde_json::Value| {
        let conditions: Vec<serde_json::Value> = s["conditions"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|c| {
                        let mut c = c.clone();
                        if let Some(c) = c.as_object_mut() {
                            c.remove("lastTransitionTime");
                        }
                        c
                    })
                    .collect()
            })
            .unwrap_or_default();
        (s["observedGeneration"].clone(), conditions)
    };
    current.is_some_and(|c| key(c) == key(wanted))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The metrics of the watches and the status writes.
#[derive(Debug, Default)]
pub struct Counters {
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

/// The judgements on the documents last handed out, by path, and the generations they were at.
#[derive(Default)]
struct Last {
    generations: BTreeMap<PathBuf, i64>,
    judgements: Option<BTreeMap<PathBuf, Judgement>>,
}

/// A role's resources as the API server has them.
pub struct Resources {
    kinds: Vec<Kind>,
    stores: Mutex<Vec<Store<Object>>>,
    version: watch::Sender<u64>,
    last: Mutex<Last>,
    judged: Arc<Notify>,
    leader: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Its counters.
    pub counters: Counters,
}

impl Drop for Resources {
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

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field(
                "kinds",
                &self.kinds.iter().map(|k| k.name).collect::<Vec<_>>(),
            )
            .field("version", &*self.version.borrow())
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

impl Resources {
    /// Watches `kinds` (in `namespace`, or all) with `client` on the current tokio runtime, writing status
    /// while holding the Lease `lease`; the tasks are supervised in `health` and end when the returned
    /// value is dropped.
    pub fn start(
        client: Client,
        kinds: Vec<Kind>,
        namespace: Option<String>,
        lease: LeaseOptions,
        health: &Arc<TaskHealth>,
    ) -> Arc<Resources> {
        let resources = Arc::new(Resources {
            stores: Mutex::new(kinds.iter().map(|_| Store::new(MAX_PER_KIND)).collect()),
            kinds: kinds.clone(),
            version: watch::Sender::new(0),
            last: Mutex::new(Last::default()),
            judged: Arc::new(Notify::new()),
            leader: watch::Sender::new(false),
            tasks: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let weak = Arc::downgrade(&resources);
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| {
                let weak = weak.clone();
                let api = api(&client, &kind.resource, namespace.as_deref());
                sextant_supervise::restarting(kind.task, health.clone(), move || {
                    watch_kind(weak.clone(), api.clone(), index)
                })
            })
            .collect();
        let (lease_client, leader) = (client.clone(), resources.leader.clone());
        tasks.push(sextant_supervise::restarting(
            "kube-status-lease",
            health.clone(),
            move || lease::hold(lease_client.clone(), lease.clone(), leader.clone()),
        ));
        tasks.push(sextant_supervise::restarting(
            "kube-status",
            health.clone(),
            move || write_status(weak.clone(), client.clone(), namespace.clone()),
        ));
        *resources.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks
            .iter()
            .map(tokio::task::JoinHandle::abort_handle)
            .collect();
        resources
    }

    /// The resources as configuration documents (path, text), once every kind has listed (`None` before).
    /// The judgements given next to [`Resources::judged`] are about these.
    pub fn documents(&self) -> Option<Vec<(PathBuf, String)>> {
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if !stores.iter().all(Store::synced) {
            return None;
        }
        let mut documents = Vec::new();
        let mut generations = BTreeMap::new();
        for (kind, store) in self.kinds.iter().zip(stores.iter()) {
            for (key, object) in store.items() {
                let path = path(kind.name, key);
                generations.insert(path.clone(), object.generation);
                documents.push((path, object.text.clone()));
            }
        }
        drop(stores);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        // The same generations are the same documents: the judgements on them stand (a status write, or
        // another replica's, changes nothing the role judges).
        if last.generations != generations {
            *last = Last {
                generations,
                judgements: None,
            };
        }
        Some(documents)
    }

    /// Whether every kind has listed once.
    pub fn synced(&self) -> bool {
        (self.stores.lock().unwrap_or_else(|p| p.into_inner()))
            .iter()
            .all(Store::synced)
    }

    /// A receiver whose value changes with the resources (statuses included).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The role's judgements on the documents of the last [`Resources::documents`], by path; a resource
    /// without one keeps the status it has. The status writer writes them.
    pub fn judged(&self, judgements: BTreeMap<PathBuf, Judgement>) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .judgements = Some(judgements);
        self.judged.notify_one();
    }

    /// Whether this replica holds the status lease.
    pub fn leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Registers the metrics as `PREFIX_events`, `_watch_errors`, `_refused_objects`, `_status_written`,
    /// `_status_failed` and `_status_leader`.
    pub fn register_metrics(&self, prefix: &str, registry: &mut Registry) {
        let c = &self.counters;
        let name = |n: &str| format!("{prefix}_{n}");
        registry.register(
            name("events"),
            "Kubernetes watch events received",
            c.events.clone(),
        );
        registry.register(
            name("watch_errors"),
            "Kubernetes lists and watches that failed (retried after a backoff)",
            c.watch_errors.clone(),
        );
        registry.register(
            name("refused_objects"),
            "Resources left out because their kind had reached the limit",
            c.refused.clone(),
        );
        registry.register(
            name("status_written"),
            "Status writes on the resources that succeeded",
            c.status_written.clone(),
        );
        registry.register(
            name("status_failed"),
            "Status writes on the resources that failed",
            c.status_failed.clone(),
        );
        registry.register(
            name("status_leader"),
            "1 while this replica holds the status Lease and writes status",
            c.leader.clone(),
        );
    }

    /// The status each judged resource should carry and does not yet, with its kind.
    fn pending_status(&self) -> Vec<(usize, Key, serde_json::Value)> {
        let (generations, judgements) = {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match &last.judgements {
                Some(j) => (last.generations.clone(), j.clone()),
                None => return Vec::new(),
            }
        };
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut out = Vec::new();
        for (path, judgement) in &judgements {
            let Some(generation) = generations.get(path) else {
                continue;
            };
            let Some((kind, key)) = of_path(path) else {
                continue;
            };
            let Some(index) = self.kinds.iter().position(|k| k.name == kind) else {
                continue;
            };
            // Only for the generation still there: a newer one gets its own judgement.
            let Some(object) = stores[index]
                .items()
                .get(&key)
                .filter(|o| o.generation == *generation)
            else {
                continue;
            };
            let wanted = status(judgement, *generation, object.status.as_ref(), now.clone());
            if !same(object.status.as_ref(), &wanted) {
                out.push((index, key, wanted));
            }
        }
        out
    }
}

fn api(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Whether a watch failed because the kind is not served (its CRD is not installed).
fn not_installed(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(e))
        | watcher::Error::WatchStartFailed(kube::Error::Api(e)) => e.code == 404,
        _ => false,
    }
}

/// Feeds one kind's watch events into its store; a change bumps the version.
async fn watch_kind(resources: Weak<Resources>, api: Api<DynamicObject>, index: usize) {
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let Some(resources) = resources.upgrade() else {
            return;
        };
        let kind = resources.kinds[index].clone();
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                resources.counters.watch_errors.inc();
                if not_installed(&e) {
                    // Nothing of a kind that is not served: listed and empty until its CRD appears.
                    let outcome = {
                        let mut stores = resources.stores.lock().unwrap_or_else(|p| p.into_inner());
                        let store = &mut stores[index];
                        (!store.synced()).then(|| {
                            store.init();
                            store.init_done()
                        })
                    };
                    if let Some(outcome) = outcome {
                        tracing::warn!(
                            kind = kind.name,
                            "{} is not served (is its CRD installed?): none until it is",
                            kind.resource.plural
                        );
                        if outcome != Outcome::Refused {
                            resources.version.send_modify(|v| *v += 1);
                        }
                    }
                } else {
                    tracing::warn!(kind = kind.name, "Kubernetes watch failed (retrying): {e}");
                }
                continue;
            }
        };
        resources.counters.events.inc();
        // A completed list is news even when nothing changed: it may be the last kind to list.
        let listed = matches!(event, watcher::Event::InitDone);
        let outcome = {
            let mut stores = resources.stores.lock().unwrap_or_else(|p| p.into_inner());
            let store = &mut stores[index];
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
                watcher::Event::InitApply(o) => store.init_apply(key(&o), Object::of(&kind, &o)),
                watcher::Event::InitDone => store.init_done(),
                watcher::Event::Apply(o) => store.apply(key(&o), Object::of(&kind, &o)),
                watcher::Event::Delete(o) => store.delete(&key(&o)),
            }
        };
        match outcome {
            Outcome::Changed => {
                resources.version.send_modify(|v| *v += 1);
                // A status the writer waits for may have arrived, or a resource it judged changed.
                resources.judged.notify_one();
            }
            Outcome::Refused => {
                resources.counters.refused.inc();
                tracing::warn!(
                    kind = kind.name,
                    "more than {MAX_PER_KIND} resources of this kind: one was left out"
                );
            }
            Outcome::Unchanged => {}
        }
        if listed && outcome != Outcome::Changed {
            resources.version.send_modify(|v| *v += 1);
        }
    }
}

/// While this replica holds the lease, writes the status the last judgements ask for, whenever they, a
/// resource or the lease change.
async fn write_status(resources: Weak<Resources>, client: Client, namespace: Option<String>) {
    let Some(strong) = resources.upgrade() else {
        return;
    };
    let mut leader = strong.leader.subscribe();
    let judged = strong.judged.clone();
    drop(strong);
    loop {
        let Some(strong) = resources.upgrade() else {
            return;
        };
        strong.counters.leader.set(i64::from(strong.leader()));
        if strong.leader() {
            for (index, (ns, name), status) in strong.pending_status() {
                let kind = &strong.kinds[index];
                let ns = namespace.as_deref().unwrap_or(&ns);
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), ns, &kind.resource);
                let patch = serde_json::json!({"status": status});
                let counter = match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => &strong.counters.status_written,
                    Err(e) => {
                        tracing::warn!(kind = kind.name, %ns, %name, "writing status: {e}");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(second).expect("a time"))
    }

    #[test]
    fn a_status_keeps_its_transition_time_until_its_value_changes() {
        let refused = Judgement {
            accepted: false,
            reason: "Invalid".into(),
            message: "x".repeat(MAX_MESSAGE + 10),
        };
        let first = status(&refused, 4, None, at(1_700_000_000));
        assert_eq!(first["observedGeneration"], 4);
        let condition = &first["conditions"][0];
        assert_eq!(
            (&condition["status"], &condition["observedGeneration"]),
            (&serde_json::json!("False"), &serde_json::json!(4))
        );
        assert_eq!(
            condition["message"].as_str().map(str::len),
            Some(MAX_MESSAGE)
        );
        let again = status(&refused, 4, Some(&first), at(1_800_000_000));
        assert_eq!(
            again["conditions"][0]["lastTransitionTime"],
            condition["lastTransitionTime"]
        );
        assert!(same(Some(&first), &again) && !same(None, &again));
        let accepted = Judgement {
            accepted: true,
            reason: "Accepted".into(),
            message: "served".into(),
        };
        let fixed = status(&accepted, 5, Some(&first), at(1_800_000_000));
        assert_ne!(
            fixed["conditions"][0]["lastTransitionTime"],
            condition["lastTransitionTime"]
        );
        assert!(!same(Some(&first), &fixed));
    }

    #[test]
    fn paths_name_their_resource() {
        let key = ("shop".to_string(), "reviews".to_string());
        let path = path("VirtualService", &key);
        assert_eq!(
            path,
            PathBuf::from("kubernetes/VirtualService/shop/reviews")
        );
        assert_eq!(of_path(&path), Some(("VirtualService", key)));
        assert_eq!(of_path(Path::new("routes/a.yaml")), None);
    }
}
