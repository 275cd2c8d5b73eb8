//! Translation of the bookinfo samples and of hand-written rules, checked resource by resource.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hub_config::ConfigFiles;
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

use crate::{Interception, ProxyInfo, ProxyKind, translate};

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
    let s = translate(mesh, &registry(mesh), p);
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

#[test]
fn every_bookinfo_sample_translates_to_a_consistent_snapshot_for_every_kind_of_proxy() {
    let samples = [
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-v3.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-ratings-test-abort.yaml",
        "",
    ];
    let mut grpc = proxy(Interception::None);
    grpc.kind = ProxyKind::ProxylessGrpc;
    for sample in samples {
        let mesh = bookinfo(sample);
        for p in [
            proxy(Interception::Redirect),
            proxy(Interception::None),
            grpc.clone(),
        ] {
            let s = translate(&mesh, &registry(&mesh), &p);
            assert_eq!(s.consistent(), Ok(()), "{sample} for {p:?}");
            assert_eq!(names(&s, types::ROUTE), ["9080"], "{sample}");
        }
    }
}

#[test]
fn clusters_are_named_the_istio_way_with_subset_endpoints() {
    let mesh = bookinfo("virtual-service-all-v1.yaml");
    let s = snap(&mesh, &proxy(Interception::Redirect));
    let clusters = names(&s, types::CLUSTER);
    for name in [
        "BlackHoleCluster",
        "PassthroughCluster",
        "InboundPassthroughCluster",
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
        "outbound|9080|v2-mysql|ratings.default.svc.cluster.local",
    ] {
        assert!(
            clusters.contains(&name.to_string()),
            "{name} in {clusters:?}"
        );
    }
    // 4 services; subsets: productpage 1, reviews 3, ratings 4, details 2; plus 3 special clusters.
    assert_eq!(clusters.len(), 4 + 10 + 3);
    let c: Cluster = get(
        &s,
        types::CLUSTER,
        "outbound|9080|v2|reviews.default.svc.cluster.local",
    );
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(
        c.lb_policy,
        cluster::LbPolicy::LeastRequest as i32,
        "Istio's default"
    );
    assert_eq!(c.connect_timeout.map(|d| d.seconds), Some(10));
    let eds = |n: &str| ports_of(&get(&s, types::ENDPOINT, n));
    assert_eq!(
        eds("outbound|9080||reviews.default.svc.cluster.local"),
        [19081, 19082, 19083]
    );
    assert_eq!(
        eds("outbound|9080|v2|reviews.default.svc.cluster.local"),
        [19082]
    );
    assert_eq!(
        eds("outbound|9080|v1|ratings.default.svc.cluster.local"),
        [19084],
        "WorkloadEntry"
    );
    assert!(eds("outbound|9080|v2|ratings.default.svc.cluster.local").is_empty());
    let black: Cluster = get(&s, types::CLUSTER, "BlackHoleCluster");
    assert_eq!(
        black.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    let pass: Cluster = get(&s, types::CLUSTER, "PassthroughCluster");
    assert_eq!(pass.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
}

#[test]
fn virtual_hosts_carry_istios_domains() {
    let mesh = bookinfo("");
    let s = snap(&mesh, &proxy(Interception::None));
    let mut d = vhost(&s, "9080", REVIEWS).domains;
    d.sort();
    assert_eq!(
        d,
        [
            "reviews",
            "reviews.default",
            "reviews.default.svc",
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc:9080",
            "reviews.default:9080",
            "reviews:9080",
        ]
    );
    // From another namespace the bare name means something else.
    let mut other = proxy(Interception::None);
    other.namespace = "shop".into();
    let s = snap(&mesh, &other);
    let d = vhost(&s, "9080", REVIEWS).domains;
    assert!(!d.contains(&"reviews".to_string()) && d.contains(&"reviews.default".to_string()));
    // No VirtualService: one default route to the service's cluster, no timeout, Istio's retries.
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 1);
    let a = action(&vh.routes[0]);
    assert_eq!(weights(a), [(format!("outbound|9080||{REVIEWS}"), 100)]);
    assert_eq!(a.timeout.map(|t| (t.seconds, t.nanos)), Some((0, 0)));
    let retry = a.retry_policy.as_ref().expect("default retries");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(2));
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn weighted_split_and_header_match_follow_the_samples() {
    let s = snap(
        &bookinfo("virtual-service-reviews-90-10.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(
        weights(action(&vh.routes[0])),
        [
            (format!("outbound|9080|v1|{REVIEWS}"), 90),
            (format!("outbound|9080|v2|{REVIEWS}"), 10)
        ]
    );

    let s = snap(
        &bookinfo("virtual-service-reviews-test-v2.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 2);
    let m = vh.routes[0].r#match.as_ref().expect("match");
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "end-user");
    match &m.headers[0].header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(sm)) => assert_eq!(
            sm.match_pattern,
            Some(
                sextant_proto::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                    "jason".into()
                )
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        weights(action(&vh.routes[0])),
        [(format!("outbound|9080|v2|{REVIEWS}"), 100)]
    );
    assert_eq!(
        weights(action(&vh.routes[1])),
        [(format!("outbound|9080|v1|{REVIEWS}"), 100)]
    );
    assert!(
        vh.routes[1]
            .r#match
            .as_ref()
            .is_some_and(|m| m.headers.is_empty())
    );
}

fn fault_of(r: &Route) -> HttpFault {
    let any = r
        .typed_per_filter_config
        .get("envoy.filters.http.fault")
        .expect("a fault");
    assert_eq!(any.type_url, HttpFault::type_url());
    HttpFault::decode(any.value.as_slice()).expect("decodes")
}

#[test]
fn faults_become_per_route_fault_filter_config() {
    let s = snap(
        &bookinfo("virtual-service-ratings-test-abort.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", RATINGS);
    let f = fault_of(&vh.routes[0]);
    let abort = f.abort.expect("abort");
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::HttpStatus(500))
    );
    assert_eq!(
        abort.percentage.map(|p| (p.numerator, p.denominator)),
        Some((1_000_000, 2))
    );
    assert!(f.delay.is_none());
    assert!(
        vh.routes[1].typed_per_filter_config.is_empty(),
        "only jason's route"
    );

    let s = snap(
        &bookinfo("virtual-service-ratings-test-delay.yaml"),
        &proxy(Interception::None),
    );
    let f = fault_of(&vhost(&s, "9080", RATINGS).routes[0]);
    let delay = f.delay.expect("delay");
    use sextant_proto::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
    match delay.fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(d)) => assert_eq!((d.seconds, d.nanos), (7, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(delay.percentage.map(|p| p.numerator), Some(1_000_000));
}

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}, {number: 9090, name: grpc-api}]
  endpoints:
  - {address: 10.0.0.1, ports: {http: 18080, grpc-api: 19090}, labels: {version: v1}, weight: 3}
  - {address: 10.0.0.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db, namespace: default}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3306, name: tcp-mysql}]
  endpoints:
  - {address: 10.0.1.1, labels: {version: v1}}
  - {address: 10.0.1.2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db, namespace: default}
