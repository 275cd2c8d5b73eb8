//! `--hub-service`: the hub's cluster and the filters calling it, per data plane and direction.

use std::collections::BTreeMap;

use sextant_proto::envoy::config::accesslog::v3::access_log;
use sextant_proto::envoy::config::core::v3::grpc_service;
use sextant_proto::envoy::extensions::access_loggers::grpc::v3::HttpGrpcAccessLogConfig;
use sextant_proto::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz, ExtAuthzPerRoute, ext_authz, ext_authz_per_route,
};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::http_filter;
use sextant_proto::mixer::attribute_value;
use sextant_proto::mixer_filter::Mixer;

mod proxy;

use super::*;
use crate::{DataPlane, HubService, Options, WorkloadCertificate, translate_with};

const HUB: &str = "sextant-hub.sextant-system.svc.cluster.local:9091";
const HUB_CLUSTER: &str = "outbound|9091||sextant-hub.sextant-system.svc.cluster.local";
const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
const HTTP_RBAC: &str = "envoy.filters.http.rbac";

/// The hub (its port declared HTTP/1: its cluster speaks HTTP/2 anyway), `web` (endpoints labelled
/// `app: web`, on 8080), `api` (HTTP), `db` (undeclared: sniffed), a namespace Sidecar importing only `shop`,
/// and a DENY policy on web (HTTP RBAC first in its inbound connection managers).
const MESH: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hub, namespace: sextant-system}
spec:
  hosts: [sextant-hub.sextant-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9091, name: http}]
  endpoints: [{address: 10.9.0.1, ports: {http: 19091}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: shop}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.0.0.5, ports: {http: 8080}, labels: {app: web}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http}]
  endpoints: [{address: 10.0.0.6}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7000, name: db}]
  endpoints: [{address: 10.0.0.7}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
"#;

/// `web`'s own Sidecar for proxies without iptables: ingress 8080 (HTTP) on a listener of its own.
const WEB_INGRESS: &str = r#"---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: shop}
spec:
  workloadSelector: {labels: {app: web}}
  ingress: [{port: {number: 8080, protocol: HTTP, name: http}, captureMode: NONE, defaultEndpoint: "127.0.0.1:18080"}]
  egress: [{hosts: ["./*"]}]
"#;

fn web(plane: DataPlane, interception: Interception) -> ProxyInfo {
    ProxyInfo {
        id: "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local".into(),
        namespace: "shop".into(),
        labels: [("app", "web"), ("version", "v1")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter()
            .collect(),
        interception,
        service_account: "web".into(),
        data_plane: plane,
        workload: "web".into(),
        pod: Some("web-1".into()),
        ..Default::default()
    }
}

fn mesh_for(interception: Interception) -> MeshConfig {
    match interception {
        Interception::Redirect => yaml(MESH),
        Interception::None => yaml(&format!("{MESH}{WEB_INGRESS}")),
    }
}

/// `p`'s view translated with a (dummy) certificate and the hub set to `hub`.
fn with(mesh: &MeshConfig, p: &ProxyInfo, hub: Option<&str>) -> Snapshot {
    let hub = hub.map(|h| HubService::parse(h).expect("a valid --hub-service"));
    let options = Options {
        mtls: MeshTls {
            certificate: Some(WorkloadCertificate {
                chain_pem: "chain",
                key_pem: "key",
                root_pem: "root",
            }),
            ..Default::default()
        },
        hub: hub.as_ref(),
    };
    let s = translate_with(mesh, &registry(mesh), &p.view_with_hub(), &options);
    s.consistent().expect("consistent");
    s
}

/// Every resource of every type, encoded.
fn everything(s: &Snapshot) -> Vec<(String, String, Vec<u8>)> {
    let mut out: Vec<_> = (s.type_urls())
        .flat_map(|t| {
            s.resources(t).into_iter().flat_map(move |m| {
                m.iter()
                    .map(move |(n, r)| (t.to_string(), n.clone(), r.body.value.clone()))
            })
        })
        .collect();
    out.sort();
    out
}

/// The connection managers of `l`'s chains (default chain last).
fn managers(l: &Listener) -> Vec<HttpConnectionManager> {
    (l.filter_chains.iter())
        .chain(&l.default_filter_chain)
        .filter_map(|c| {
            let f = c.filters.last()?;
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                return None;
            };
            (f.name == pilot_xds::build::HCM_FILTER)
                .then(|| HttpConnectionManager::decode(any.value.as_slice()).expect("decodes"))
        })
        .collect()
}

fn filter_names(m: &HttpConnectionManager) -> Vec<&str> {
    m.http_filters.iter().map(|f| f.name.as_str()).collect()
}

fn config_of<M: Message + Default>(m: &HttpConnectionManager, name: &str) -> M {
    let f = (m.http_filters.iter())
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", filter_names(m)));
    let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("{name} has no typed config")
    };
    M::decode(any.value.as_slice()).expect("decodes")
}

