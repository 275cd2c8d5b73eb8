use std::path::PathBuf;

use sextant_resources::ConfigFiles;

use crate::{Matcher, MeshConfig, NetworkingSet, validate};

const BASE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

fn check(text: &str) -> Result<MeshConfig, String> {
    let files = ConfigFiles::from_texts(vec![
        (PathBuf::from("base.yaml"), BASE.to_string()),
        (PathBuf::from("t.yaml"), text.to_string()),
    ]);
    let set = NetworkingSet::load(&files).map_err(|e| e.to_string())?;
    validate(&set).map_err(|e| e.to_string())
}

#[track_caller]
fn refused(text: &str, want: &str) {
    match check(text) {
        Ok(_) => panic!("accepted, expected {want:?}"),
        Err(msg) => assert!(msg.contains(want), "expected {want:?} in:\n{msg}"),
    }
}

fn vs(http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  http:\n{http}"
    )
}

#[test]
fn a_valid_route_resolves_hosts_subsets_and_regexes() {
    let mesh = check(&vs("  - match:
    - uri: {regex: '/api/v[0-9]+/.*'}
      headers: {end-user: {exact: jason}, x-canary: {}}
    route:
    - destination: {host: reviews, subset: v2}
      weight: 25
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 75
    timeout: 0.5s
    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: '5xx,connect-failure,503'}
"))
    .unwrap();
    let vs = &mesh.virtual_services[0];
    assert_eq!(vs.hosts, ["reviews.default.svc.cluster.local"]);
    assert_eq!(vs.gateways, ["mesh"]);
    let route = &vs.http[0];
    assert_eq!(route.destinations[0].labels["version"], "v2");
    assert_eq!(route.destinations[1].port, Some(9080));
    assert_eq!(
        route.spec.timeout.map(|d| d.get()),
        Some(std::time::Duration::from_millis(500))
    );
    let m = &route.matches[0];
    let uri = m.uri.as_ref().unwrap();
    assert!(
        uri.matches("/api/v2/reviews") && !uri.matches("/x/api/v2/"),
        "anchored"
    );
    assert_eq!(m.headers[1], ("x-canary".to_string(), Matcher::Present));
    assert_eq!(
        mesh.virtual_services_for("reviews.default.svc.cluster.local", "default")
            .len(),
        1
    );
}

#[test]
fn unknown_subset() {
    refused(
        &vs("  - route:\n    - destination: {host: reviews, subset: v3}\n"),
        "t.yaml:8: VirtualService default/r: spec.http[0].route[0].destination.subset: unknown subset \"v3\" of host reviews.default.svc.cluster.local; DestinationRule default/reviews defines v1, v2",
    );
    refused(
        &vs("  - route:\n    - destination: {host: '*.example.com'}\n"),
        "spec.http[0].route[0].destination.host: \"*.example.com\": a destination names one service, not a wildcard",
    );
    refused(
        &vs("  - route:\n    - destination: {host: ratings, subset: v1}\n"),
        "unknown subset \"v1\": no DestinationRule defines subsets of host ratings.default.svc.cluster.local",
    );
}

#[test]
fn bad_regex_names_re2() {
    refused(
        &vs(
            "  - match:\n    - uri:\n        regex: '/(a'\n    route:\n    - destination: {host: reviews}\n",
        ),
        "t.yaml:9: VirtualService default/r: spec.http[0].match[0].uri.regex: invalid regex \"/(a\" (RE2 syntax): unclosed group",
    );
}

#[test]
fn weights_must_sum_to_100() {
    refused(
        &vs(
            "  - route:\n    - destination: {host: reviews, subset: v1}\n      weight: 90\n    - destination: {host: reviews, subset: v2}\n      weight: 20\n",
        ),
        "t.yaml:7: VirtualService default/r: spec.http[0].route: route weights sum to 110, not 100 (v1: 90, v2: 20)",
    );
    refused(
        &vs("  - route:\n    - destination: {host: reviews}\n      weight: 50\n"),
        "route weights sum to 50, not 100",
    );
    // Two destinations without weights: Istio reads missing weights as 0.
    refused(
        &vs(
            "  - route:\n    - destination: {host: reviews, subset: v1}\n    - destination: {host: reviews, subset: v2}\n",
        ),
        "route weights sum to 0, not 100",
    );
}

#[test]
fn ports_out_of_range() {
    refused(
        &vs("  - route:\n    - destination: {host: reviews, port: {number: 70000}}\n"),
        "spec.http[0].route[0].destination.port.number: port 70000 is out of range 1-65535",
    );
    refused(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 0, protocol: HTTP}\n    hosts: ['*']\n",
        "t.yaml:6: Gateway default/g: spec.servers[0].port.number: port 0 is out of range 1-65535",
    );
}