spec:
  host: db
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: [db]
  tcp:
  - route:
    - {destination: {host: db, subset: v1}, weight: 75}
    - {destination: {host: db, subset: v2}, weight: 25}
"#;

#[test]
fn retries_timeouts_and_route_features_map_to_envoy() {
    let mesh = yaml(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - name: api
    match:
    - uri: {regex: "/API/v[0-9]+"}
      ignoreUriCase: true
      method: {exact: POST}
      queryParams: {debug: {exact: "1"}}
      withoutHeaders: {x-canary: {}}
    rewrite: {uri: /v1, authority: backend.internal}
    timeout: 1.5s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "gateway-error,503"}
    mirror: {host: web, subset: v2}
    mirrorPercentage: {value: 12.5}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [server]}
    route: [{destination: {host: web, subset: v1}}]
  - name: none
    match: [{uri: {prefix: /no-retry}}]
    retries: {attempts: 0}
    route: [{destination: {host: web, subset: v1}}]
  - name: from-canary
    match: [{sourceLabels: {track: canary}}]
    route: [{destination: {host: web, subset: v2}}]
  - name: old
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, redirectCode: 302}
  - route: [{destination: {host: web, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#
    ));
    let s = snap(&mesh, &proxy(Interception::None));
    let vh = vhost(&s, "8080", "web.default.svc.cluster.local");
    let by_name: Vec<&str> = vh.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        by_name,
        ["api", "none", "old", ""],
        "the canary match is not this proxy's"
    );

    let api = &vh.routes[0];
    let m = api.r#match.as_ref().expect("match");
    match &m.path_specifier {
        Some(route_match::PathSpecifier::SafeRegex(r)) => {
            assert!(
                r.regex.starts_with("(?i)") && r.regex.contains("/API/v[0-9]+"),
                "{}",
                r.regex
            )
        }
        other => panic!("{other:?}"),
    }
    let hm: Vec<(&str, bool)> = m
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.invert_match))
        .collect();
    assert_eq!(hm, [(":method", false), ("x-canary", true)]);
    assert_eq!(m.query_parameters[0].name, "debug");
    let a = action(api);
    assert_eq!(
        a.timeout.map(|t| (t.seconds, t.nanos)),
        Some((1, 500_000_000))
    );
    let retry = a.retry_policy.as_ref().expect("retries");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(4));
    assert_eq!(retry.retry_on, "gateway-error,retriable-status-codes");
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(retry.per_try_timeout.map(|t| t.nanos), Some(500_000_000));
    assert_eq!(a.prefix_rewrite, "/v1");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "backend.internal".into()
        ))
    );
    let mirror = &a.request_mirror_policies[0];
    assert_eq!(
        mirror.cluster,
        "outbound|8080|v2|web.default.svc.cluster.local"
    );
    assert_eq!(
        mirror
            .runtime_fraction
            .as_ref()
            .and_then(|f| f.default_value)
            .map(|p| p.numerator),
        Some(125_000)
    );
    let added: Vec<(String, i32)> = api
        .request_headers_to_add
        .iter()
        .map(|h| {
            (
                h.header.as_ref().map(|h| h.key.clone()).unwrap_or_default(),
                h.append_action,
            )
        })
        .collect();
    assert_eq!(added, [("x-a".to_string(), 2), ("x-b".to_string(), 0)]);
    assert_eq!(api.request_headers_to_remove, ["x-c"]);
    assert_eq!(api.response_headers_to_remove, ["server"]);

    assert!(
        action(&vh.routes[1]).retry_policy.is_none(),
        "attempts: 0 disables retries"
    );
    match &vh.routes[2].action {
        Some(route::Action::Redirect(r)) => assert_eq!(r.response_code, 1, "302 is FOUND"),
        other => panic!("{other:?}"),
    }

    // The same rules for a canary workload: its sourceLabels route appears.
    let mut canary = proxy(Interception::None);
    canary.labels = BTreeMap::from([("track".into(), "canary".into())]);
    let s = snap(&mesh, &canary);
    let vh = vhost(&s, "8080", "web.default.svc.cluster.local");
    assert_eq!(vh.routes[2].name, "from-canary");
    assert_eq!(
        weights(action(&vh.routes[2])),
        [(
            "outbound|8080|v2|web.default.svc.cluster.local".to_string(),
            100
        )]
    );
}