/// The access logs of `m`: (log name, cluster) each.
fn access_logs(m: &HttpConnectionManager) -> Vec<(String, String)> {
    (m.access_log.iter())
        .map(|a| {
            assert_eq!(a.name, "envoy.access_loggers.http_grpc");
            let Some(access_log::ConfigType::TypedConfig(any)) = &a.config_type else {
                panic!("no config")
            };
            assert_eq!(any.type_url, HttpGrpcAccessLogConfig::type_url());
            let c = HttpGrpcAccessLogConfig::decode(any.value.as_slice())
                .unwrap()
                .common_config
                .unwrap();
            assert_eq!(c.transport_api_version, 2, "V3");
            (c.log_name, envoy_cluster(c.grpc_service.as_ref()))
        })
        .collect()
}

/// The cluster of an Envoy gRPC client, checking its `:authority` is the hub's `HOST:PORT`.
fn envoy_cluster(g: Option<&sextant_proto::envoy::config::core::v3::GrpcService>) -> String {
    match g.and_then(|g| g.target_specifier.as_ref()) {
        Some(grpc_service::TargetSpecifier::EnvoyGrpc(e)) => {
            assert_eq!(e.authority, HUB, "no cluster name as authority");
            e.cluster_name.clone()
        }
        other => panic!("not an Envoy gRPC client: {other:?}"),
    }
}

