//! The service registry: which services exist, on which ports and protocols, and where their endpoints are.
//!
//! Pilot reads services only through [`ServiceRegistry`], so the file mode here ([`FileRegistry`], fed by
//! ServiceEntry and WorkloadEntry resources) and a Kubernetes mode (Services, EndpointSlices, Pods) are
//! interchangeable. A registry hands out immutable [`RegistrySnapshot`]s; its version increases whenever the
//! services change, and [`ServiceRegistry::changes`] wakes whoever rebuilds the Envoy configuration.
//!
//! Limits (checked when the model is validated, see [`limits`]): at most [`limits::MAX_SERVICES`] services,
//! [`limits::MAX_ENDPOINTS_PER_SERVICE`] endpoints per service and [`limits::MAX_ENDPOINTS`] endpoints in all.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::export::ExportTo;
use crate::protocol::Protocol;
use crate::types::{Labels, Location, Resolution};

/// The registry's bounds.
pub mod limits {
    /// Services in one registry at most.
    pub const MAX_SERVICES: usize = 10_000;
    /// Endpoints of one service at most.
    pub const MAX_ENDPOINTS_PER_SERVICE: usize = 10_000;
    /// Endpoints of all services together at most.
    pub const MAX_ENDPOINTS: usize = 200_000;
}

/// The SPIFFE ID of the workloads running as `service_account` in `namespace`:
/// `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`, the identity mesh mTLS certificates carry.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// A service: a host name with ports and endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The fully qualified host name (`reviews.default.svc.cluster.local`).
    pub hostname: String,
    /// The namespace the service was defined in.
    pub namespace: String,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Whether it is inside the mesh.
    pub location: Location,
    /// How its endpoints are found.
    pub resolution: Resolution,
    /// Its endpoints.
    pub endpoints: Vec<Endpoint>,
    /// The namespaces whose proxies see it.
    pub export_to: ExportTo,
    /// The identities its servers present, as written (a ServiceEntry's `subjectAltNames`); the endpoints'
    /// service accounts add theirs (see [`Service::identities`]).
    pub subject_alt_names: Vec<String>,
}

impl Service {
    /// The names a client checks this service's servers' certificates against under mesh mTLS: the written
    /// `subjectAltNames`, then the SPIFFE ID of each distinct endpoint service account (in the service's
    /// namespace, under `trust_domain`), sorted. Empty when nothing is known: then only the trust root is
    /// checked.
    pub fn identities(&self, trust_domain: &str) -> Vec<String> {
        let mut out: Vec<String> = self.subject_alt_names.clone();
        let mut accounts: Vec<&str> = self
            .endpoints
            .iter()
            .filter_map(|e| e.service_account.as_deref())
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        out.extend(
            accounts
                .into_iter()
                .map(|sa| spiffe_id(trust_domain, &self.namespace, sa)),
        );
        out.dedup();
        out
    }

    /// The port numbered `number`.
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// The endpoints carrying every label of `labels` (all of them for empty labels): a subset's members.
    pub fn endpoints_with<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints.iter().filter(move |e| e.has_labels(labels))
    }
}

/// A port of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (may be empty).
    pub name: String,
    /// The number clients connect to.
    pub number: u16,
    /// Its protocol (written, or decided by the name).
    pub protocol: Protocol,
}

/// One endpoint (an instance) of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// IP address (or, for DNS resolution, a host name).
    pub address: String,
    /// Service port number → the port this endpoint listens on.
    pub ports: BTreeMap<u16, u16>,
    /// Labels (`app`, `version`).
    pub labels: Labels,
    /// Load-balancing weight (at least 1).
    pub weight: u32,
    /// `region/zone/subzone`, when known.
    pub locality: Option<String>,
    /// The workload's service account, when known.
    pub service_account: Option<String>,
}

impl Endpoint {
    /// Whether this endpoint carries every label of `labels`.
    pub fn has_labels(&self, labels: &Labels) -> bool {
        self.labels.matches(labels)
    }
}

/// The registry's services at one version. Immutable.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    /// Increases with every change of the services; 0 before the first.
    pub version: u64,
    /// Services by host name.
    pub services: Arc<BTreeMap<String, Arc<Service>>>,
}

impl RegistrySnapshot {
    /// The service of `hostname`.
    pub fn service(&self, hostname: &str) -> Option<&Arc<Service>> {
        self.services.get(hostname)
    }

    /// Every service, by host name.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values()
    }

    /// The services proxies in `namespace` see (see [`ExportTo`]), by host name.
    pub fn visible_to<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Arc<Service>> {
        self.services()
            .filter(move |s| s.export_to.visible_to(namespace))
    }
}