#[test]
fn duplicate_names_inside_resources() {
    refused(
        &vs(
            "  - name: a\n    route: [{destination: {host: reviews}}]\n  - name: a\n    route: [{destination: {host: reviews}}]\n",
        ),
        "t.yaml:9: VirtualService default/r: spec.http[1].name: duplicate route name \"a\" (first at spec.http[0].name)",
    );
    refused(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n",
        "spec.subsets[1].name: duplicate subset \"v1\"",
    );
    refused(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: other}\nspec: {host: reviews.default.svc.cluster.local}\n",
        "t.yaml:4: DestinationRule default/other: spec.host: host reviews.default.svc.cluster.local already has DestinationRule default/reviews (at base.yaml:5)",
    );
}

#[test]
fn subset_without_labels() {
    refused(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  subsets:\n  - name: v1\n",
        "t.yaml:7: DestinationRule default/d: spec.subsets[0].labels: subset \"v1\" has no labels",
    );
}

#[test]
fn traffic_policies() {
    refused(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x-user, useSourceIp: true}\n    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 150}\n    tls: {mode: MUTUAL}\n",
        "spec.trafficPolicy.loadBalancer.consistentHash: set exactly one of",
    );
    let err = check("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 150}\n    tls: {mode: MUTUAL}\n").unwrap_err();
    assert!(
        err.contains(
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 is not a percentage"
        ),
        "{err}"
    );
    assert!(
        err.contains("spec.trafficPolicy.tls: mode MUTUAL needs clientCertificate"),
        "{err}"
    );
    let ok = check("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  trafficPolicy:\n    loadBalancer: {simple: LEAST_REQUEST}\n    connectionPool:\n      tcp: {maxConnections: 100, connectTimeout: 30ms}\n      http: {http1MaxPendingRequests: 10, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 1m}\n    outlierDetection: {consecutive5xxErrors: 5, consecutiveGatewayErrors: 3, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}\n    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, sni: details.example.com}\n    portLevelSettings:\n    - port: {number: 9080}\n      loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}\n").unwrap();
    let tp = ok.destination_rules["details.default.svc.cluster.local"]
        .resource
        .spec
        .traffic_policy
        .clone()
        .unwrap();
    let http = tp.connection_pool.unwrap().http.unwrap();
    assert_eq!(http.http1_max_pending_requests, Some(10));
    assert_eq!(
        tp.outlier_detection.unwrap().consecutive_5xx_errors,
        Some(5)
    );
}

#[test]
fn static_service_entry_needs_endpoints() {
    refused(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp-pg}]\n  resolution: STATIC\n",
        "t.yaml:7: ServiceEntry default/s: spec.resolution: resolution STATIC needs endpoints or a workloadSelector",
    );
    refused(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp-pg, protocol: SCTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: db.internal, ports: {pg: 5433}}\n",
        "spec.ports[0].protocol: unknown protocol \"SCTP\"",
    );
    let err = check("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [db.example.com]\n  ports: [{number: 5432, name: tcp-pg}]\n  resolution: STATIC\n  endpoints:\n  - {address: db.internal, ports: {pg: 5433}}\n").unwrap_err();
    assert!(err.contains("t.yaml:9: ServiceEntry default/s: spec.endpoints[0].address: \"db.internal\" is not an IP address"), "{err}");
    assert!(
        err.contains("spec.endpoints[0].ports.pg: \"pg\" is not the name of a port"),
        "{err}"
    );
}

