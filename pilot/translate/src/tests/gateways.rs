//! Router proxies: gateway listeners, their routes, server TLS, and DestinationRule TLS on clusters.

use sextant_proto::envoy::config::core::v3::TransportSocket;
use sextant_proto::envoy::config::route::v3::virtual_host;
use sextant_proto::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, UpstreamTlsContext, common_tls_context,
};

use super::*;

fn router(labels: &[(&str, &str)]) -> ProxyInfo {
    ProxyInfo {
        id: "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local".into(),
        namespace: "istio-system".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind: ProxyKind::Router,
        ..Default::default()
    }
}

fn ingress() -> ProxyInfo {
    router(&[("istio", "ingressgateway")])
}

fn hcm(l: &Listener, chain: usize) -> HttpConnectionManager {
    let f = &l.filter_chains[chain].filters[0];
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("{f:?}")
    };
    HttpConnectionManager::decode(any.value.as_slice()).expect("hcm")
}

fn rds(h: &HttpConnectionManager) -> String {
    match &h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(r)) => r.route_config_name.clone(),
        other => panic!("{other:?}"),
    }
}

fn domains(s: &Snapshot, route: &str) -> Vec<(String, Vec<String>)> {
    let rc: RouteConfiguration = get(s, types::ROUTE, route);
    rc.virtual_hosts
        .into_iter()
        .map(|v| (v.name, v.domains))
        .collect()
}

fn downstream(t: &TransportSocket) -> DownstreamTlsContext {
    let Some(sextant_proto::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(a)) =
        &t.config_type
    else {
        panic!("{t:?}")
    };
    DownstreamTlsContext::decode(a.value.as_slice()).expect("downstream tls")
}

