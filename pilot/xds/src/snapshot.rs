//! Immutable, versioned sets of xDS resources, checked consistent before they are served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use prost::{Message, Name};
use sextant_proto::envoy::config::cluster::v3::{Cluster, cluster};
use sextant_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use sextant_proto::envoy::config::listener::v3::{Filter, Listener, filter};
use sextant_proto::envoy::config::route::v3::RouteConfiguration;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use sextant_proto::envoy::extensions::transport_sockets::tls::v3::Secret;
use sextant_proto::google::protobuf::Any;

use crate::types;

/// One named resource as sent: the encoded message and a version that changes exactly when its bytes do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsResource {
    /// Resource name (cluster, listener, route configuration or `cluster_name` of an assignment).
    pub name: String,
    /// Digest of the encoded message: what delta xDS compares.
    pub version: String,
    /// The message, packed.
    pub body: Any,
}

/// The resources of one type by name, shared by snapshots and by the streams that sent them: a proxy that holds
/// every resource of a type costs its stream one pointer, not a copy of the map.
pub type Resources = Arc<BTreeMap<String, Arc<XdsResource>>>;

/// Why a snapshot cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// A resource's bytes do not decode as its type.
    #[error("{type_url} {name}: does not decode: {reason}")]
    Undecodable {
        /// Type URL.
        type_url: String,
        /// Resource name.
        name: String,
        /// The decoder's message.
        reason: String,
    },
    /// A cluster of type EDS names an assignment that the snapshot lacks.
    #[error("cluster {cluster} takes endpoints from EDS {eds:?}, which the snapshot does not hold")]
    MissingEndpoints {
        /// The cluster.
        cluster: String,
        /// The EDS service name.
        eds: String,
    },
    /// An assignment that no EDS cluster names.
    #[error("endpoints {0:?} are named by no EDS cluster")]
    OrphanEndpoints(String),
    /// A listener's connection manager names a route configuration that the snapshot lacks.
    #[error("listener {listener} routes with RDS {route:?}, which the snapshot does not hold")]
    MissingRoute {
        /// The listener.
        listener: String,
        /// The route configuration name.
        route: String,
    },
    /// A route configuration that no listener names.
    #[error("route configuration {0:?} is named by no listener")]
    OrphanRoute(String),
}

/// An immutable set of resources by type, with a version. Built with [`SnapshotBuilder`], shared as `Arc`.
#[derive(Debug, Default)]
pub struct Snapshot {
    version: String,
    by_type: HashMap<String, Resources>,
}

impl Snapshot {
    /// The snapshot's version (what state-of-the-world responses carry as `version_info`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The resources of one type, by name.
    pub fn resources(&self, type_url: &str) -> Option<&BTreeMap<String, Arc<XdsResource>>> {
        self.by_type.get(type_url).map(|r| &**r)
    }

    /// The resources of one type, as the shared map.
    pub fn shared(&self, type_url: &str) -> Option<&Resources> {
        self.by_type.get(type_url)
    }

    /// Takes over `previous`'s map of every type whose names and versions did not change, so that streams
    /// comparing what they sent with this snapshot find unchanged types by pointer and keep sharing them.
    pub fn reuse_unchanged(&mut self, previous: &Snapshot) {
        for (url, mine) in &mut self.by_type {
            if let Some(theirs) = previous.by_type.get(url)
                && !Arc::ptr_eq(mine, theirs)
                && same_versions(mine, theirs)
            {
                *mine = theirs.clone();
            }
        }
    }

    /// The type URLs present.
    pub fn type_urls(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Checks that every EDS resource a cluster names exists and is named, and the same for RDS and
    /// listeners, so a proxy never waits for something pilot will not send.
    pub fn consistent(&self) -> Result<(), SnapshotError> {
        let mut eds_wanted = BTreeSet::new();
        for (name, r) in self.resources(types::CLUSTER).into_iter().flatten() {
            let c: Cluster = decode(types::CLUSTER, name, &r.body)?;
            let eds = cluster::DiscoveryType::Eds as i32;
            if c.cluster_discovery_type == Some(cluster::ClusterDiscoveryType::Type(eds)) {
                let service = c
                    .eds_cluster_config
                    .map(|e| e.service_name)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| c.name.clone());
                eds_wanted.insert((service, c.name));
            }
        }
        let eds_have = self.resources(types::ENDPOINT);
        for (service, cluster) in &eds_wanted {
            if !eds_have.is_some_and(|m| m.contains_key(service)) {
                return Err(SnapshotError::MissingEndpoints {
                    cluster: cluster.clone(),
                    eds: service.clone(),
                });
            }
        }
        for name in eds_have.into_iter().flat_map(BTreeMap::keys) {
            if !eds_wanted.iter().any(|(s, _)| s == name) {
                return Err(SnapshotError::OrphanEndpoints(name.clone()));
            }
        }

        let mut rds_wanted = BTreeSet::new();
        for (name, r) in self.resources(types::LISTENER).into_iter().flatten() {
            let l: Listener = decode(types::LISTENER, name, &r.body)?;
            for route in listener_routes(&l)? {
                rds_wanted.insert((route, l.name.clone()));
            }
        }
        let rds_have = self.resources(types::ROUTE);
        for (route, listener) in &rds_wanted {
            if !rds_have.is_some_and(|m| m.contains_key(route)) {
                return Err(SnapshotError::MissingRoute {
                    listener: listener.clone(),
                    route: route.clone(),
                });
            }
        }
        for name in rds_have.into_iter().flat_map(BTreeMap::keys) {
            if !rds_wanted.iter().any(|(r, _)| r == name) {
                return Err(SnapshotError::OrphanRoute(name.clone()));
            }
        }
        Ok(())
    }
}