#[test]
fn faults_percentages_and_statuses() {
    let err = check(&vs("  - fault:\n      abort: {httpStatus: 700, percentage: {value: 150}}\n    mirror: {host: reviews, subset: v9}\n    mirrorPercentage: {value: -1}\n    route: [{destination: {host: reviews}}]\n")).unwrap_err();
    for want in [
        "spec.http[0].fault.abort.httpStatus: 700 is not an HTTP status",
        "spec.http[0].fault.abort.percentage.value: 150 is not a percentage",
        "spec.http[0].mirror.subset: unknown subset \"v9\"",
        "spec.http[0].mirrorPercentage.value: -1 is not a percentage",
    ] {
        assert!(err.contains(want), "{want} in\n{err}");
    }
}

#[test]
fn header_names_gateways_retry_conditions_and_matches() {
    let err = check(&vs("  - match:\n    - headers: {End-User: {exact: jason}}\n      uri: {exact: /a, prefix: /b}\n      gateways: [nowhere]\n    retries: {attempts: 2, retryOn: 'sometimes'}\n    route: [{destination: {host: reviews}}]\n")).unwrap_err();
    for want in [
        "spec.http[0].match[0].headers.End-User: header name \"End-User\" must be non-empty lower case",
        "spec.http[0].match[0].uri: set only one of exact, prefix and regex",
        "spec.http[0].match[0].gateways[0]: unknown gateway default/nowhere; gateways defined: none",
        "spec.http[0].retries.retryOn: unknown retry condition \"sometimes\"",
    ] {
        assert!(err.contains(want), "{want} in\n{err}");
    }
    refused(
        &vs("  - {}\n"),
        "spec.http[0]: a route needs route (destinations) or redirect",
    );
}

#[test]
fn tcp_routes() {
    let mesh = check("apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [mongo.example.com]\n  tcp:\n  - match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: mongo.example.com, port: {number: 27017}}}]\n").unwrap();
    let t = &mesh.virtual_services[0].tcp[0];
    assert_eq!(t.destinations[0].weight, 100);
    assert_eq!(t.destinations[0].host, "mongo.example.com");
    refused(
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: db}\nspec:\n  hosts: [mongo.example.com]\n  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/40]}]\n    route: [{destination: {host: mongo.example.com}}]\n",
        "spec.tcp[0].match[0].destinationSubnets[0]: \"10.0.0.0/40\": prefix length must be 0-32",
    );
}

#[test]
fn export_to_values() {
    refused(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: details\n  exportTo: ['.', '*', prod, 'Not A Namespace']\n",
        "t.yaml:6: DestinationRule default/d: spec.exportTo[3]: \"Not A Namespace\": use \".\" (this namespace)",
    );
    refused(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [details]\n  exportTo: ['~', '.']\n  http: [{route: [{destination: {host: details}}]}]\n",
        "spec.exportTo[0]: \"~\" (exported nowhere) cannot be combined with other entries",
    );
}

#[test]
fn services_are_bounded() {
    let mut text = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: big}\nspec:\n  hosts: [big.example.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints:\n",
    );
    for i in 0..=crate::registry::limits::MAX_ENDPOINTS_PER_SERVICE {
        text.push_str(&format!(
            "  - {{address: 10.{}.{}.{}}}\n",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    refused(
        &text,
        "ServiceEntry default/big: spec.endpoints: 10001 endpoints; a service has at most 10000",
    );
}

#[test]
fn service_entry_ports_and_workload_selection() {
    let mesh = check("apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 80, name: http-web, targetPort: 8080}
  - {number: 9000, name: grpc-api}
  - {number: 5432, name: db, protocol: TCP}
  workloadSelector: {labels: {app: api}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: api-1}
spec: {address: 10.0.0.1, labels: {app: api, version: v1}, ports: {grpc-api: 9001}, weight: 3, locality: eu/west/a}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other}
spec: {address: 10.0.0.2, labels: {app: other}}
").unwrap();
    let api = &mesh.services["api.internal"];
    let protocols: Vec<_> = api.ports.iter().map(|p| p.protocol).collect();
    use crate::Protocol::*;
    assert_eq!(protocols, [Http, Grpc, Tcp]);
    assert_eq!(api.endpoints.len(), 1, "only the selected workload");
    let ep = &api.endpoints[0];
    assert_eq!(ep.ports[&80], 8080, "targetPort");
    assert_eq!(
        ep.ports[&9000], 9001,
        "the workload's own port for grpc-api"
    );
    assert_eq!(ep.ports[&5432], 5432);
    assert_eq!((ep.weight, ep.locality.as_deref()), (3, Some("eu/west/a")));
    refused(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\nspec:\n  hosts: [a.example.com]\n  ports:\n  - {number: 80, name: http}\n  - {number: 80, name: http}\n",
        "t.yaml:8: ServiceEntry default/s: spec.ports[1].number: duplicate port \"80\"",
    );
}

#[test]
fn errors_come_in_file_order() {
    let err = check(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: nope}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec:
  host: details
  subsets: [{name: v1}]
",
    )
    .unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("t.yaml:7: VirtualService"), "{err}");
    assert!(lines[1].starts_with("t.yaml:14: DestinationRule"), "{err}");
}

