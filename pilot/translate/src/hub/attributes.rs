//! What a sidecar tells the hub about itself: the attributes it cannot see on the wire (its workload's name,
//! namespace, labels and principal, the service a port serves, which side reports), and the Sextant
//! proxy's hub filter carrying them (`sextant.filters.http.mixer`).
//!
//! Every name here is an attribute of the vocabulary (`sextant-attributes`), with the type its value has.
//! The filter's configuration is encoded by hand where it holds maps (the attributes, a labels map): prost
//! writes a map in hash order, and a resource whose bytes change on every translation would be pushed
//! again every time. Here entries go in name order, so equal attributes always give equal bytes.

use std::collections::BTreeMap;

use pilot_config::{RegistrySnapshot, Service};
use pilot_xds::build;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use sextant_proto::google::protobuf::Any;
use sextant_proto::mixer::{AttributeValue, StringMap, attribute_value};
use sextant_proto::mixer_filter::Mixer;

use crate::ProxyInfo;

/// One attribute's value: the attributes pilot sets are strings or string maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    /// A string.
    String(String),
    /// A map of strings (labels).
    StringMap(BTreeMap<String, String>),
}

/// Attributes by name, in name order.
pub type Attributes = BTreeMap<&'static str, AttrValue>;

/// The attribute names of one side of a request.
struct Side {
    workload_name: &'static str,
    workload_namespace: &'static str,
    namespace: &'static str,
    labels: &'static str,
    principal: &'static str,
}

const SOURCE: Side = Side {
    workload_name: "source.workload.name",
    workload_namespace: "source.workload.namespace",
    namespace: "source.namespace",
    labels: "source.labels",
    principal: "source.principal",
};

const DESTINATION: Side = Side {
    workload_name: "destination.workload.name",
    workload_namespace: "destination.workload.namespace",
    namespace: "destination.namespace",
    labels: "destination.labels",
    principal: "destination.principal",
};

/// Which side reports: `inbound` (the destination's proxy) or `outbound` (the source's).
pub const REPORTER_KIND: &str = "context.reporter.kind";
/// The service a request is for, as the inbound side knows it.
pub const SERVICE_HOST: &str = "destination.service.host";
/// The service's short name.
pub const SERVICE_NAME: &str = "destination.service.name";
/// The service's namespace.
pub const SERVICE_NAMESPACE: &str = "destination.service.namespace";

/// What one sidecar says about itself.
pub struct Facts<'a> {
    /// The proxy (its view).
    pub proxy: &'a ProxyInfo,
    registry: &'a RegistrySnapshot,
    principal: String,
}

impl<'a> Facts<'a> {
    /// The facts of `proxy`, its principal under `trust_domain`.
    pub fn of(proxy: &'a ProxyInfo, registry: &'a RegistrySnapshot, trust_domain: &str) -> Self {
        Facts {
            proxy,
            registry,
            principal: proxy.identity(trust_domain),
        }
    }

    /// The attributes of requests to the workload on `port`: the workload's `destination.*`, and the
    /// `destination.service.*` of the one service serving the port (none when no service, or several, do).
    pub fn inbound(&self, port: Option<u16>) -> Attributes {
        let mut out = self.side(&DESTINATION);
        out.insert(REPORTER_KIND, AttrValue::String("inbound".into()));
        if let Some(s) = port.and_then(|p| self.serving(p)) {
            let name = match s.hostname.split_once('.') {
                // A Kubernetes-style host NAME.NAMESPACE.…: the service's name; any other host is its name.
                Some((name, rest)) if rest.split('.').next() == Some(s.namespace.as_str()) => name,
                _ => s.hostname.as_str(),
            };
            out.insert(SERVICE_HOST, AttrValue::String(s.hostname.clone()));
            out.insert(SERVICE_NAME, AttrValue::String(name.to_string()));
            out.insert(SERVICE_NAMESPACE, AttrValue::String(s.namespace.clone()));
        }
        out
    }

    /// The attributes of the workload's requests to others: its `source.*`.
    pub fn outbound(&self) -> Attributes {
        let mut out = self.side(&SOURCE);
        out.insert(REPORTER_KIND, AttrValue::String("outbound".into()));
        out
    }