/// A source of services and endpoints: files ([`FileRegistry`]) or Kubernetes (`pilot-kube`).
pub trait ServiceRegistry: Send + Sync {
    /// The current services. Cheap: an `Arc` clone.
    fn snapshot(&self) -> Arc<RegistrySnapshot>;

    /// A receiver whose value is the current version; it changes whenever the services do.
    fn changes(&self) -> watch::Receiver<u64>;

    /// The current version. By default this is the snapshot's.
    fn version(&self) -> u64 {
        self.snapshot().version
    }
}

/// The file-mode registry: services from ServiceEntry and WorkloadEntry resources, replaced as a whole each
/// time the configuration is reloaded.
#[derive(Debug)]
pub struct FileRegistry {
    current: RwLock<Arc<RegistrySnapshot>>,
    version: watch::Sender<u64>,
}

impl Default for FileRegistry {
    fn default() -> Self {
        FileRegistry::new()
    }
}

impl FileRegistry {
    /// An empty registry at version 0.
    pub fn new() -> FileRegistry {
        FileRegistry {
            current: RwLock::new(Arc::new(RegistrySnapshot::default())),
            version: watch::Sender::new(0),
        }
    }

    /// Replaces the services (from a validated [`crate::MeshConfig`]). The version increases, and receivers
    /// are woken, only when the services differ from the current ones. Returns the version now current.
    pub fn update(&self, services: Arc<BTreeMap<String, Arc<Service>>>) -> u64 {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.services == services {
            return current.version;
        }
        let version = current.version + 1;
        *current = Arc::new(RegistrySnapshot { version, services });
        drop(current);
        tracing::debug!(version, "file registry: services changed");
        self.version.send_replace(version);
        version
    }
}

impl ServiceRegistry for FileRegistry {
    fn snapshot(&self) -> Arc<RegistrySnapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(host: &str, versions: &[&str]) -> Arc<Service> {
        Arc::new(Service {
            hostname: host.into(),
            namespace: "default".into(),
            ports: vec![ServicePort {
                name: "http".into(),
                number: 9080,
                protocol: Protocol::Http,
            }],
            location: Location::MeshInternal,
            resolution: Resolution::Static,
            export_to: Default::default(),
            subject_alt_names: Vec::new(),
            endpoints: versions
                .iter()
                .enumerate()
                .map(|(i, v)| Endpoint {
                    address: "127.0.0.1".into(),
                    ports: BTreeMap::from([(9080, 19080 + i as u16)]),
                    labels: Labels::from([("version".to_string(), v.to_string())]),
                    weight: 1,
                    locality: None,
                    service_account: None,
                })
                .collect(),
        })
    }

    fn services(list: &[Arc<Service>]) -> Arc<BTreeMap<String, Arc<Service>>> {
        Arc::new(
            list.iter()
                .map(|s| (s.hostname.clone(), s.clone()))
                .collect(),
        )
    }

    #[test]
    fn version_moves_only_when_services_change() {
        let reg = FileRegistry::new();
        let mut rx = reg.changes();
        assert_eq!(reg.version(), 0);
        let a = services(&[service("reviews.default.svc.cluster.local", &["v1", "v2"])]);
        assert_eq!(reg.update(a.clone()), 1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        // The same services, rebuilt by another reload: no new version, nobody woken.
        let same = services(&[service("reviews.default.svc.cluster.local", &["v1", "v2"])]);
        assert_eq!(reg.update(same), 1);
        assert!(!rx.has_changed().unwrap());
        let b = services(&[service("reviews.default.svc.cluster.local", &["v1"])]);
        assert_eq!(reg.update(b), 2);
        assert_eq!(*rx.borrow_and_update(), 2);
        let snap = reg.snapshot();
        assert_eq!(snap.version, 2);
        assert_eq!(
            snap.service("reviews.default.svc.cluster.local")
                .unwrap()
                .endpoints
                .len(),
            1
        );
    }

    #[test]
    fn subset_members_by_labels() {
        let s = service("r", &["v1", "v2", "v2"]);
        let v2 = Labels::from([("version".to_string(), "v2".to_string())]);
        assert_eq!(s.endpoints_with(&v2).count(), 2);
        assert_eq!(s.endpoints_with(&Labels::new()).count(), 3);
        assert_eq!(s.port(9080).unwrap().protocol, Protocol::Http);
        assert!(s.port(80).is_none());
    }
}
