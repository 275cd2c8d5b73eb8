//! Hand-written rules: route features, retries, timeouts, traffic policies.

use super::*;

pub(super) const SERVICES: &str = r#"
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
    canary.labels = pilot_config::types::Labels::from([("track".into(), "canary".into())]);
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

#[test]
fn export_to_limits_what_proxies_of_other_namespaces_get() {
    let mesh = yaml(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: finance}
spec:
  hosts: [ledger.finance.svc.cluster.local]
  exportTo: ["."]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http}]
  endpoints: [{address: 10.0.2.1}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web-canary, namespace: default}
spec:
  hosts: [web]
  exportTo: [".", finance]
  http:
  - route: [{destination: {host: web, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: default}
spec:
  host: web
  exportTo: [".", finance]
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#
    ));
    let in_ns = |ns: &str| ProxyInfo {
        namespace: ns.into(),
        ..proxy(Interception::Redirect)
    };
    let ledger = "outbound|8080||ledger.finance.svc.cluster.local";
    let web_v2 = "outbound|8080|v2|web.default.svc.cluster.local";

    // Its own namespace sees the private service; the others do not.
    let finance = snap(&mesh, &in_ns("finance"));
    assert!(names(&finance, types::CLUSTER).contains(&ledger.to_string()));
    let default = snap(&mesh, &in_ns("default"));
    assert!(!names(&default, types::CLUSTER).contains(&ledger.to_string()));

    // The VirtualService and DestinationRule apply where exported: web goes to v2 there.
    for s in [&default, &finance] {
        let r = &vhost(s, "8080", "web.default.svc.cluster.local").routes[0];
        assert_eq!(weights(action(r)), [(web_v2.to_string(), 100)]);
    }
    // Elsewhere web is a plain service: no subsets, the default route.
    let other = snap(&mesh, &in_ns("shop"));
    assert!(!names(&other, types::CLUSTER).contains(&web_v2.to_string()));
    let r = &vhost(&other, "8080", "web.default.svc.cluster.local").routes[0];
    assert_eq!(
        weights(action(r)),
        [(
            "outbound|8080||web.default.svc.cluster.local".to_string(),
            100
        )]
    );
}