#[test]
fn sidecar_routes_by_host_and_gateway() {
    let mesh = check(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild}
spec:
  hosts: ['*.example.com']
  gateways: [mesh, gw]
  http: [{route: [{destination: {host: api.example.com}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge-only}
spec:
  hosts: [api.example.com]
  gateways: [default/gw]
  http: [{route: [{destination: {host: api.example.com}}]}]
",
    )
    .unwrap();
    let names: Vec<&str> = mesh
        .virtual_services_for("api.example.com", "default")
        .iter()
        .map(|v| v.resource.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["wild"],
        "the gateway-only one is not a sidecar route"
    );
    assert!(
        mesh.virtual_services_for("api.example.org", "default")
            .is_empty()
    );
    assert_eq!(mesh.virtual_services[0].gateways, ["mesh", "default/gw"]);
}

fn gateway(servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: g}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    )
}

#[test]
fn gateway_servers_are_checked() {
    refused(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  selector: {istio: ingressgateway}\n",
        "t.yaml:4: Gateway default/g: spec.servers: a gateway needs at least one server",
    );
    refused(
        &gateway("  - port: {number: 70000, protocol: HTTP}\n    hosts: ['*']\n"),
        "t.yaml:7: Gateway default/g: spec.servers[0].port.number: port 70000 is out of range",
    );
    refused(
        &gateway("  - port: {number: 80, protocol: HTTP}\n    hosts: ['bad ns/a.com']\n"),
        "spec.servers[0].hosts[0]: \"bad ns/a.com\": the part before '/' must be",
    );
    refused(
        &gateway("  - port: {number: 80, protocol: HTTP}\n    hosts: ['prod/a..com']\n"),
        "spec.servers[0].hosts[0]: \"a..com\" is not a host name",
    );
    refused(
        &gateway("  - port: {number: 80, protocol: HTTP}\n    hosts: []\n"),
        "spec.servers[0].hosts: a server needs at least one host",
    );
    refused(
        &gateway(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE}\n",
        ),
        "t.yaml:9: Gateway default/g: spec.servers[0].tls: terminating TLS needs serverCertificate and privateKey",
    );
    refused(
        &gateway(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, serverCertificate: cert.pem, privateKey: /k.pem}\n",
        ),
        "spec.servers[0].tls.serverCertificate: \"cert.pem\" is not an absolute path",
    );
    check(&gateway(
        "  - port: {number: 15443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: ISTIO_MUTUAL}\n",
    ))
    .unwrap();
    refused(
        &gateway(
            "  - port: {number: 15443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: ISTIO_MUTUAL, serverCertificate: /c.pem}\n",
        ),
        "spec.servers[0].tls.serverCertificate: ISTIO_MUTUAL uses the gateway's mesh certificate",
    );
    refused(
        &gateway(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: PASSTHROUGH}\n",
        ),
        "spec.servers[0].tls.mode: an HTTPS server terminates TLS; for PASSTHROUGH (VirtualService tls routes) or AUTO_PASSTHROUGH",
    );
    refused(
        &gateway(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: SIMPLE, credentialName: bookinfo-cert}\n",
        ),
        "spec.servers[0].tls.credentialName: credentialName names a Kubernetes secret",
    );
    refused(
        &gateway(
            "  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}\n",
        ),
        "MUTUAL and OPTIONAL_MUTUAL need caCertificates",
    );
    refused(
        &gateway("  - port: {number: 443, protocol: HTTPS}\n    hosts: ['*']\n"),
        "spec.servers[0]: an HTTPS server needs tls settings",
    );
    refused(
        &gateway("  - port: {number: 31400, protocol: TLS}\n    hosts: ['*']\n"),
        "spec.servers[0]: a TLS server needs tls settings",
    );
    check(&gateway(
        "  - port: {number: 31400, protocol: TLS}\n    hosts: ['*.local']\n    tls: {mode: AUTO_PASSTHROUGH}\n",
    ))
    .expect("AUTO_PASSTHROUGH servers are translated");
    refused(
        &gateway(
            "  - port: {number: 31400, protocol: TLS}\n    hosts: ['*']\n    tls: {mode: SIMPLE}\n",
        ),
        "spec.servers[0].tls",
    );
    refused(
        &gateway("  - port: {number: 31400, protocol: UDP}\n    hosts: ['*']\n"),
        "spec.servers[0].port.protocol: UDP gateway servers are not translated yet",
    );
    let tls_vs = |sni: &str| {
        format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: t}}\nspec:\n  \
             hosts: [a.example, '*.b.example']\n  gateways: [g]\n  tls:\n  - match: [{{sniHosts: [{sni}]}}]\n    \
             route: [{{destination: {{host: reviews}}}}]\n",
            gateway(
                "  - port: {number: 443, protocol: TLS}\n    hosts: ['*']\n    tls: {mode: PASSTHROUGH}\n"
            )
        )
    };
    refused(
        &tls_vs("c.example"),
        "spec.tls[0].match[0].sniHosts[0]: c.example is not one of the VirtualService's hosts",
    );
    refused(
        &tls_vs("'*.example'"),
        "spec.tls[0].match[0].sniHosts[0]: *.example is not one of the VirtualService's hosts",
    );
    refused(
        &gateway(
            "  - port: {number: 31400, protocol: TCP}\n    hosts: ['*']\n  - port: {number: 31400, protocol: HTTP}\n    hosts: ['*']\n",
        ),
        "spec.servers[1].port: port 31400 is already served as TCP by spec.servers[0]",
    );
    refused(
        &gateway(
            "  - port: {number: 31400, protocol: TCP}\n    hosts: ['a.example']\n  - port: {number: 31400, protocol: TCP}\n    hosts: ['b.example']\n",
        ),
        "spec.servers[1].port: port 31400 is already a TCP server (spec.servers[0])",
    );
    refused(
        &gateway(
            "  - port: {number: 80, protocol: HTTP}\n    hosts: ['*']\n    bind: unix:///sock\n",
        ),
        "spec.servers[0].bind: \"unix:///sock\" is not an IP address",
    );
    refused(
        &gateway(
            "  - port: {number: 80, protocol: HTTP}\n    hosts: [a.com]\n  - port: {number: 80, protocol: HTTPS}\n    hosts: [b.com]\n    tls: {serverCertificate: /c.pem, privateKey: /k.pem}\n",
        ),
        "spec.servers[1].port: port 80 is already served as HTTP by spec.servers[0]",
    );
    let ok = check(&gateway(
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['./a.example.com', '*/b.example.com', 'prod/*']\n    tls: {httpsRedirect: true}\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.example.com]\n    bind: 0.0.0.0\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}\n",
    ))
    .unwrap();
    assert_eq!(ok.gateways[0].spec.servers.len(), 2);
}