fn hcm_of(l: &Listener) -> HttpConnectionManager {
    let any = l
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.clone())
        .or_else(|| {
            l.filter_chains[0]
                .filters
                .iter()
                .find_map(|f| match &f.config_type {
                    Some(filter::ConfigType::TypedConfig(a))
                        if a.type_url == HttpConnectionManager::type_url() =>
                    {
                        Some(a.clone())
                    }
                    _ => None,
                })
        })
        .expect("an HCM");
    HttpConnectionManager::decode(any.value.as_slice()).expect("decodes")
}

fn filters(h: &HttpConnectionManager) -> Vec<&str> {
    h.http_filters.iter().map(|f| f.name.as_str()).collect()
}

fn rds(h: &HttpConnectionManager) -> String {
    match &h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(r)) => r.route_config_name.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn listeners_take_istios_shape_per_interception_mode() {
    let mesh = yaml(SERVICES);
    let s = snap(&mesh, &proxy(Interception::Redirect));
    assert_eq!(
        names(&s, types::LISTENER),
        [
            "0.0.0.0_3306",
            "0.0.0.0_8080",
            "0.0.0.0_9090",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let out: Listener = get(&s, types::LISTENER, "virtualOutbound");
    assert_eq!(out.use_original_dst.map(|b| b.value), Some(true));
    assert_eq!(
        out.listener_filters[0].name,
        "envoy.filters.listener.original_dst"
    );
    assert!(format!("{:?}", out.address).contains("15001"));
    let inbound: Listener = get(&s, types::LISTENER, "virtualInbound");
    assert!(format!("{:?}", inbound.address).contains("15006"));
    let http: Listener = get(&s, types::LISTENER, "0.0.0.0_8080");
    assert_eq!(http.bind_to_port.map(|b| b.value), Some(false));
    let h = hcm_of(&http);
    assert_eq!(rds(&h), "8080");
    assert_eq!(
        filters(&h),
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.router"
        ]
    );
    // TCP: a TCP proxy split as the VirtualService's tcp route says.
    let tcp: Listener = get(&s, types::LISTENER, "0.0.0.0_3306");
    let any = match &tcp.filter_chains[0].filters[0].config_type {
        Some(filter::ConfigType::TypedConfig(a)) => a.clone(),
        other => panic!("{other:?}"),
    };
    let tp = TcpProxy::decode(any.value.as_slice()).expect("tcp proxy");
    match tp.cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
            let got: Vec<(String, u32)> = w
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight))
                .collect();
            assert_eq!(
                got,
                [
                    (
                        "outbound|3306|v1|db.default.svc.cluster.local".to_string(),
                        75
                    ),
                    (
                        "outbound|3306|v2|db.default.svc.cluster.local".to_string(),
                        25
                    )
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // Without interception each port binds loopback and there is no capture listener.
    let s = snap(&mesh, &proxy(Interception::None));
    assert_eq!(
        names(&s, types::LISTENER),
        ["127.0.0.1_3306", "127.0.0.1_8080", "127.0.0.1_9090"]
    );
    let l: Listener = get(&s, types::LISTENER, "127.0.0.1_8080");
    assert!(l.bind_to_port.is_none() && format!("{:?}", l.address).contains("127.0.0.1"));
    assert!(!names(&s, types::CLUSTER).contains(&"InboundPassthroughCluster".to_string()));
    let rc: RouteConfiguration = get(&s, types::ROUTE, "8080");
    assert!(
        rc.virtual_hosts.iter().all(|v| v.name != "allow_any"),
        "no loop back to ourselves"
    );
}

#[test]
fn proxyless_grpc_gets_api_listeners_per_host_and_port() {
    let mesh = yaml(SERVICES);
    let mut p = proxy(Interception::None);
    p.kind = ProxyKind::ProxylessGrpc;
    let s = snap(&mesh, &p);
    assert_eq!(
        names(&s, types::LISTENER),
        [
            "web.default.svc.cluster.local:8080",
            "web.default.svc.cluster.local:9090"
        ]
    );
    let l: Listener = get(&s, types::LISTENER, "web.default.svc.cluster.local:9090");
    let h = hcm_of(&l);
    assert_eq!(rds(&h), "9090");
    assert_eq!(filters(&h).last(), Some(&"envoy.filters.http.router"));
    assert!(!filters(&h).contains(&"envoy.filters.http.cors"));
    assert!(
        vhost(&s, "9090", "web.default.svc.cluster.local")
            .domains
            .contains(&"web.default.svc.cluster.local:9090".to_string())
    );
    let c: Cluster = get(
        &s,
        types::CLUSTER,
        "outbound|9090||web.default.svc.cluster.local",
    );
    assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert!(!names(&s, types::CLUSTER).contains(&"PassthroughCluster".to_string()));
}

fn upstream_http2(c: &Cluster) -> Option<bool> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    let any = c
        .typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")?;
    let o = HttpProtocolOptions::decode(any.value.as_slice()).ok()?;
    match o.upstream_protocol_options? {
        http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(e) => Some(matches!(
            e.protocol_config?,
            ProtocolConfig::Http2ProtocolOptions(_)
        )),
        _ => None,
    }
}