#[test]
fn bookinfo_gateway_routes_productpage_paths_at_the_ingress_only() {
    let mesh = bookinfo("bookinfo-gateway.yaml");
    let s = snap(&mesh, &ingress());
    // No sidecar listeners (15001/15006, per-service ports) and no InboundPassthroughCluster.
    assert_eq!(names(&s, types::LISTENER), ["0.0.0.0_8080"]);
    assert_eq!(names(&s, types::ROUTE), ["http.8080"]);
    assert!(!names(&s, types::CLUSTER).contains(&"InboundPassthroughCluster".to_string()));
    assert!(
        names(&s, types::CLUSTER)
            .contains(&"outbound|9080||productpage.default.svc.cluster.local".to_string())
    );
    let l: Listener = get(&s, types::LISTENER, "0.0.0.0_8080");
    assert!(format!("{:?}", l.address).contains("0.0.0.0"));
    assert_eq!(l.bind_to_port, None, "the gateway binds its port");
    let h = hcm(&l, 0);
    assert_eq!(rds(&h), "http.8080");
    assert_eq!(h.use_remote_address.map(|b| b.value), Some(true));
    let rc: RouteConfiguration = get(&s, types::ROUTE, "http.8080");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    let paths: Vec<String> = vh
        .routes
        .iter()
        .map(|r| format!("{:?}", r.r#match.as_ref().unwrap().path_specifier))
        .collect();
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths[0].contains("/productpage"));
    assert_eq!(
        weights(action(&vh.routes[0])),
        [(
            "outbound|9080||productpage.default.svc.cluster.local".to_string(),
            100
        )]
    );

    // A router the selector does not pick gets no gateway listeners; neither does a sidecar.
    let other = snap(&mesh, &router(&[("istio", "egressgateway")]));
    assert!(names(&other, types::LISTENER).is_empty());
    assert!(names(&other, types::ROUTE).is_empty());
    let sidecar = snap(&mesh, &proxy(Interception::None));
    assert!(!names(&sidecar, types::LISTENER).contains(&"0.0.0.0_8080".to_string()));
}

const GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/shop.example.com", "default/*.internal.example.com", "./ops.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https-shop, protocol: HTTPS}
    hosts: ["*/shop.example.com"]
    tls: {mode: SIMPLE, serverCertificate: /certs/shop.pem, privateKey: /certs/shop.key}
  - port: {number: 443, name: https-any, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: /certs/any.pem, privateKey: /certs/any.key, caCertificates: /certs/ca.pem}
  - port: {number: 8443, name: https-bound, protocol: HTTPS}
    bind: 127.0.0.1
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: /certs/any.pem, privateKey: /certs/any.key}
  - port: {number: 15443, name: https-mesh, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.example.com, "*.internal.example.com", ops.example.com]
  gateways: [istio-system/edge]
  http:
  - route: [{destination: {host: web.default.svc.cluster.local, port: {number: 8080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed, namespace: default}
spec:
  hosts: [api.internal.example.com]
  gateways: [mesh]
  http:
  - name: at-edge
    match: [{uri: {prefix: /v1}, gateways: [istio-system/edge]}]
    route: [{destination: {host: web.default.svc.cluster.local, port: {number: 8080}}}]
  - name: sidecars
    route: [{destination: {host: web.default.svc.cluster.local, port: {number: 8080}}}]
"#;

#[test]
fn servers_hosts_namespaces_redirects_and_tls() {
    let mesh = yaml(&format!("{}---\n{GATEWAYS}", super::rules::SERVICES));
    let s = snap(&mesh, &ingress());
    assert_eq!(
        names(&s, types::LISTENER),
        [
            "0.0.0.0_15443",
            "0.0.0.0_443",
            "0.0.0.0_80",
            "127.0.0.1_8443"
        ]
    );

    // HTTP on 80: the server's hosts filter the VirtualService's; `ops` is admitted only from the
    // gateway's own namespace (istio-system), so the default-namespace VirtualService does not get it.
    let d = domains(&s, "http.80");
    assert_eq!(
        d[0],
        (
            "default/shop:shop.example.com".to_string(),
            vec![
                "shop.example.com".to_string(),
                "*.internal.example.com".to_string()
            ]
        )
    );
    // A match bound to the gateway brings its VirtualService in, with only that route.
    assert_eq!(d[1].1, ["api.internal.example.com"]);
    let rc: RouteConfiguration = get(&s, types::ROUTE, "http.80");
    let mixed: Vec<&str> = rc.virtual_hosts[1]
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(mixed, ["at-edge"]);
    assert!(
        rc.virtual_hosts
            .iter()
            .all(|v| v.require_tls == virtual_host::TlsRequirementType::All as i32),
        "httpsRedirect"
    );

    // HTTPS on 443: one chain per server, by SNI, each terminating with its own certificate.
    let l: Listener = get(&s, types::LISTENER, "0.0.0.0_443");
    assert_eq!(
        l.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    assert_eq!(l.filter_chains.len(), 2);
    let sni = l.filter_chains[0].filter_chain_match.as_ref().unwrap();
    assert_eq!(sni.server_names, ["shop.example.com"]);
    assert!(
        l.filter_chains[1].filter_chain_match.is_none(),
        "`*`: any SNI"
    );
    let shop = downstream(l.filter_chains[0].transport_socket.as_ref().unwrap());
    let common = shop.common_tls_context.unwrap();
    assert!(format!("{:?}", common.tls_certificates).contains("/certs/shop.pem"));
    assert!(common.validation_context_type.is_none());
    assert_eq!(shop.require_client_certificate, None);
    let any = downstream(l.filter_chains[1].transport_socket.as_ref().unwrap());
    assert_eq!(any.require_client_certificate.map(|b| b.value), Some(true));
    assert!(matches!(
        any.common_tls_context.unwrap().validation_context_type,
        Some(common_tls_context::ValidationContextType::ValidationContext(v))
            if format!("{:?}", v.trusted_ca).contains("/certs/ca.pem")
    ));
    assert_eq!(rds(&hcm(&l, 0)), "https.443.https-shop.edge.istio-system");
    assert_eq!(
        domains(&s, "https.443.https-shop.edge.istio-system")[0].1,
        ["shop.example.com"]
    );
    assert_eq!(rds(&hcm(&l, 1)), "https.443.https-any.edge.istio-system");
    let bound: Listener = get(&s, types::LISTENER, "127.0.0.1_8443");
    assert!(format!("{:?}", bound.address).contains("127.0.0.1"));

    // ISTIO_MUTUAL: the gateway's own mesh certificate (SDS), and a mesh client certificate required.
    let mesh_port: Listener = get(&s, types::LISTENER, "0.0.0.0_15443");
    let m = downstream(
        mesh_port.filter_chains[0]
            .transport_socket
            .as_ref()
            .unwrap(),
    );
    assert_eq!(m.require_client_certificate.map(|b| b.value), Some(true));
    let common = m.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert!(matches!(
        common.validation_context_type,
        Some(common_tls_context::ValidationContextType::CombinedValidationContext(v))
            if v.validation_context_sds_secret_config.as_ref().is_some_and(|c| c.name == "ROOTCA")
    ));
}

#[test]
fn the_routers_own_service_maps_server_ports_to_listening_ports() {
    let own = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ingress, namespace: istio-system}
spec:
  hosts: [istio-ingressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints:
  - {address: 10.0.0.9, ports: {http: 18080}, labels: {istio: ingressgateway}}
"#;
    let mesh = yaml(&format!(
        "{}---\n{}---\n{own}",
        std::fs::read_to_string(fixtures().join("services.yaml")).unwrap(),
        std::fs::read_to_string(fixtures().join("bookinfo-gateway.yaml")).unwrap()
    ));
    let s = snap(&mesh, &ingress());
    assert_eq!(names(&s, types::LISTENER), ["0.0.0.0_18080"]);
    assert_eq!(
        names(&s, types::ROUTE),
        ["http.8080"],
        "named as Istio names it"
    );
}

#[test]
fn destination_rule_tls_becomes_the_clusters_transport_socket() {
    let rules = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /certs/ca.pem, sni: web.example.com, subjectAltNames: [web.example.com]}
    portLevelSettings:
    - port: {number: 9090}
      tls: {mode: MUTUAL, clientCertificate: /certs/c.pem, privateKey: /certs/c.key}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy: {tls: {mode: DISABLE}}
"#;
    let mesh = yaml(&format!("{}---\n{rules}", super::rules::SERVICES));
    let s = snap(&mesh, &proxy(Interception::None));
    let upstream = |name: &str| -> Option<UpstreamTlsContext> {
        let c: Cluster = get(&s, types::CLUSTER, name);
        let t = c.transport_socket?;
        assert_eq!(t.name, "envoy.transport_sockets.tls");
        let Some(
            sextant_proto::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(a),
        ) = t.config_type
        else {
            panic!("typed")
        };
        Some(UpstreamTlsContext::decode(a.value.as_slice()).expect("upstream tls"))
    };
    let simple = upstream("outbound|8080||web.default.svc.cluster.local").expect("tls");
    assert_eq!(simple.sni, "web.example.com");
    let common = simple.common_tls_context.unwrap();
    assert!(common.tls_certificates.is_empty());
    let Some(common_tls_context::ValidationContextType::ValidationContext(v)) =
        common.validation_context_type
    else {
        panic!("validation")
    };
    assert!(format!("{:?}", v.trusted_ca).contains("/certs/ca.pem"));
    assert!(format!("{:?}", v.match_typed_subject_alt_names).contains("web.example.com"));
    // Per port: MUTUAL with the client certificate, the system bundle as CA, the host as SNI.
    let mutual = upstream("outbound|9090||web.default.svc.cluster.local").expect("tls");
    assert_eq!(mutual.sni, "web.default.svc.cluster.local");
    let common = mutual.common_tls_context.unwrap();
    assert!(format!("{:?}", common.tls_certificates).contains("/certs/c.pem"));
    assert!(format!("{:?}", common.validation_context_type).contains(crate::tls::SYSTEM_CA_BUNDLE));
    // Per subset: DISABLE.
    assert!(upstream("outbound|8080|v2|web.default.svc.cluster.local").is_none());
    assert!(upstream("outbound|3306||db.default.svc.cluster.local").is_none());
    // Proxyless gRPC clients take no file-based certificates.
    let mut grpc = proxy(Interception::None);
    grpc.kind = ProxyKind::ProxylessGrpc;
    let g = snap(&mesh, &grpc);
    let c: Cluster = get(
        &g,
        types::CLUSTER,
        "outbound|9090||web.default.svc.cluster.local",
    );
    assert!(c.transport_socket.is_none());
}