#[test]
fn client_tls_is_checked() {
    let dr = |tls: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec:\n  host: details\n  trafficPolicy:\n    tls: {tls}\n"
        )
    };
    check(&dr("{mode: ISTIO_MUTUAL}")).unwrap();
    check(&dr("{mode: ISTIO_MUTUAL, sni: details.example.com, subjectAltNames: [spiffe://cluster.local/ns/default/sa/details]}")).unwrap();
    refused(
        &dr("{mode: ISTIO_MUTUAL, clientCertificate: /c.pem}"),
        "t.yaml:7: DestinationRule default/d: spec.trafficPolicy.tls.clientCertificate: ISTIO_MUTUAL uses the mesh's workload certificates",
    );
    refused(
        &dr("{mode: SIMPLE, credentialName: c}"),
        "spec.trafficPolicy.tls.credentialName: credentialName names a Kubernetes secret",
    );
    refused(
        &dr("{mode: SIMPLE, caCertificates: ca.pem}"),
        "spec.trafficPolicy.tls.caCertificates: \"ca.pem\" is not an absolute path",
    );
    check(&dr("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, subjectAltNames: [details.example.com]}")).unwrap();
    check(&dr("{mode: DISABLE}")).unwrap();
}

fn sidecar(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}}}\nspec:\n{spec}"
    )
}

