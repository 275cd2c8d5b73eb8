//! A real Envoy 1.40 in front of a backend, asking the hub through ext_authz and the rate-limit service.

mod common;

use common::DataPlane;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, Envoy, Hub, get, scratch_config, wait_until};

const POLICY: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: edge-guard}
spec:
  selector: 'destination.service.name == "reviews"'
  rules:
  - name: no-guests
    when: 'request.headers["x-user"] == "guest"'
    action: DENY
    status: {code: PERMISSION_DENIED, httpStatus: 403, message: "guests may not read reviews"}
  - name: staff
    when: 'request.headers["x-user"].endsWith("@staff")'
    action: ALLOW
    headers: {request: {set: {x-sextant-staff: "yes"}}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {name: per-user}
spec:
  selector: 'request.url_path.startsWith("/limited")'
  dimensions: {user: 'request.headers["x-user"]'}
  limit: {requests: 2, per: 1h, burst: 1}
"#;

/// The same policy after an edit: guests allowed, eve denied.
const POLICY_EDITED: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: edge-guard}
spec:
  selector: 'destination.service.name == "reviews"'
  rules:
  - name: no-eve
    when: 'request.headers["x-user"] == "eve"'
    action: DENY
    status: {code: PERMISSION_DENIED, httpStatus: 403, message: "eve is blocked"}
"#;

const LIMITS: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {name: edge-users}
spec:
  selector: 'ratelimit.domain == "edge" && "user" in ratelimit.descriptor'
  dimensions: {user: 'ratelimit.descriptor["user"]'}
  limit: {requests: 2, per: 1h, burst: 1}
"#;

/// Envoy's bootstrap: admin and the `ingress` listener on ports the kernel picks (read back from Envoy).
fn envoy_config(backend: u16, hub: u16, filter: &str, route_extra: &str) -> String {
    format!(
        r#"
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          generate_request_id: true
          http_filters:
{filter}
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: backend{route_extra}}}
                typed_per_filter_config:
                  envoy.filters.http.ext_authz:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                    check_settings: {{context_extensions: {{destination.service.name: reviews}}}}
  clusters:
  - name: backend
    type: STATIC
    load_assignment: {{cluster_name: backend, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {backend}}}}}}}}}]}}]}}
  - name: hub
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment: {{cluster_name: hub, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {hub}}}}}}}}}]}}]}}
"#
    )
}

const EXT_AUTHZ: &str = r#"          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service: {envoy_grpc: {cluster_name: hub}, timeout: 2s}"#;

const RATE_LIMIT: &str = r#"          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: edge
              failure_mode_deny: true
              timeout: 2s
              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: hub}}"#;

/// A hub on `config_file` (name, YAML), a backend, and an Envoy with `filter` in front of it.
struct Mesh {
    hub: Hub,
    envoy: Envoy,
    front: SocketAddr,
    _backend: Backend,
}

fn mesh(name: &str, config_file: (&str, &str), filter: &str, route_extra: &str) -> Mesh {
    let (dir, config) = scratch_config(name);
    std::fs::write(config.join(config_file.0), config_file.1).expect("write config");
    let hub = Hub::start(&config);
    let backend = Backend::start();
    let yaml = envoy_config(backend.addr.port(), hub.grpc.port(), filter, route_extra);
    let envoy = Envoy::start(&dir, &yaml);
    let front = envoy.listener("ingress");
    Mesh {
        hub,
        envoy,
        front,
        _backend: backend,
    }
}

#[test]
fn ext_authz_allows_denies_limits_and_follows_config_edits() {
    let Mesh {
        hub, envoy, front, ..
    } = mesh("authz", ("policy.yaml", POLICY), EXT_AUTHZ, "");
    let call =
        |path: &str, user: &str| get(front, path, &[("x-user", user)]).expect("Envoy answers");

    let ok = call("/reviews/1", "alice");
    assert_eq!((ok.status, ok.body.as_str()), (200, "backend ok"));
    let denied = call("/reviews/1", "guest");
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "guests may not read reviews")
    );
    let staff = call("/reviews/1", "ann@staff");
    assert_eq!(staff.status, 200);
    assert_eq!(
        staff.header("x-echo-staff"),
        Some("yes"),
        "the ALLOW rule's header reached the backend"
    );

    let limited: Vec<u16> = (0..3).map(|_| call("/limited", "bob").status).collect();
    assert_eq!(
        limited,
        [200, 200, 429],
        "2 per hour with burst 1: two at once, then 429"
    );
    let over = call("/limited", "bob");
    assert!(
        over.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|secs| secs > 0)),
        "429 tells when to retry: {over:?}"
    );
    assert_eq!(
        call("/limited", "carol").status,
        200,
        "another user has their own bucket"
    );

    // Edit the policy while Envoy runs: the decision changes without a restart.
    hub.write_config("policy.yaml", POLICY_EDITED, true);
    assert_eq!(call("/reviews/1", "guest").status, 200);
    let eve = call("/reviews/1", "eve");
    assert_eq!((eve.status, eve.body.as_str()), (403, "eve is blocked"));

    // A broken edit (YAML syntax error) keeps the last good decisions and is reported with its line.
    hub.write_config(
        "policy.yaml",
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: edge-guard\n",
        false,
    );
    assert_eq!(call("/reviews/1", "eve").status, 403);
    assert_eq!(call("/reviews/1", "guest").status, 200);
    let metrics = hub.metrics();
    assert!(
        metrics.contains("sextant_hub_config_error{file=\"") && metrics.contains("policy.yaml"),
        "the error's file is in /metrics:\n{metrics}"
    );
    let debug = get(hub.admin, "/debug/config", &[])
        .expect("debug config")
        .body;
    assert!(debug.contains("YAML syntax error"), "{debug}");

    // Envoy's own counters agree: every Check got an answer.
    assert!(
        envoy
            .stat("http.ingress.ext_authz.denied")
            .is_some_and(|n| n >= 5),
        "Envoy counted the denials itself"
    );
    assert!(
        envoy.stat("http.ingress.ext_authz.error").unwrap_or(0) == 0,
        "Envoy saw no failed calls to the hub"
    );
    assert!(
        hub.metric("sextant_hub_checks_total{front_door=\"envoy_ext_authz\",result=\"denied\"}")
            .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        hub.metric(
            "sextant_hub_checks_total{front_door=\"envoy_ext_authz\",result=\"rate_limited\"}"
        )
        .unwrap_or(0.0)
            >= 2.0
    );
}

#[test]
fn rate_limit_service_counts_descriptors() {
    let route = ", rate_limits: [{actions: [{request_headers: {header_name: x-user, descriptor_key: user}}]}]";
    let Mesh {
        hub, envoy, front, ..
    } = mesh("rls", ("limits.yaml", LIMITS), RATE_LIMIT, route);
    let call = |user: &str| {
        get(front, "/", &[("x-user", user)])
            .expect("Envoy answers")
            .status
    };

    assert_eq!([call("bob"), call("bob"), call("bob")], [200, 200, 429]);
    assert_eq!(
        call("alice"),
        200,
        "each descriptor value has its own bucket"
    );
    wait_until(
        Duration::from_secs(30),
        "Envoy's over_limit counter",
        || envoy.stat("cluster.backend.ratelimit.over_limit") == Some(1),
    );
    assert!(
        hub.metric("sextant_hub_ratelimit_denials_total{ratelimit=\"default/edge-users\"}")
            == Some(1.0),
        "{}",
        hub.metrics()
    );
}