    fn side(&self, side: &Side) -> Attributes {
        let p = self.proxy;
        let mut out = Attributes::new();
        let mut string = |name, value: &str| {
            if !value.is_empty() {
                out.insert(name, AttrValue::String(value.to_string()));
            }
        };
        string(side.workload_name, &p.workload);
        string(side.workload_namespace, &p.namespace);
        string(side.namespace, &p.namespace);
        string(side.principal, &self.principal);
        if !p.labels.is_empty() {
            let labels = p.labels.iter().map(|(k, v)| (k.clone(), v.clone()));
            out.insert(side.labels, AttrValue::StringMap(labels.collect()));
        }
        out
    }

    /// The one service of the workload's namespace with an endpoint of the workload (labels it carries)
    /// listening on `port`; `None` when none or several do.
    fn serving(&self, port: u16) -> Option<&'a Service> {
        let p = self.proxy;
        let mut serving = (self.registry.visible_to(&p.namespace))
            .filter(|s| s.namespace == p.namespace)
            .filter(|s| {
                (s.endpoints.iter())
                    .filter(|e| !e.labels.is_empty() && p.labels.matches(&e.labels))
                    .any(|e| {
                        (s.ports.iter())
                            .any(|sp| e.ports.get(&sp.number).copied().unwrap_or(sp.number) == port)
                    })
            });
        let one = serving.next()?;
        serving.next().is_none().then_some(one.as_ref())
    }
}

/// The Sextant proxy's hub filter calling `cluster`: Report always, Check when `check`, with
/// `attributes`. Timeouts, failure policy, stale answers and batching are left unset: the proxy's
/// defaults apply.
pub fn mixer_filter(cluster: &str, attributes: &Attributes, check: bool) -> HttpFilter {
    build::http_filter(
        sextant_proto::MIXER_FILTER_NAME,
        mixer_config(cluster, attributes, check),
    )
}

/// The Sextant proxy's hub filter for a TCP chain (`sextant.filters.network.mixer`, before `tcp_proxy`):
/// the same configuration as the HTTP filter's.
pub fn mixer_network_filter(
    cluster: &str,
    attributes: &Attributes,
    check: bool,
) -> sextant_proto::envoy::config::listener::v3::Filter {
    sextant_proto::envoy::config::listener::v3::Filter {
        name: sextant_proto::MIXER_NETWORK_FILTER_NAME.to_string(),
        config_type: Some(
            sextant_proto::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
                mixer_config(cluster, attributes, check),
            ),
        ),
    }
}

/// The hub filter's configuration, its maps in name order.
fn mixer_config(cluster: &str, attributes: &Attributes, check: bool) -> Any {
    let mut value = Mixer {
        cluster: cluster.to_string(),
        check,
        report: true,
        ..Default::default()
    }
    .encode_to_vec();
    // Field 2, `attributes`: an `Attributes` whose map `values` (field 1) is written entry by entry.
    let mut values = Vec::new();
    for (name, v) in attributes {
        let mut entry = Vec::new();
        length_delimited(1, name.as_bytes(), &mut entry);
        length_delimited(2, &value_bytes(v), &mut entry);
        length_delimited(1, &entry, &mut values);
    }
    length_delimited(2, &values, &mut value);
    Any {
        type_url: sextant_proto::MIXER_FILTER_TYPE_URL.to_string(),
        value,
    }
}

/// An encoded `AttributeValue`.
fn value_bytes(v: &AttrValue) -> Vec<u8> {
    match v {
        AttrValue::String(s) => AttributeValue {
            value: Some(attribute_value::Value::StringValue(s.clone())),
        }
        .encode_to_vec(),
        AttrValue::StringMap(m) => {
            let mut out = Vec::new();
            length_delimited(8, &string_map(m), &mut out);
            out
        }
    }
}

/// An encoded `StringMap`: one-entry maps concatenated (their entries add up when decoded), in key order.
fn string_map(m: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in m {
        StringMap {
            entries: std::iter::once((k.clone(), v.clone())).collect(),
        }
        .encode(&mut out)
        .expect("a Vec grows as needed");
    }
    out
}

/// Appends field `tag` holding `bytes` (length-delimited) to `out`.
pub(crate) fn length_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}
