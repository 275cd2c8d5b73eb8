//! The applied configuration. Each xDS update of one type is decoded and validated whole ([`proxy_config`]);
//! only then is it joined with the other types into a new [`Snapshot`] and published. The data path reads
//! the snapshot current when a request or connection starts and keeps it to the end, so an update never
//! changes a request midway, and a refused update changes nothing.
//!
//! Clusters keep their run-time state (hosts, pools, live counts) across updates that leave them unchanged;
//! a changed EDS cluster starts with the hosts last assigned to it, so it never serves a moment with none
//! (Envoy "warms" such clusters for the same reason).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proxy_balance::Cluster;
use proxy_config::cluster::Discovery;
use proxy_config::endpoint::Assignment;
use proxy_config::listener::Listener;
use proxy_config::secret::Secret;
use proxy_route::Router;
use proxy_stats::{Counter, Scope, Stats};
use proxy_xds::types;
use sextant_proto::google::protobuf::Any;
use tokio::sync::watch;

mod tls;

pub use tls::DownstreamTls;

/// Everything the data path needs at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Listeners by name.
    pub listeners: BTreeMap<String, Arc<Listener>>,
    /// Route configurations by name.
    pub routers: HashMap<String, Arc<Router>>,
    /// Clusters by name.
    pub clusters: HashMap<String, Arc<Cluster>>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Arc<Secret>>,
    /// The raw resources applied, per type URL (for `/config_dump`).
    pub raw: BTreeMap<&'static str, Vec<Any>>,
    /// The server configurations of the listeners' TLS chains.
    pub downstream_tls: tls::DownstreamTls,
}

/// A handle on the current snapshot and its changes.
pub type Snapshots = watch::Receiver<Arc<Snapshot>>;

/// The xDS consumer: validates and applies updates, publishing snapshots.
pub struct Store {
    assignments: BTreeMap<String, Assignment>,
    /// Secrets the proxy holds itself (its own key and certificate), which pilot's of the same names never
    /// replace.
    local: BTreeMap<String, Arc<Secret>>,
    current: Arc<Snapshot>,
    publish: watch::Sender<Arc<Snapshot>>,
    stats: Arc<Stats>,
    rejected: BTreeMap<&'static str, Counter>,
    accepted: BTreeMap<&'static str, Counter>,
}

impl Store {
    /// An empty store and the receiver of its snapshots.
    pub fn new(stats: Arc<Stats>) -> (Store, Snapshots) {
        let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let mut rejected = BTreeMap::new();
        let mut accepted = BTreeMap::new();
        for (type_url, short) in [
            (types::CLUSTER, "cluster_manager.cds"),
            (types::ENDPOINTS, "cluster_manager.eds"),
            (types::LISTENER, "listener_manager.lds"),
            (types::ROUTE, "http.rds"),
            (types::SECRET, "sds"),
        ] {
            rejected.insert(
                type_url,
                stats.counter(&Scope::Server, &format!("{short}.update_rejected")),
            );
            accepted.insert(
                type_url,
                stats.counter(&Scope::Server, &format!("{short}.update_success")),
            );
        }
        let store = Store {
            assignments: BTreeMap::new(),
            local: BTreeMap::new(),
            current: Arc::new(Snapshot::default()),
            publish,
            stats,
            rejected,
            accepted,
        };
        (store, snapshots)
    }

