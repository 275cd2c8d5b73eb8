//! The Sidecar resource: which one applies, what it imports, where unknown hosts go, and its ingress ports.

use super::*;

/// Services in three namespaces; `front` routes `pay.shop` through a VirtualService in `shop` to `ledger`.
const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pay, namespace: shop}
spec:
  hosts: [pay.shop.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http}, {number: 5432, name: tcp-db}]
  endpoints: [{address: 10.0.0.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: bank}
spec:
  hosts: [ledger.bank.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.1.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: audit, namespace: bank}
spec:
  hosts: [audit.bank.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9000, name: tcp}]
  endpoints: [{address: 10.0.1.2}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pay, namespace: shop}
spec:
  hosts: [pay.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: ledger.bank.svc.cluster.local}}]
"#;

fn in_namespace(ns: &str, labels: &[(&str, &str)]) -> ProxyInfo {
    ProxyInfo {
        namespace: ns.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn service_clusters(s: &Snapshot) -> Vec<String> {
    names(s, types::CLUSTER)
        .into_iter()
        .filter(|n| n.starts_with("outbound|"))
        .collect()
}

fn default_chain_cluster(l: &Listener) -> String {
    let chain = l.default_filter_chain.as_ref().expect("a default chain");
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no config");
    };
    match TcpProxy::decode(any.value.as_slice())
        .expect("tcp proxy")
        .cluster_specifier
    {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_a_sidecar_a_proxy_gets_everything_exported_to_it() {
    let mesh = yaml(MESH);
    let s = snap(&mesh, &in_namespace("shop", &[]));
    assert_eq!(service_clusters(&s).len(), 5);
}

#[test]
fn a_namespace_sidecar_imports_its_hosts_and_what_their_routes_reach() {
    let mesh = yaml(&format!(
        "{MESH}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec:\n  egress: [{{hosts: [\"./pay.shop.svc.cluster.local\"]}}]\n"
    ));
    let s = snap(&mesh, &in_namespace("shop", &[]));
    // pay's ports, and ledger because pay's VirtualService routes there; not cart, not audit.
    assert_eq!(
        service_clusters(&s),
        [
            "outbound|5432||pay.shop.svc.cluster.local",
            "outbound|8080||ledger.bank.svc.cluster.local",
            "outbound|8080||pay.shop.svc.cluster.local",
        ]
    );
    assert_eq!(
        names(&s, types::LISTENER),
        [
            "0.0.0.0_5432",
            "0.0.0.0_8080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let rc: RouteConfiguration = get(&s, types::ROUTE, "8080");
    let hosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "ledger.bank.svc.cluster.local:8080",
            "pay.shop.svc.cluster.local:8080",
            "allow_any"
        ]
    );
    // Another namespace without a Sidecar of its own (and no root default) still sees everything.
    assert_eq!(
        service_clusters(&snap(&mesh, &in_namespace("bank", &[]))).len(),
        5
    );
}

#[test]
fn selector_beats_namespace_default_which_beats_the_root_default() {
    let mesh = yaml(&format!(
        r#"{MESH}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: mesh-default, namespace: istio-system}}
spec:
  egress: [{{hosts: ["./*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  egress: [{{hosts: ["bank/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: cart, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: cart}}}}
  egress: [{{hosts: ["shop/cart.shop.svc.cluster.local"]}}]
"#
    ));
    let cart = snap(&mesh, &in_namespace("shop", &[("app", "cart")]));
    assert_eq!(
        service_clusters(&cart),
        ["outbound|8080||cart.shop.svc.cluster.local"]
    );
    let other = snap(&mesh, &in_namespace("shop", &[("app", "web")]));
    assert_eq!(
        service_clusters(&other),
        [
            "outbound|8080||ledger.bank.svc.cluster.local",
            "outbound|9000||audit.bank.svc.cluster.local"
        ]
    );
    // The root namespace's default, with "." standing for the proxy's own namespace.
    let bank = snap(&mesh, &in_namespace("bank", &[]));
    assert_eq!(
        service_clusters(&bank),
        [
            "outbound|8080||ledger.bank.svc.cluster.local",
            "outbound|9000||audit.bank.svc.cluster.local"
        ]
    );
    // Routers are never scoped.
    let mut gateway = in_namespace("shop", &[]);
    gateway.kind = ProxyKind::Router;
    assert_eq!(service_clusters(&snap(&mesh, &gateway)).len(), 5);
}

#[test]
fn registry_only_sends_unknown_hosts_to_the_black_hole() {
    let mesh = yaml(&format!(
        "{MESH}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec:\n  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}\n"
    ));
    let s = snap(&mesh, &in_namespace("shop", &[]));
    assert_eq!(service_clusters(&s).len(), 5, "no egress: everything");
    let out: Listener = get(&s, types::LISTENER, "virtualOutbound");
    assert_eq!(default_chain_cluster(&out), "BlackHoleCluster");
    let rc: RouteConfiguration = get(&s, types::ROUTE, "8080");
    let last = rc.virtual_hosts.last().expect("a catch-all");
    assert_eq!(
        (last.name.as_str(), last.domains.as_slice()),
        ("block_all", &["*".to_string()][..])
    );
    match &last.routes[0].action {
        Some(route::Action::DirectResponse(d)) => assert_eq!(d.status, 502),
        other => panic!("{other:?}"),
    }
    let allow = snap(&mesh, &in_namespace("bank", &[]));
    let out: Listener = get(&allow, types::LISTENER, "virtualOutbound");
    assert_eq!(default_chain_cluster(&out), "PassthroughCluster");
}

#[test]
fn egress_ports_choose_their_own_imports_and_binding() {
    let mesh = yaml(&format!(
        r#"{MESH}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  egress:
  - port: {{number: 8080, protocol: HTTP}}
    captureMode: NONE
    bind: 127.0.0.2
    hosts: ["shop/cart.shop.svc.cluster.local"]
  - hosts: ["*/*"]
"#
    ));
    let s = snap(&mesh, &in_namespace("shop", &[]));
    assert_eq!(
        names(&s, types::LISTENER),
        [
            "0.0.0.0_5432",
            "0.0.0.0_9000",
            "127.0.0.2_8080",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let l: Listener = get(&s, types::LISTENER, "127.0.0.2_8080");
    assert_eq!(l.bind_to_port, None, "bound by the proxy itself");
    // Port 8080 serves only what its listener imports, but every import has its clusters.
    let rc: RouteConfiguration = get(&s, types::ROUTE, "8080");
    let hosts: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(hosts, ["cart.shop.svc.cluster.local:8080", "allow_any"]);
    assert_eq!(service_clusters(&s).len(), 5);
}

#[test]
fn ingress_ports_reach_the_workload_by_destination_port_or_their_own_listener() {
    let mesh = yaml(&format!(
        r#"{MESH}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: web}}
    defaultEndpoint: 127.0.0.1:8080
  - port: {{number: 9443, protocol: TCP}}
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:8443
"#
    ));
    let s = snap(&mesh, &in_namespace("shop", &[]));
    let c: Cluster = get(&s, types::CLUSTER, "inbound|9080||");
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    assert_eq!(ports_of(c.load_assignment.as_ref().unwrap()), [8080]);
    let inbound: Listener = get(&s, types::LISTENER, "virtualInbound");
    let by_port: Vec<u32> = (inbound.filter_chains.iter())
        .filter_map(|c| {
            c.filter_chain_match
                .as_ref()?
                .destination_port
                .map(|p| p.value)
        })
        .collect();
    assert_eq!(by_port, [9080]);
    let rc: RouteConfiguration = get(&s, types::ROUTE, "inbound|9080||");
    assert_eq!(
        weights(action(&rc.virtual_hosts[0].routes[0])),
        [("inbound|9080||".to_string(), 100)]
    );
    let own: Listener = get(&s, types::LISTENER, "inbound_0.0.0.0_9443");
    assert!(format!("{:?}", own.address).contains("9443"));
    assert_eq!(own.bind_to_port, None);
    let c: Cluster = get(&s, types::CLUSTER, "inbound|9443||");
    assert_eq!(ports_of(c.load_assignment.as_ref().unwrap()), [8443]);
}

#[test]
fn a_workloads_own_http_ports_are_http_chains_of_virtual_inbound() {
    let mesh = yaml(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web.shop.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 80, name: http}, {number: 5432, name: tcp-db}]\n  endpoints: [{address: 10.0.0.7, ports: {http: 8080}, labels: {app: web}}]\n",
    );
    let mut web = in_namespace("shop", &[("app", "web"), ("version", "v1")]);
    web.interception = Interception::Redirect;
    let s = snap(&mesh, &web);
    let inbound: Listener = get(&s, types::LISTENER, "virtualInbound");
    let by_port: Vec<u32> = (inbound.filter_chains.iter())
        .filter_map(|c| {
            c.filter_chain_match
                .as_ref()?
                .destination_port
                .map(|p| p.value)
        })
        .collect();
    assert_eq!(
        by_port,
        [8080],
        "the HTTP port only, at the endpoint's port"
    );
    let rc: RouteConfiguration = get(&s, types::ROUTE, "inbound|8080||");
    assert_eq!(
        weights(action(&rc.virtual_hosts[0].routes[0])),
        [("InboundPassthroughCluster".to_string(), 100)]
    );
    // Another workload of the namespace is not web.
    let other = snap(&mesh, &in_namespace("shop", &[("app", "db")]));
    let inbound: Listener = get(&other, types::LISTENER, "virtualInbound");
    assert!(inbound.filter_chains.is_empty());
}
