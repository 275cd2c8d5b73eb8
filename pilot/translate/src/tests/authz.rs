//! PeerAuthentication and AuthorizationPolicy on a sidecar's inbound chains.

use sextant_proto::envoy::config::listener::v3::FilterChain;
use sextant_proto::envoy::config::rbac::v3::rbac;
use sextant_proto::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;

use super::*;
use crate::WorkloadCertificate;

fn web() -> ProxyInfo {
    ProxyInfo {
        namespace: "shop".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        interception: Interception::Redirect,
        ..Default::default()
    }
}

/// virtualInbound of `web` with a (dummy) certificate, so it has its mTLS chain.
fn inbound(mesh: &MeshConfig) -> Listener {
    let cert = WorkloadCertificate {
        chain_pem: "chain",
        key_pem: "key",
        root_pem: "root",
    };
    let mtls = MeshTls {
        certificate: Some(cert),
        ..Default::default()
    };
    let s = translate(mesh, &registry(mesh), &web(), &mtls);
    get(&s, types::LISTENER, "virtualInbound")
}

fn filter_names(c: &FilterChain) -> Vec<&str> {
    c.filters.iter().map(|f| f.name.as_str()).collect()
}

fn tcp_cluster(c: &FilterChain) -> String {
    let f = c.filters.last().expect("a terminal filter");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no config")
    };
    match TcpProxy::decode(any.value.as_slice())
        .unwrap()
        .cluster_specifier
    {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn rbac_of(c: &FilterChain, i: usize) -> NetworkRbac {
    let Some(filter::ConfigType::TypedConfig(any)) = &c.filters[i].config_type else {
        panic!("no config")
    };
    NetworkRbac::decode(any.value.as_slice()).unwrap()
}

const PEER_STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n";

#[test]
fn strict_refuses_plain_text_and_keeps_mesh_tls() {
    let l = inbound(&yaml(PEER_STRICT));
    let plain = l.default_filter_chain.as_ref().unwrap();
    assert_eq!(tcp_cluster(plain), "BlackHoleCluster");
    let mtls = &l.filter_chains[0];
    assert_eq!(tcp_cluster(mtls), "InboundPassthroughCluster");
    // PERMISSIVE (no policy): plain text passes.
    let open = inbound(&yaml(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: x}\nspec: {}\n",
    ));
    assert_eq!(
        tcp_cluster(open.default_filter_chain.as_ref().unwrap()),
        "InboundPassthroughCluster"
    );
}

#[test]
fn port_level_modes_get_chains_of_their_own() {
    let l = inbound(&yaml(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {9000: {mode: PERMISSIVE}, 9443: {mode: DISABLE}}\n",
    ));
    let by_port = |p: u32| -> Vec<(bool, String)> {
        (l.filter_chains.iter())
            .filter(|c| {
                c.filter_chain_match
                    .as_ref()
                    .and_then(|m| m.destination_port)
                    .map(|v| v.value)
                    == Some(p)
            })
            .map(|c| (c.transport_socket.is_some(), tcp_cluster(c)))
            .collect()
    };
    assert_eq!(
        by_port(9000),
        [
            (true, "InboundPassthroughCluster".into()),
            (false, "InboundPassthroughCluster".into())
        ]
    );
    assert_eq!(by_port(9443), [(false, "InboundPassthroughCluster".into())]);
    assert_eq!(
        tcp_cluster(l.default_filter_chain.as_ref().unwrap()),
        "BlackHoleCluster"
    );
}