    fn next(&self, raw: (&'static str, &[Any])) -> Snapshot {
        let mut raw_all = self.current.raw.clone();
        raw_all.insert(raw.0, raw.1.to_vec());
        Snapshot {
            listeners: self.current.listeners.clone(),
            routers: self.current.routers.clone(),
            clusters: self.current.clusters.clone(),
            secrets: self.current.secrets.clone(),
            raw: raw_all,
            downstream_tls: self.current.downstream_tls.clone(),
        }
    }

    fn apply_type(
        &mut self,
        type_url: &'static str,
        resources: &[Any],
    ) -> Result<Snapshot, String> {
        let mut next = self.next((type_url, resources));
        match type_url {
            types::CLUSTER => {
                let decoded =
                    decode_all(resources, proxy_config::cluster::decode, |c| c.name.clone())?;
                let mut clusters = HashMap::with_capacity(decoded.len());
                for (name, config) in decoded {
                    let kept = self
                        .current
                        .clusters
                        .get(&name)
                        .filter(|c| *c.config() == config)
                        .cloned();
                    let cluster = kept.unwrap_or_else(|| {
                        let cluster = Cluster::new(config, &self.stats);
                        if let Discovery::Eds(service) = &cluster.config().discovery
                            && let Some(a) = self.assignments.get(service)
                        {
                            cluster.set_endpoints(&a.localities);
                        }
                        let cluster = Arc::new(cluster);
                        if matches!(cluster.config().discovery, Discovery::Dns { .. }) {
                            match tokio::runtime::Handle::try_current() {
                                Ok(rt) => drop(rt.spawn(proxy_balance::dns::follow(Arc::downgrade(&cluster)))),
                                Err(_) => tracing::warn!(cluster = %cluster.config().name, "no runtime to resolve DNS on"),
                            }
                        }
                        cluster
                    });
                    clusters.insert(name, cluster);
                }
                next.clusters = clusters;
            }
            types::ENDPOINTS => {
                let decoded = decode_all(resources, proxy_config::endpoint::decode, |a| {
                    a.cluster.clone()
                })?;
                for cluster in next.clusters.values() {
                    if let Discovery::Eds(service) = &cluster.config().discovery
                        && let Some(a) = decoded.get(service)
                    {
                        cluster.set_endpoints(&a.localities);
                    }
                }
                self.assignments = decoded;
            }
            types::LISTENER => {
                let decoded = decode_all(resources, proxy_config::listener::decode, |l| {
                    l.name.clone()
                })?;
                let mut addresses = BTreeMap::new();
                for l in decoded.values().filter(|l| l.bind) {
                    if let Some(other) = addresses.insert(l.address, &l.name) {
                        return Err(format!(
                            "Listener {:?}: address {} is also listener {other:?}'s",
                            l.name, l.address
                        ));
                    }
                }
                next.listeners = decoded.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
            }
            types::ROUTE => {
                let decoded =
                    decode_all(resources, proxy_config::route::decode, |r| r.name.clone())?;
                next.routers = decoded
                    .into_iter()
                    .map(|(k, v)| (k, Arc::new(Router::new(v))))
                    .collect();
            }
            types::SECRET => {
                let decoded =
                    decode_all(resources, proxy_config::secret::decode, |s| s.name.clone())?;
                next.secrets = decoded.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
                next.secrets.extend(self.local.clone());
            }
            other => return Err(format!("type {other} is not consumed by sextant proxy")),
        }
        if matches!(type_url, types::CLUSTER | types::LISTENER | types::SECRET) {
            let (upstream, downstream) = tls::build(&next, &self.stats)?;
            for (cluster, config) in upstream {
                cluster.set_tls(config);
            }
            next.downstream_tls = downstream;
        }
        Ok(next)
    }
}

/// Decodes every resource, refusing the whole update at the first error or a name used twice.
fn decode_all<T, E: std::fmt::Display>(
    resources: &[Any],
    decode: impl Fn(&Any) -> Result<T, E>,
    name: impl Fn(&T) -> String,
) -> Result<BTreeMap<String, T>, String> {
    let mut out = BTreeMap::new();
    for r in resources {
        let value = decode(r).map_err(|e| e.to_string())?;
        let key = name(&value);
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("{key:?} is sent twice"));
        }
    }
    Ok(out)
}

/// The type URL constant for `type_url`, if the proxy consumes it.
fn known(type_url: &str) -> Option<&'static str> {
    [
        types::CLUSTER,
        types::ENDPOINTS,
        types::LISTENER,
        types::ROUTE,
        types::SECRET,
    ]
    .into_iter()
    .find(|t| *t == type_url)
}