/// Whether two maps hold the same names at the same versions.
pub(crate) fn same_versions(a: &Resources, b: &Resources) -> bool {
    Arc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|((na, ra), (nb, rb))| na == nb && ra.version == rb.version))
}

fn decode<M: Message + Default>(type_url: &str, name: &str, any: &Any) -> Result<M, SnapshotError> {
    M::decode(any.value.as_slice()).map_err(|e| SnapshotError::Undecodable {
        type_url: type_url.to_string(),
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// The RDS names a listener's HTTP connection managers use (filter chains and the `api_listener` form).
fn listener_routes(l: &Listener) -> Result<Vec<String>, SnapshotError> {
    let hcm_url = HttpConnectionManager::type_url();
    let mut configs: Vec<&Any> = l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
        .flat_map(|fc| fc.filters.iter())
        .filter_map(|f: &Filter| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        })
        .collect();
    configs.extend(
        l.api_listener
            .as_ref()
            .and_then(|a| a.api_listener.as_ref()),
    );
    let mut out = Vec::new();
    for any in configs.into_iter().filter(|a| a.type_url == hcm_url) {
        let hcm: HttpConnectionManager = decode(types::LISTENER, &l.name, any)?;
        if let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            out.push(rds.route_config_name);
        }
    }
    Ok(out)
}

/// Collects resources into a [`Snapshot`].
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    by_type: HashMap<String, BTreeMap<String, Arc<XdsResource>>>,
}

impl SnapshotBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cluster.
    pub fn cluster(&mut self, c: &Cluster) -> &mut Self {
        self.add(&c.name.clone(), c)
    }

    /// Adds an endpoint assignment (named by its `cluster_name`).
    pub fn endpoints(&mut self, e: &ClusterLoadAssignment) -> &mut Self {
        self.add(&e.cluster_name.clone(), e)
    }

    /// Adds a listener.
    pub fn listener(&mut self, l: &Listener) -> &mut Self {
        self.add(&l.name.clone(), l)
    }

    /// Adds a route configuration.
    pub fn route(&mut self, r: &RouteConfiguration) -> &mut Self {
        self.add(&r.name.clone(), r)
    }

    /// Adds an SDS secret.
    pub fn secret(&mut self, s: &Secret) -> &mut Self {
        self.add(&s.name.clone(), s)
    }

    /// Adds any message under `name`; a later resource of the same type and name replaces an earlier one.
    pub fn add<M: Message + Name>(&mut self, name: &str, msg: &M) -> &mut Self {
        let value = msg.encode_to_vec();
        let mut h = std::hash::DefaultHasher::new();
        value.hash(&mut h);
        let version = format!("{:016x}", h.finish());
        let body = Any {
            type_url: M::type_url(),
            value,
        };
        self.by_type
            .entry(body.type_url.clone())
            .or_default()
            .insert(
                name.to_string(),
                Arc::new(XdsResource {
                    name: name.to_string(),
                    version,
                    body,
                }),
            );
        self
    }

    /// The snapshot, versioned by a digest of every resource's version: equal contents, equal versions.
    pub fn build(self) -> Snapshot {
        let mut h = std::hash::DefaultHasher::new();
        let mut urls: Vec<&String> = self.by_type.keys().collect();
        urls.sort();
        for url in urls {
            url.hash(&mut h);
            for (name, r) in &self.by_type[url] {
                name.hash(&mut h);
                r.version.hash(&mut h);
            }
        }
        Snapshot {
            version: format!("{:016x}", h.finish()),
            by_type: self
                .by_type
                .into_iter()
                .map(|(url, r)| (url, Arc::new(r)))
                .collect(),
        }
    }
}
