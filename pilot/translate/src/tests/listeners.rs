//! Listeners per interception mode and proxy kind, and proxy identity.

use super::rules::SERVICES;
use super::*;

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

#[test]
fn a_port_of_undeclared_protocol_is_sniffed() {
    let mesh = yaml(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web}\nspec:\n  hosts: [web.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8000, name: web}]\n  endpoints: [{address: 10.0.0.1}]\n",
    );
    let s = snap(&mesh, &proxy(Interception::Redirect));
    let l: Listener = get(&s, types::LISTENER, "0.0.0.0_8000");
    let inspectors: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(inspectors, ["envoy.filters.listener.http_inspector"]);
    assert_eq!(
        l.listener_filters_timeout,
        Some(Default::default()),
        "no timeout, as Istio"
    );
    let http = &l.filter_chains[0];
    let m = http.filter_chain_match.as_ref().unwrap();
    assert_eq!(
        (
            m.transport_protocol.as_str(),
            m.application_protocols.as_slice()
        ),
        (
            "raw_buffer",
            &["http/1.0".to_string(), "http/1.1".into(), "h2c".into()][..]
        )
    );
    assert_eq!(rds(&hcm_of(&l)), "8000");
    let tcp = l
        .default_filter_chain
        .as_ref()
        .expect("TCP as the default chain");
    assert_eq!(tcp.filters[0].name, "envoy.filters.network.tcp_proxy");
    // Its routes name the service, as for a declared HTTP port.
    let rc: RouteConfiguration = get(&s, types::ROUTE, "8000");
    assert!(
        rc.virtual_hosts
            .iter()
            .any(|v| v.name == "web.default.svc.cluster.local:8000")
    );
}