/// A hub filter's attributes, maps written `k=v,…`.
fn attributes(m: &Mixer) -> BTreeMap<String, String> {
    let values = &m.attributes.as_ref().expect("attributes").values;
    (values.iter())
        .map(|(k, v)| {
            let v = match &v.value {
                Some(attribute_value::Value::StringValue(s)) => s.clone(),
                Some(attribute_value::Value::StringMapValue(m)) => {
                    let sorted: BTreeMap<_, _> = m.entries.iter().collect();
                    let pairs: Vec<String> =
                        sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    pairs.join(",")
                }
                other => panic!("{k}: {other:?}"),
            };
            (k.clone(), v)
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    (pairs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The destination attributes of web's port 8080 (web's service serves it).
const INBOUND: &[(&str, &str)] = &[
    ("context.reporter.kind", "inbound"),
    ("destination.labels", "app=web,version=v1"),
    ("destination.namespace", "shop"),
    (
        "destination.principal",
        "spiffe://cluster.local/ns/shop/sa/web",
    ),
    ("destination.service.host", "web.shop.svc.cluster.local"),
    ("destination.service.name", "web"),
    ("destination.service.namespace", "shop"),
    ("destination.workload.name", "web"),
    ("destination.workload.namespace", "shop"),
];

const OUTBOUND: &[(&str, &str)] = &[
    ("context.reporter.kind", "outbound"),
    ("source.labels", "app=web,version=v1"),
    ("source.namespace", "shop"),
    ("source.principal", "spiffe://cluster.local/ns/shop/sa/web"),
    ("source.workload.name", "web"),
    ("source.workload.namespace", "shop"),
];

/// The listener serving web's inbound port 8080, and the name of its route configuration.
fn inbound_listener(s: &Snapshot, interception: Interception) -> Listener {
    let name = match interception {
        Interception::Redirect => "virtualInbound",
        Interception::None => "inbound_0.0.0.0_8080",
    };
    get(s, types::LISTENER, name)
}

fn outbound_listener(s: &Snapshot, interception: Interception, port: u16) -> Listener {
    let ip = match interception {
        Interception::Redirect => "0.0.0.0",
        Interception::None => "127.0.0.1",
    };
    get(s, types::LISTENER, &format!("{ip}_{port}"))
}

#[test]
fn the_hub_cluster_is_there_despite_the_sidecar_and_speaks_http2() {
    for interception in [Interception::Redirect, Interception::None] {
        for plane in [DataPlane::Envoy, DataPlane::Sextant] {
            let s = with(
                &mesh_for(interception),
                &web(plane, interception),
                Some(HUB),
            );
            let c: Cluster = get(&s, types::CLUSTER, HUB_CLUSTER);
            let options: HttpProtocolOptions = HttpProtocolOptions::decode(
                c.typed_extension_protocol_options
                    ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                    .value
                    .as_slice(),
            )
            .unwrap();
            assert!(
                matches!(
                    options.upstream_protocol_options,
                    Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                        http_protocol_options::ExplicitHttpConfig {
                            protocol_config: Some(
                                http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(_)
                            )
                        }
                    ))
                ),
                "{options:?}"
            );
            let eds: ClusterLoadAssignment = get(&s, types::ENDPOINT, HUB_CLUSTER);
            assert_eq!(ports_of(&eds), [19091]);
            // The Sidecar imports only `shop`: the hub's service itself is not in scope.
            assert!(
                !names(&s, types::LISTENER)
                    .iter()
                    .any(|n| n.ends_with("_9091")),
                "{:?}",
                names(&s, types::LISTENER)
            );
        }
    }
}

#[test]
fn envoy_sidecars_get_ext_authz_inbound_and_access_logs_both_ways() {
    for interception in [Interception::Redirect, Interception::None] {
        let s = with(
            &mesh_for(interception),
            &web(DataPlane::Envoy, interception),
            Some(HUB),
        );
        let inbound = managers(&inbound_listener(&s, interception));
        // The plain chain and its mTLS twin (virtualInbound's passthrough chains are TCP).
        assert_eq!(inbound.len(), 2, "{interception:?}");
        for m in &inbound {
            assert_eq!(
                filter_names(m),
                [
                    HTTP_RBAC,
                    EXT_AUTHZ,
                    "envoy.filters.http.fault",
                    "envoy.filters.http.router"
                ],
                "{interception:?}"
            );
            let authz: ExtAuthz = config_of(m, EXT_AUTHZ);
            let Some(ext_authz::Services::GrpcService(g)) = &authz.services else {
                panic!("{authz:?}")
            };
            assert_eq!(envoy_cluster(Some(g)), HUB_CLUSTER);
            let timeout = g.timeout.as_ref().unwrap();
            assert_eq!((timeout.seconds, timeout.nanos), (0, 200_000_000));
            assert!(authz.failure_mode_allow && authz.include_peer_certificate);
            assert_eq!(authz.transport_api_version, 2, "V3");
            assert_eq!(
                access_logs(m),
                [("inbound".to_string(), HUB_CLUSTER.to_string())]
            );
        }
        // What the hub is told of the destination: the route configuration's context extensions.
        let rc: RouteConfiguration = get(&s, types::ROUTE, "inbound|8080||");
        let per_route = &rc.virtual_hosts[0].typed_per_filter_config[EXT_AUTHZ];
        assert_eq!(per_route.type_url, ExtAuthzPerRoute::type_url());
        let Some(ext_authz_per_route::Override::CheckSettings(settings)) =
            ExtAuthzPerRoute::decode(per_route.value.as_slice())
                .unwrap()
                .r#override
        else {
            panic!("no check settings")
        };
        let strings: Vec<(&str, &str)> = (INBOUND.iter().copied())
            .filter(|(k, _)| k.starts_with("destination.") && *k != "destination.labels")
            .collect();
        let got: BTreeMap<String, String> = settings.context_extensions.into_iter().collect();
        assert_eq!(got, expected(&strings), "{interception:?}");
        // Outbound, declared HTTP and sniffed alike: reported, not checked.
        for port in [9080, 7000] {
            let out = managers(&outbound_listener(&s, interception, port));
            assert!(!out.is_empty(), "{port}");
            for m in &out {
                assert!(!filter_names(m).contains(&EXT_AUTHZ), "{port}");
                assert_eq!(
                    access_logs(m),
                    [("outbound".to_string(), HUB_CLUSTER.to_string())]
                );
            }
        }
    }
}

#[test]
fn sextant_proxies_get_the_hub_filter_checking_inbound_and_reporting_both_ways() {
    for interception in [Interception::Redirect, Interception::None] {
        let mesh = mesh_for(interception);
        let p = web(DataPlane::Sextant, interception);
        let s = with(&mesh, &p, Some(HUB));
        let inbound = managers(&inbound_listener(&s, interception));
        assert_eq!(inbound.len(), 2, "{interception:?}");
        for m in &inbound {
            assert_eq!(
                filter_names(m),
                [
                    HTTP_RBAC,
                    sextant_proto::MIXER_FILTER_NAME,
                    "envoy.filters.http.fault",
                    "envoy.filters.http.router"
                ]
            );
            assert!(m.access_log.is_empty(), "Envoy's access log is not for it");
            let f = &m.http_filters[1];
            let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                panic!("no config")
            };
            assert_eq!(any.type_url, sextant_proto::MIXER_FILTER_TYPE_URL);
            let mixer: Mixer = config_of(m, sextant_proto::MIXER_FILTER_NAME);
            assert_eq!(mixer.cluster, HUB_CLUSTER);
            assert!(mixer.check && mixer.report);
            // The proxy's defaults apply.
            assert_eq!(mixer.check_timeout, None);
            assert_eq!(mixer.failure_policy, 0);
            assert_eq!(mixer.stale_ttl, None);
            assert_eq!(
                (mixer.report_batch_entries, mixer.report_buffer_entries),
                (0, 0)
            );
            assert_eq!(mixer.report_flush_interval, None);
            assert_eq!(attributes(&mixer), expected(INBOUND), "{interception:?}");
        }
        let rc: RouteConfiguration = get(&s, types::ROUTE, "inbound|8080||");
        assert!(rc.virtual_hosts[0].typed_per_filter_config.is_empty());
        for port in [9080, 7000] {
            let out = managers(&outbound_listener(&s, interception, port));
            assert!(!out.is_empty(), "{port}");
            for m in &out {
                assert_eq!(filter_names(m)[0], sextant_proto::MIXER_FILTER_NAME);
                assert!(m.access_log.is_empty());
                let mixer: Mixer = config_of(m, sextant_proto::MIXER_FILTER_NAME);
                assert_eq!((mixer.check, mixer.report), (false, true));
                assert_eq!(attributes(&mixer), expected(OUTBOUND));
            }
        }
        // Equal attributes, equal bytes (maps written in name order): nothing is pushed again for nothing.
        assert_eq!(everything(&s), everything(&with(&mesh, &p, Some(HUB))));
    }
}

