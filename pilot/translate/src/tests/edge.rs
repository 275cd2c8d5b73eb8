//! Less travelled paths: DNS and passthrough services, CORS, gateway-only VirtualServices.

use super::*;

#[test]
fn dns_and_passthrough_services_get_no_eds_and_stay_consistent() {
    let mesh = yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: anything, namespace: default}
spec:
  hosts: [anything.example.com]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 8443, name: tls}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 7070, name: http}]
  endpoints: [{address: 10.0.3.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: legacy, namespace: default}
spec:
  host: legacy
  trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}
"#,
    );
    let s = snap(&mesh, &proxy(Interception::Redirect));
    let dns: Cluster = get(&s, types::CLUSTER, "outbound|80||httpbin.org");
    assert_eq!(
        dns.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    assert!(format!("{:?}", dns.load_assignment).contains("httpbin.org"));
    for name in [
        "outbound|8443||anything.example.com",
        "outbound|7070||legacy.default.svc.cluster.local",
    ] {
        let c: Cluster = get(&s, types::CLUSTER, name);
        assert_eq!(
            c.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::OriginalDst as i32
            )),
            "{name}"
        );
        assert_eq!(c.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
    }
    assert!(names(&s, types::ENDPOINT).is_empty(), "no EDS cluster here");
    assert_eq!(
        names(&s, types::LISTENER).len(),
        2 + 3,
        "three ports and the capture listeners"
    );
}

#[test]
fn cors_policies_reach_the_cors_filter_per_route() {
    use sextant_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    let mesh = yaml(&format!(
        "{}---\n{}",
        super::rules::SERVICES,
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}, {regex: "https://.*\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-user]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: web}}]
"#
    ));
    let s = snap(&mesh, &proxy(Interception::None));
    let r = &vhost(&s, "8080", "web.default.svc.cluster.local").routes[0];
    let any = r
        .typed_per_filter_config
        .get("envoy.filters.http.cors")
        .expect("a CORS policy");
    let c = CorsPolicy::decode(any.value.as_slice()).expect("decodes");
    assert_eq!(c.allow_origin_string_match.len(), 2);
    assert_eq!(c.allow_methods, "GET,POST");
    assert_eq!(c.max_age, "86400");
    assert_eq!(c.allow_credentials.map(|b| b.value), Some(true));
    // Proxyless gRPC clients know no CORS filter: their routes carry none.
    let mut grpc = proxy(Interception::None);
    grpc.kind = ProxyKind::ProxylessGrpc;
    let s = snap(&mesh, &grpc);
    let r = &vhost(&s, "8080", "web.default.svc.cluster.local").routes[0];
    assert!(r.typed_per_filter_config.is_empty());
}

#[test]
fn gateway_only_virtual_services_do_not_route_sidecars() {
    // bookinfo-gateway.yaml routes `*` at the ingress gateway only.
    let mesh = bookinfo("bookinfo-gateway.yaml");
    let s = snap(&mesh, &proxy(Interception::None));
    let vh = vhost(&s, "9080", "productpage.default.svc.cluster.local");
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(vh.routes[0].name, "default");
    // A match bound to a gateway does not apply at sidecars; the rest of the route does.
    let mesh = yaml(&format!(
        "{}---\n{}",
        super::rules::SERVICES,
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web]
  gateways: [mesh, edge]
  http:
  - name: edge-only
    match: [{uri: {prefix: /admin}, gateways: [edge]}]
    route: [{destination: {host: web}}]
  - name: everyone
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#
    ));
    let s = snap(&mesh, &proxy(Interception::None));
    let names: Vec<String> = vhost(&s, "8080", "web.default.svc.cluster.local")
        .routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, ["everyone"]);
}
