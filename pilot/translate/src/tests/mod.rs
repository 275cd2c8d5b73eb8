//! Translation of the bookinfo samples and of hand-written rules, checked resource by resource.

mod authz;
mod bookinfo;
mod edge;
mod gateways;
mod hub;
mod listeners;
mod mtls;
mod rules;
mod sidecars;
mod views;

use std::path::{Path, PathBuf};

use pilot_config::{MeshConfig, NetworkingSet, RegistrySnapshot, validate};
use pilot_xds::{Snapshot, types};
use prost::{Message, Name};
use sextant_proto::envoy::config::cluster::v3::{Cluster, cluster};
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use sextant_proto::envoy::config::listener::v3::{Listener, filter};
use sextant_proto::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, VirtualHost, header_matcher, route, route_action,
    route_match,
};
use sextant_proto::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use sextant_proto::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use sextant_proto::google::protobuf::{Struct, Value, value::Kind};
use sextant_resources::ConfigFiles;

use crate::{Interception, MeshTls, ProxyInfo, ProxyKind, translate};

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const RATINGS: &str = "ratings.default.svc.cluster.local";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/tests/fixtures/bookinfo")
}

fn mesh_of(files: Vec<(PathBuf, String)>) -> MeshConfig {
    let set = NetworkingSet::load(&ConfigFiles::from_texts(files)).expect("loads");
    validate(&set).unwrap_or_else(|e| panic!("{e}"))
}

/// Our bookinfo services, Istio's DestinationRules and one VirtualService sample (by file name).
fn bookinfo(sample: &str) -> MeshConfig {
    let files = ["services.yaml", "destination-rule-all.yaml", sample]
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| {
            let path = fixtures().join(f);
            let text = std::fs::read_to_string(&path).expect("fixture");
            (path, text)
        })
        .collect();
    mesh_of(files)
}

fn yaml(text: &str) -> MeshConfig {
    mesh_of(vec![(PathBuf::from("test.yaml"), text.to_string())])
}

fn registry(mesh: &MeshConfig) -> RegistrySnapshot {
    RegistrySnapshot {
        version: 1,
        services: mesh.services.clone(),
    }
}

fn proxy(interception: Interception) -> ProxyInfo {
    ProxyInfo {
        id: "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local".into(),
        namespace: "default".into(),
        interception,
        ..Default::default()
    }
}

fn snap(mesh: &MeshConfig, p: &ProxyInfo) -> Snapshot {
    let s = translate(mesh, &registry(mesh), p, &MeshTls::default());
    s.consistent().expect("consistent");
    s
}

fn names(s: &Snapshot, type_url: &str) -> Vec<String> {
    s.resources(type_url)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn get<M: Message + Default>(s: &Snapshot, type_url: &str, name: &str) -> M {
    let r = s
        .resources(type_url)
        .and_then(|m| m.get(name))
        .unwrap_or_else(|| panic!("{name} in {type_url}: have {:?}", names(s, type_url)));
    M::decode(r.body.value.as_slice()).expect("decodes")
}

fn vhost(s: &Snapshot, route: &str, host: &str) -> VirtualHost {
    let rc: RouteConfiguration = get(s, types::ROUTE, route);
    rc.virtual_hosts
        .into_iter()
        .find(|v| v.name == format!("{host}:{route}"))
        .unwrap_or_else(|| panic!("virtual host {host}"))
}

fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a forward: {other:?}"),
    }
}

fn weights(a: &RouteAction) -> Vec<(String, u32)> {
    match &a.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 100)],
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn ports_of(a: &ClusterLoadAssignment) -> Vec<u32> {
    use sextant_proto::envoy::config::core::v3::{address, socket_address};
    let mut out: Vec<u32> = a
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref()?.address.as_ref()? {
                    address::Address::SocketAddress(sa) => match sa.port_specifier {
                        Some(socket_address::PortSpecifier::PortValue(p)) => Some(p),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    out.sort();
    out
}
