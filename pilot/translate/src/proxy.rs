//! Who is asking: a proxy's identity, namespace, labels and interception mode, read from its xDS node.

use pilot_config::types::Labels;
use std::net::IpAddr;

use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::google::protobuf::{Struct, Value, value::Kind};

/// How traffic reaches the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interception {
    /// iptables redirect outbound traffic to 15001 and inbound to 15006 (Istio's default).
    #[default]
    Redirect,
    /// Nothing is captured: applications call the proxy's listeners on `127.0.0.1:PORT` themselves.
    None,
}

/// What kind of xDS client the proxy is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// An Envoy (or compatible) sidecar.
    #[default]
    Sidecar,
    /// A gateway (`router~…` node ids): gets the listeners of the Gateways whose selector its labels match.
    Router,
    /// A proxyless gRPC client: it resolves `xds:///HOST:PORT` through `api_listener`s.
    ProxylessGrpc,
}

/// Which data plane a sidecar runs, so it gets the filters it has: Envoy's stock ones, or the Sextant proxy's
/// own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DataPlane {
    /// Envoy (or any client not saying it is the Sextant proxy).
    #[default]
    Envoy,
    /// `sextant proxy`: its node's `user_agent_name` starts with `sextant`.
    Sextant,
}

/// A proxy as translation sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProxyInfo {
    /// The node id as sent.
    pub id: String,
    /// The workload's IP, when the node id carries one.
    pub ip: Option<IpAddr>,
    /// The workload's namespace (`default` when nothing says otherwise).
    pub namespace: String,
    /// The workload's labels (what a VirtualService's `sourceLabels` are checked against).
    pub labels: Labels,
    /// How traffic reaches it.
    pub interception: Interception,
    /// Sidecar, router or proxyless gRPC.
    pub kind: ProxyKind,
    /// The workload's service account: with the namespace, its mesh identity.
    pub service_account: String,
    /// Envoy or the Sextant proxy.
    pub data_plane: DataPlane,
    /// The workload's name: metadata `WORKLOAD_NAME`, else label `app`, else the pod's name (empty when
    /// nothing names it).
    pub workload: String,
    /// The pod's name, when the node id carries `POD.NAMESPACE`.
    pub pod: Option<String>,
    /// Whether the proxy keeps its own key and certificate (node metadata `SEXTANT_LOCAL_CERT: "true"`,
    /// which `sextant proxy --token-file` and a stock Envoy beside `sextant agent` send): pilot sends it no
    /// secrets, and its configuration still names the secrets `default` and `ROOTCA`, which it resolves
    /// itself (an Envoy from the agent's SDS cluster, [`crate::tls::AGENT_SDS_CLUSTER`]).
    pub local_certificate: bool,
}

/// The node metadata saying a proxy keeps its own key and certificate (see [`ProxyInfo::local_certificate`]).
pub const LOCAL_CERT_METADATA: &str = "SEXTANT_LOCAL_CERT";

/// The namespace assumed when neither metadata nor node id name one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The service account assumed when the metadata names none (Kubernetes' own default).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