#[test]
fn a_port_served_by_several_services_names_none() {
    let mesh = yaml(&format!(
        "{MESH}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: web-admin, namespace: shop}}\nspec:\n  hosts: [web-admin.shop.svc.cluster.local]\n  resolution: STATIC\n  ports: [{{number: 81, name: http}}]\n  endpoints: [{{address: 10.0.0.5, ports: {{http: 8080}}, labels: {{app: web}}}}]\n"
    ));
    let s = with(
        &mesh,
        &web(DataPlane::Sextant, Interception::Redirect),
        Some(HUB),
    );
    let m = &managers(&inbound_listener(&s, Interception::Redirect))[0];
    let got = attributes(&config_of(m, sextant_proto::MIXER_FILTER_NAME));
    let want: Vec<_> = (INBOUND.iter().copied())
        .filter(|(k, _)| !k.starts_with("destination.service."))
        .collect();
    assert_eq!(got, expected(&want));
}

#[test]
fn without_the_flag_or_the_service_nothing_changes() {
    for interception in [Interception::Redirect, Interception::None] {
        let mesh = mesh_for(interception);
        for plane in [DataPlane::Envoy, DataPlane::Sextant] {
            let p = web(plane, interception);
            let without = with(&mesh, &p, None);
            // Same resources as plain `translate` of the hub-less view.
            let cert = WorkloadCertificate {
                chain_pem: "chain",
                key_pem: "key",
                root_pem: "root",
            };
            let mtls = MeshTls {
                certificate: Some(cert),
                ..Default::default()
            };
            let plain = translate(&mesh, &registry(&mesh), &p.view(), &mtls);
            assert_eq!(everything(&without), everything(&plain));
            assert!(!names(&without, types::CLUSTER).contains(&HUB_CLUSTER.to_string()));
            let bytes: Vec<u8> = (everything(&without).into_iter())
                .flat_map(|(_, _, b)| b)
                .collect();
            for absent in [EXT_AUTHZ, sextant_proto::MIXER_FILTER_NAME, "http_grpc"] {
                let needle = absent.as_bytes();
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{absent}"
                );
            }
            // A host or port the registry does not have: as without the flag.
            for unknown in [
                "sextant-hub.elsewhere.svc.cluster.local:9091",
                "sextant-hub.sextant-system.svc.cluster.local:9999",
            ] {
                let s = with(&mesh, &p, Some(unknown));
                assert_eq!(everything(&s), everything(&without), "{unknown}");
            }
        }
    }
}