impl Store {
    /// Installs secrets the proxy holds itself (its own key and certificate, `default` and `ROOTCA`): they
    /// stand in for pilot's of the same names from now on, and the configuration using them is rebuilt.
    pub fn set_local_secrets(&mut self, secrets: Vec<Secret>) -> Result<(), String> {
        let secrets: BTreeMap<String, Arc<Secret>> = secrets
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        let mut next = self.next((types::SECRET, &[]));
        // What pilot sent stays in the config dump; only the secrets change.
        next.raw = self.current.raw.clone();
        next.secrets
            .retain(|name, _| !self.local.contains_key(name));
        next.secrets.extend(secrets.clone());
        let (upstream, downstream) = tls::build(&next, &self.stats)?;
        for (cluster, config) in upstream {
            cluster.set_tls(config);
        }
        next.downstream_tls = downstream;
        self.local = secrets;
        self.commit(types::SECRET, next);
        Ok(())
    }

    /// Publishes `next`, counting each secret that changed as Envoy does (`sds.NAME.update_success`).
    fn commit(&mut self, type_url: &'static str, next: Snapshot) {
        for (name, secret) in &next.secrets {
            if self.current.secrets.get(name) != Some(secret) {
                self.stats
                    .counter(&Scope::Server, &format!("sds.{name}.update_success"))
                    .inc();
            }
        }
        self.current = Arc::new(next);
        self.publish.send_replace(self.current.clone());
        if let Some(c) = self.accepted.get(type_url) {
            c.inc();
        }
    }
}

/// A store shared between the xDS client and the proxy's own certificate manager.
#[derive(Clone)]
pub struct SharedStore(pub Arc<std::sync::Mutex<Store>>);

impl SharedStore {
    /// The store, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl proxy_xds::Consumer for SharedStore {
    fn apply(&mut self, type_url: &str, resources: &[Any]) -> Result<(), String> {
        self.lock().apply(type_url, resources)
    }

    fn wants(&self, type_url: &str) -> BTreeSet<String> {
        self.lock().wants(type_url)
    }
}

impl proxy_xds::Consumer for Store {
    fn apply(&mut self, type_url: &str, resources: &[Any]) -> Result<(), String> {
        let Some(type_url) = known(type_url) else {
            return Err(format!("type {type_url} is not consumed by sextant proxy"));
        };
        match self.apply_type(type_url, resources) {
            Ok(next) => {
                self.commit(type_url, next);
                Ok(())
            }
            Err(message) => {
                if let Some(c) = self.rejected.get(type_url) {
                    c.inc();
                }
                tracing::warn!(type_url, %message, "configuration refused; the previous one keeps serving");
                Err(message)
            }
        }
    }

    fn wants(&self, type_url: &str) -> BTreeSet<String> {
        match type_url {
            types::ENDPOINTS => self
                .current
                .clusters
                .values()
                .filter_map(|c| match &c.config().discovery {
                    Discovery::Eds(service) => Some(service.clone()),
                    _ => None,
                })
                .collect(),
            types::ROUTE => self
                .current
                .listeners
                .values()
                .flat_map(|l| l.route_configs().map(str::to_string).collect::<Vec<_>>())
                .collect(),
            types::SECRET => {
                let clusters = self
                    .current
                    .clusters
                    .values()
                    .filter_map(|c| c.config().tls.as_ref());
                let from_clusters = clusters
                    .flat_map(|t| t.context.secrets().map(str::to_string).collect::<Vec<_>>());
                let from_listeners = self
                    .current
                    .listeners
                    .values()
                    .flat_map(|l| l.secrets().map(str::to_string).collect::<Vec<_>>());
                from_clusters
                    .chain(from_listeners)
                    .filter(|name| !self.local.contains_key(name))
                    .collect()
            }
            _ => BTreeSet::new(),
        }
    }
}