#[test]
fn authorization_policies_become_rbac_filters_deny_first() {
    let mesh = yaml(
        r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-front, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/front"]}}]
  - to: [{operation: {methods: [GET]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-ops, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from: [{source: {namespaces: ["ops"]}}]
    to: [{operation: {ports: ["9000"], paths: ["/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
"#,
    );
    let l = inbound(&mesh);
    for c in l.filter_chains.iter().chain(&l.default_filter_chain) {
        assert_eq!(
            filter_names(c),
            [
                "envoy.filters.network.rbac",
                "envoy.filters.network.rbac",
                "envoy.filters.network.tcp_proxy"
            ]
        );
    }
    let chain = &l.filter_chains[0];
    let deny = rbac_of(chain, 0).rules.unwrap();
    assert_eq!(deny.action, rbac::Action::Deny as i32);
    // The DENY rule's path (HTTP only) is dropped: it denies port 9000 to ops whatever the path.
    let names: Vec<&String> = deny.policies.keys().collect();
    assert_eq!(names, ["ns[istio-system]-policy[deny-ops]-rule[0]"]);
    let allow = rbac_of(chain, 1).rules.unwrap();
    assert_eq!(allow.action, rbac::Action::Allow as i32);
    // The ALLOW rule on a method (HTTP only) never matches TCP: only the principal rule remains.
    let names: Vec<&String> = allow.policies.keys().collect();
    assert_eq!(names, ["ns[shop]-policy[allow-front]-rule[0]"]);
    let text = format!("{:?}", allow.policies.values().next().unwrap());
    assert!(
        text.contains("spiffe://cluster.local/ns/shop/sa/front"),
        "{text}"
    );
    // The same rules encode to the same bytes every time (the policy map in name order).
    let again = inbound(&mesh);
    assert_eq!(l.encode_to_vec(), again.encode_to_vec());
}

#[test]
fn an_allow_policy_without_rules_allows_nothing() {
    let l = inbound(&yaml(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: nothing, namespace: shop}\nspec: {}\n",
    ));
    let chain = l.default_filter_chain.as_ref().unwrap();
    let allow = rbac_of(chain, 0).rules.unwrap();
    assert_eq!(
        (allow.action, allow.policies.len()),
        (rbac::Action::Allow as i32, 0)
    );
}

#[test]
fn http_ingress_ports_get_http_rbac_inside_their_connection_manager() {
    let mesh = yaml(
        r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web, namespace: shop}
spec:
  ingress: [{port: {number: 9080, protocol: HTTP}, defaultEndpoint: "127.0.0.1:8080"}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reads, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: [GET], paths: ["/api/*"], hosts: ["web.shop"]}}]
    when: [{key: "request.headers[X-Tenant]", values: ["acme"]}]
  - from: [{source: {requestPrincipals: ["*"]}}]
"#,
    );
    let l = inbound(&mesh);
    let chain = (l.filter_chains.iter())
        .find(|c| {
            c.filter_chain_match
                .as_ref()
                .and_then(|m| m.destination_port)
                .is_some()
        })
        .expect("the ingress port's chain");
    assert_eq!(
        filter_names(chain),
        ["envoy.filters.network.http_connection_manager"]
    );
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no config")
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[0], "envoy.filters.http.rbac");
    assert_eq!(names.last(), Some(&"envoy.filters.http.router"));
    let Some(sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(rbac)) = &hcm.http_filters[0].config_type else {
        panic!("no rbac config")
    };
    let rules = sextant_proto::envoy::extensions::filters::http::rbac::v3::Rbac::decode(
        rbac.value.as_slice(),
    )
    .unwrap()
    .rules
    .unwrap();
    assert_eq!(rules.policies.len(), 2);
    let text = format!("{:?}", rules.policies["ns[shop]-policy[reads]-rule[0]"]);
    for want in [
        "\":method\"",
        "\":authority\"",
        "Exact(\"web.shop\")",
        "Prefix(\"web.shop:\")",
        "Prefix(\"/api/\")",
        "\"x-tenant\"",
        "Exact(\"acme\")",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    // The TCP chains keep network RBAC, where the HTTP-only ALLOW rules match nothing.
    let plain = l.default_filter_chain.as_ref().unwrap();
    let allow = rbac_of(plain, 0).rules.unwrap();
    assert_eq!(allow.policies.len(), 0);
}