#[test]
fn traffic_policies_merge_rule_port_and_subset_levels() {
    let mesh = yaml(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 7, http2MaxRequests: 50, maxRetries: 3, idleTimeout: 30s, maxRequestsPerConnection: 10}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50, minHealthPercent: 20}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {consistentHash: {httpHeaderName: x-user, minimumRingSize: 1024}}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
  - {name: v2, labels: {version: v2}}
"#
    ));
    let s = snap(&mesh, &proxy(Interception::None));
    let c = |n: &str| -> Cluster {
        get(
            &s,
            types::CLUSTER,
            &format!("outbound|{n}|web.default.svc.cluster.local"),
        )
    };
    assert_eq!(c("8080|").lb_policy, cluster::LbPolicy::Random as i32);
    assert_eq!(c("8080|v1").lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(c("8080|v2").lb_policy, cluster::LbPolicy::Random as i32);
    let hashed = c("9090|v2");
    assert_eq!(hashed.lb_policy, cluster::LbPolicy::RingHash as i32);
    match hashed.lb_config {
        Some(cluster::LbConfig::RingHashLbConfig(r)) => {
            assert_eq!(r.minimum_ring_size.map(|v| v.value), Some(1024))
        }
        other => panic!("{other:?}"),
    }
    // The subset's own balancing replaces the port's consistent hash.
    assert_eq!(c("9090|v1").lb_policy, cluster::LbPolicy::RoundRobin as i32);
    let plain = c("8080|");
    assert_eq!(plain.connect_timeout.map(|d| d.nanos), Some(250_000_000));
    let t = &plain
        .circuit_breakers
        .as_ref()
        .expect("breakers")
        .thresholds[0];
    let v = |x: &Option<sextant_proto::google::protobuf::UInt32Value>| x.as_ref().map(|v| v.value);
    assert_eq!(
        (
            v(&t.max_connections),
            v(&t.max_pending_requests),
            v(&t.max_requests),
            v(&t.max_retries)
        ),
        (Some(100), Some(7), Some(50), Some(3))
    );
    let od = plain.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(v(&od.consecutive_5xx), Some(5));
    assert_eq!(v(&od.enforcing_consecutive_5xx), Some(100));
    assert_eq!(v(&od.max_ejection_percent), Some(50));
    assert_eq!(od.base_ejection_time.map(|d| d.seconds), Some(30));
    assert_eq!(
        plain
            .common_lb_config
            .as_ref()
            .and_then(|c| c.healthy_panic_threshold)
            .map(|p| p.value),
        Some(20.0)
    );
    assert_eq!(upstream_http2(&plain), Some(false));
    assert_eq!(
        upstream_http2(&c("9090|")),
        Some(true),
        "grpc ports speak HTTP/2 upstream"
    );
    assert_eq!(
        upstream_http2(&get(
            &s,
            types::CLUSTER,
            "outbound|3306||db.default.svc.cluster.local"
        )),
        None
    );
    // Endpoint weights and target ports; an endpoint without a port mapping serves the service port.
    let a: ClusterLoadAssignment = get(
        &s,
        types::ENDPOINT,
        "outbound|8080||web.default.svc.cluster.local",
    );
    assert_eq!(ports_of(&a), [8080, 18080]);
    let w: Vec<u32> = a.endpoints[0]
        .lb_endpoints
        .iter()
        .filter_map(|e| e.load_balancing_weight.as_ref().map(|w| w.value))
        .collect();
    assert_eq!(w, [3, 1]);
    // A route to the hashed port carries the hash policy.
    let vh = vhost(&s, "9090", "web.default.svc.cluster.local");
    assert_eq!(action(&vh.routes[0]).hash_policy.len(), 1);
    assert!(
        action(&vhost(&s, "8080", "web.default.svc.cluster.local").routes[0])
            .hash_policy
            .is_empty()
    );
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

#[test]
fn proxy_info_reads_istio_node_conventions_and_never_fails() {
    let labels = Struct {
        fields: [
            ("app".to_string(), text("productpage")),
            ("version".to_string(), text("v1")),
        ]
        .into(),
    };
    let node = Node {
        id: "sidecar~10.1.2.3~productpage-v1-abc.shop~shop.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: [
                (
                    "LABELS".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
                ("INTERCEPTION_MODE".to_string(), text("NONE")),
            ]
            .into(),
        }),
        ..Default::default()
    };
    let p = ProxyInfo::from_node(&node);
    assert_eq!(p.ip, Some("10.1.2.3".parse().expect("ip")));
    assert_eq!(p.namespace, "shop");
    assert_eq!(p.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(p.interception, Interception::None);
    assert_eq!(p.kind, ProxyKind::Sidecar);

    let odd = ProxyInfo::from_node(&Node {
        id: "envoy-under-test".into(),
        user_agent_name: "gRPC Python".into(),
        ..Default::default()
    });
    assert_eq!((odd.ip, odd.namespace.as_str()), (None, "default"));
    assert_eq!(odd.interception, Interception::Redirect);
    assert_eq!(odd.kind, ProxyKind::ProxylessGrpc);
    let router = ProxyInfo::from_node(&Node {
        id: "router~~gw.istio-system~istio-system.svc.cluster.local".into(),
        ..Default::default()
    });
    assert_eq!(
        (router.kind, router.namespace.as_str()),
        (ProxyKind::Router, "istio-system")
    );
}