#[test]
fn routers_and_proxyless_clients_are_untouched() {
    let mesh = yaml(MESH);
    let router = ProxyInfo {
        id: "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local".into(),
        namespace: "istio-system".into(),
        kind: ProxyKind::Router,
        ..Default::default()
    };
    let grpc = ProxyInfo {
        kind: ProxyKind::ProxylessGrpc,
        ..web(DataPlane::Envoy, Interception::None)
    };
    for p in [router, grpc] {
        assert_eq!(
            everything(&with(&mesh, &p, Some(HUB))),
            everything(&with(&mesh, &p, None)),
            "{:?}",
            p.kind
        );
    }
}

#[test]
fn attribute_names_are_in_the_vocabulary_with_their_types() {
    use sextant_attributes::AttrType;
    let mut seen = 0;
    for interception in [Interception::Redirect, Interception::None] {
        let s = with(
            &mesh_for(interception),
            &web(DataPlane::Sextant, interception),
            Some(HUB),
        );
        let l = inbound_listener(&s, interception);
        let out = outbound_listener(&s, interception, 9080);
        for m in managers(&l).iter().chain(&managers(&out)) {
            let mixer: Mixer = config_of(m, sextant_proto::MIXER_FILTER_NAME);
            for (name, v) in &mixer.attributes.unwrap().values {
                let id = sextant_attributes::lookup(name)
                    .unwrap_or_else(|| panic!("{name} is not in the vocabulary"));
                let ty = match v.value {
                    Some(attribute_value::Value::StringValue(_)) => AttrType::String,
                    Some(attribute_value::Value::StringMapValue(_)) => AttrType::StringMap,
                    _ => panic!("{name}: {v:?}"),
                };
                assert_eq!(id.ty(), ty, "{name}");
                seen += 1;
            }
        }
    }
    assert!(seen > 30, "{seen}");
}
