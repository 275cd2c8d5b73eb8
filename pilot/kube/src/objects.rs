//! What the registry keeps of each watched object: small projections of Services, EndpointSlices and Pods,
//! made as the objects arrive so the full objects (managed fields, status, containers) are never held.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pilot_config::Protocol;
use pilot_config::export::ExportTo;
use pilot_config::types::Labels;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, name)` of an object.
pub use sextant_kube::Key;

/// The key of an object's metadata (cluster-scoped objects get an empty namespace).
pub fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// How a Service is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A cluster IP (ClusterIP, NodePort, LoadBalancer): endpoints from its EndpointSlices.
    ClusterIp,
    /// `clusterIP: None`: no virtual IP, but its EndpointSlices list the pods all the same.
    Headless,
    /// `type: ExternalName`: a DNS name outside the cluster.
    ExternalName(String),
}

/// A port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its name (empty when the Service has a single unnamed port).
    pub name: String,
    /// The service port number.
    pub number: u16,
    /// Its protocol: `appProtocol`, else UDP, else Istio's port-name rules.
    pub protocol: Protocol,
}

/// What the registry keeps of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Its kind.
    pub kind: ServiceKind,
    /// Its ports (ports out of the 1–65535 range are left out).
    pub ports: Vec<PortInfo>,
    /// Its annotation `networking.istio.io/exportTo` (comma-separated, as Istio reads it), resolved.
    pub export_to: ExportTo,
}

/// The annotation that limits which namespaces see a Service.
const EXPORT_TO: &str = "networking.istio.io/exportTo";

/// The protocol Istio gives an `appProtocol` value, when it knows it.
fn app_protocol(value: &str) -> Option<Protocol> {
    match value {
        "kubernetes.io/h2c" => Some(Protocol::Http2),
        "kubernetes.io/ws" | "kubernetes.io/wss" => Some(Protocol::Http),
        other => Protocol::parse(other),
    }
}

impl ServiceInfo {
    /// The projection of a Service.
    pub fn of(service: &KubeService) -> ServiceInfo {
        let spec = service.spec.clone().unwrap_or_default();
        let kind = match (spec.type_.as_deref(), spec.cluster_ip.as_deref()) {
            (Some("ExternalName"), _) => {
                ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default())
            }
            (_, Some("None")) => ServiceKind::Headless,
            _ => ServiceKind::ClusterIp,
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                let number = u16::try_from(p.port).ok().filter(|n| *n > 0)?;
                let name = p.name.clone().unwrap_or_default();
                let protocol = if p.protocol.as_deref() == Some("UDP") {
                    Protocol::Udp
                } else {
                    p.app_protocol
                        .as_deref()
                        .and_then(app_protocol)
                        .unwrap_or_else(|| Protocol::from_port_name(&name))
                };
                Some(PortInfo {
                    name,
                    number,
                    protocol,
                })
            })
            .collect();
        let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        let export_to = (service.metadata.annotations.as_ref())
            .and_then(|a| a.get(EXPORT_TO))
            .map(|list| {
                let list: Vec<String> = (list.split(','))
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(String::from)
                    .collect();
                ExportTo::resolve(&list, namespace)
            })
            .unwrap_or_default();
        ServiceInfo {
            kind,
            ports,
            export_to,
        }
    }
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEndpoint {
    /// Its addresses (all belong to one pod).
    pub addresses: Vec<String>,
    /// Whether it is ready (an absent condition means ready, as the API defines).
    pub ready: bool,
    /// The Pod it belongs to (`namespace`, `name`), when the slice names one.
    pub pod: Option<Key>,
    /// Its zone, when known.
    pub zone: Option<String>,
}

/// What the registry keeps of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    /// The Service it belongs to (`namespace`, `name`), from the `kubernetes.io/service-name` label.
    pub service: Option<Key>,
    /// Port name → the port the endpoints listen on.
    pub ports: BTreeMap<String, u16>,
    /// Its endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

impl SliceInfo {
    /// The projection of an EndpointSlice. FQDN slices are skipped (their addresses are names, which a
    /// Service's own endpoints never are).
    pub fn of(slice: &EndpointSlice) -> SliceInfo {
        let (namespace, _) = key(&slice.metadata);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .map(|name| (namespace.clone(), name.clone()));
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port?).ok().filter(|n| *n > 0)?;
                Some((p.name.clone().unwrap_or_default(), port))
            })
            .collect();
        let endpoints = if slice.address_type == "FQDN" {
            Vec::new()
        } else {
            slice
                .endpoints
                .iter()
                .map(|e| SliceEndpoint {
                    addresses: e.addresses.clone(),
                    ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                    pod: e.target_ref.as_ref().and_then(|r| {
                        (r.kind.as_deref() == Some("Pod")).then(|| {
                            (
                                r.namespace.clone().unwrap_or_else(|| namespace.clone()),
                                r.name.clone().unwrap_or_default(),
                            )
                        })
                    }),
                    zone: e.zone.clone(),
                })
                .collect()
        };
        SliceInfo {
            service,
            ports,
            endpoints,
        }
    }
}

/// What the registry keeps of a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Its labels (`app`, `version`, …).
    pub labels: Labels,
    /// Its service account (`default` when the spec names none, as Kubernetes does).
    pub service_account: String,
}

impl PodInfo {
    /// The projection of a Pod.
    pub fn of(pod: &Pod) -> PodInfo {
        PodInfo {
            labels: pod.metadata.labels.clone().unwrap_or_default().into(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".to_string()),
        }
    }
}