impl ProxyInfo {
    /// Reads Istio's conventions from a node: the id `TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`,
    /// metadata `NAMESPACE`, `SERVICE_ACCOUNT`, `LABELS` (a struct of strings), `INTERCEPTION_MODE`
    /// (`REDIRECT`, the default, or `NONE`), `WORKLOAD_NAME`, `GENERATOR` (`grpc` for proxyless clients,
    /// which a `gRPC` user agent also implies) and [`LOCAL_CERT_METADATA`]; a `sextant…` user agent is the
    /// Sextant proxy.
    /// Anything missing or malformed falls back to a default; this never fails.
    pub fn from_node(node: &Node) -> ProxyInfo {
        let parts: Vec<&str> = node.id.split('~').collect();
        let meta = node.metadata.as_ref();
        let text = |key: &str| meta.and_then(|m| string(m, key));
        let ip = parts.get(1).and_then(|s| s.parse().ok());
        let namespace = text("NAMESPACE")
            .or_else(|| namespace_of_id(&parts))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let labels: Labels = meta
            .and_then(|m| m.fields.get("LABELS"))
            .and_then(|v| match &v.kind {
                Some(Kind::StructValue(s)) => Some(s),
                _ => None,
            })
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        let interception = match text("INTERCEPTION_MODE").as_deref() {
            Some(m) if m.eq_ignore_ascii_case("NONE") => Interception::None,
            _ => Interception::Redirect,
        };
        let grpc = text("GENERATOR").is_some_and(|g| g.eq_ignore_ascii_case("grpc"))
            || node
                .user_agent_name
                .to_ascii_lowercase()
                .starts_with("grpc");
        let kind = if grpc {
            ProxyKind::ProxylessGrpc
        } else if parts.first() == Some(&"router") {
            ProxyKind::Router
        } else {
            ProxyKind::Sidecar
        };
        let service_account = text("SERVICE_ACCOUNT")
            .filter(|sa| !sa.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
        let data_plane = if node
            .user_agent_name
            .to_ascii_lowercase()
            .starts_with("sextant")
        {
            DataPlane::Sextant
        } else {
            DataPlane::Envoy
        };
        let pod = pod_of_id(&parts);
        let local_certificate =
            text(LOCAL_CERT_METADATA).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let workload = text("WORKLOAD_NAME")
            .filter(|w| !w.is_empty())
            .or_else(|| labels.get("app").filter(|a| !a.is_empty()).cloned())
            .or_else(|| pod.clone())
            .unwrap_or_default();
        ProxyInfo {
            id: node.id.clone(),
            ip,
            namespace,
            labels,
            interception,
            kind,
            service_account,
            data_plane,
            workload,
            pod,
            local_certificate,
        }
    }
}

/// `pod` of the third part `pod.ns` of an Istio node id.
fn pod_of_id(parts: &[&str]) -> Option<String> {
    if parts.len() < 4 {
        return None;
    }
    let (pod, _) = parts[2].split_once('.')?;
    (!pod.is_empty()).then(|| pod.to_string())
}

/// `pod.ns` (third part) or `ns.svc.cluster.local` (fourth part) of an Istio node id.
fn namespace_of_id(parts: &[&str]) -> Option<String> {
    if parts.len() < 4 {
        return None;
    }
    let from_pod = parts[2].split_once('.').map(|(_, ns)| ns);
    let from_domain = parts[3].split('.').next();
    from_pod
        .or(from_domain)
        .filter(|ns| !ns.is_empty())
        .map(str::to_string)
}

impl ProxyInfo {
    /// What translation may read of this proxy, and so the key under which proxies share one translation:
    /// the proxy itself with the fields translation does not read cleared. Proxies with equal views get
    /// identical resources; translate the view, never the proxy, so translation cannot read what the key
    /// leaves out.
    ///
    /// This is the view for translation without the hub ([`crate::Options::hub`] unset): the workload and
    /// pod are read only to place the hub's filters, and are cleared; so is the data plane, unless the proxy
    /// keeps its own certificate (an Envoy then reads its secrets from the agent, the Sextant proxy over
    /// ADS). With the hub, use [`ProxyInfo::view_with_hub`].
    pub fn view(&self) -> ProxyInfo {
        self.view_of(false)
    }

    /// The view (see [`ProxyInfo::view`]) for translation with the hub ([`crate::Options::hub`] set): a
    /// sidecar's data plane, workload name and pod are read too (the pod makes the attribute
    /// `destination.uid` / `source.uid`, so with the hub every pod of a sidecar is a view of its own).
    pub fn view_with_hub(&self) -> ProxyInfo {
        self.view_of(true)
    }

    /// Every field is named here: a field added to `ProxyInfo` does not compile until it is decided whether
    /// proxies that differ in it may share resources.
    fn view_of(&self, hub: bool) -> ProxyInfo {
        let ProxyInfo {
            // Per proxy, and read by nothing translated (no per-workload inbound listeners): proxies of one
            // workload class share one translation. Reading them would make every proxy its own view.
            id: _,
            ip: _,
            namespace,
            labels,
            interception,
            kind,
            service_account,
            // Read only by the hub's filters, which only sidecars get.
            data_plane,
            workload,
            // Per pod: read by nothing translated (a `*.uid` attribute would make every pod its own view).
            pod: _,
            // Changes the resources (no secrets; where an Envoy's SDS secrets come from): in the view. Only
            // proxies that take certificates have one of their own.
            local_certificate,
        } = self;
        let hub = hub && *kind == ProxyKind::Sidecar;
        let local_certificate = *local_certificate && self.takes_certificates();
        ProxyInfo {
            id: String::new(),
            ip: None,
            namespace: namespace.clone(),
            labels: labels.clone(),
            interception: *interception,
            kind: *kind,
            service_account: service_account.clone(),
            data_plane: if hub || local_certificate {
                *data_plane
            } else {
                DataPlane::default()
            },
            workload: if hub { workload.clone() } else { String::new() },
            pod: None,
            local_certificate,
        }
    }

    /// The proxy's SPIFFE ID under `trust_domain`.
    pub fn identity(&self, trust_domain: &str) -> String {
        pilot_config::spiffe_id(trust_domain, &self.namespace, &self.service_account)
    }

    /// Whether the proxy takes mesh certificates over SDS (sidecars and gateways; proxyless gRPC clients
    /// read theirs from files).
    pub fn takes_certificates(&self) -> bool {
        self.kind != ProxyKind::ProxylessGrpc
    }

    /// Whether pilot sends the proxy its certificate and key (SDS secrets over ADS): a proxy that takes
    /// certificates and does not keep its own ([`ProxyInfo::local_certificate`]).
    pub fn sent_certificates(&self) -> bool {
        self.takes_certificates() && !self.local_certificate
    }
}

fn string(s: &Struct, key: &str) -> Option<String> {
    scalar(s.fields.get(key)?)
}

fn scalar(v: &Value) -> Option<String> {
    match &v.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        Some(Kind::NumberValue(n)) => Some(n.to_string()),
        Some(Kind::BoolValue(b)) => Some(b.to_string()),
        _ => None,
    }
}