#[test]
fn sidecars() {
    let ok = check(&sidecar(
        "s",
        "  egress:\n  - {port: {number: 9080, protocol: HTTP}, hosts: [\"./*\"]}\n  - hosts: [\"istio-system/*\", \"*/api.example.com\"]\n  ingress:\n  - {port: {number: 9080, protocol: HTTP}, defaultEndpoint: \"127.0.0.1:8080\"}\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
    ))
    .unwrap();
    let s = &ok.sidecars[0];
    assert_eq!(s.egress.len(), 2);
    assert_eq!(s.ingress[0].endpoint.port(), 8080);
    assert_eq!(s.outbound, crate::types::OutboundMode::RegistryOnly);
    // No egress: everything is imported.
    let all = check(&sidecar(
        "s",
        "  outboundTrafficPolicy: {mode: ALLOW_ANY}\n",
    ))
    .unwrap();
    assert!(all.sidecars[0].egress[0].imports("a", "b", "c.d"));

    refused(
        &sidecar("s", "  egress: [{hosts: [reviews]}]\n"),
        "t.yaml:5: Sidecar default/s: spec.egress[0].hosts[0]: \"reviews\" is not namespace/host",
    );
    refused(
        &sidecar("s", "  egress: [{hosts: [\"Prod!/x.com\"]}]\n"),
        "spec.egress[0].hosts[0]: \"Prod!\" is not a namespace",
    );
    refused(
        &sidecar(
            "s",
            "  egress:\n  - hosts: [\"./*\"]\n  - {port: {number: 80}, hosts: [\"./*\"]}\n",
        ),
        "spec.egress[0]: the egress listener without a port (every port) must be the last one",
    );
    refused(
        &sidecar(
            "s",
            "  egress:\n  - {port: {number: 80}, hosts: [\"./*\"]}\n  - {port: {number: 80}, hosts: [\"./*\"]}\n",
        ),
        "spec.egress[1].port.number: duplicate egress port \"80\"",
    );
    refused(
        &sidecar("s", "  egress: [{captureMode: NONE, hosts: [\"./*\"]}]\n"),
        "spec.egress[0].captureMode: captureMode NONE needs a port",
    );
    refused(
        &sidecar(
            "s",
            "  ingress: [{port: {number: 80, protocol: HTTP}, defaultEndpoint: \"0.0.0.0:8080\"}]\n",
        ),
        "spec.ingress[0].defaultEndpoint: \"0.0.0.0:8080\": write 127.0.0.1:PORT",
    );
    refused(
        &sidecar("s", "  ingress: [{port: {number: 80}}]\n"),
        "spec.ingress[0].port.protocol: an ingress port needs a protocol",
    );
    refused(
        &sidecar(
            "s",
            "  egress: [{bind: /tmp/sock, port: {number: 80}, hosts: [\"./*\"]}]\n",
        ),
        "spec.egress[0].bind: \"/tmp/sock\" is not an IP address",
    );
    refused(
        &sidecar("s", "  inboundConnectionPool: {}\n"),
        "unknown field `inboundConnectionPool`",
    );
    // One default per namespace: the later is left out.
    let two = format!(
        "{}---\n{}",
        sidecar("a", "  egress: [{hosts: [\"./*\"]}]\n"),
        sidecar("b", "  egress: [{hosts: [\"*/*\"]}]\n")
    );
    refused(
        &two,
        "Sidecar default/b: spec.workloadSelector: namespace \"default\" already has a Sidecar without workloadSelector (a)",
    );
}
