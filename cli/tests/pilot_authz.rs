//! PeerAuthentication and AuthorizationPolicy through real proxies, on loopback: `web`'s sidecar (Envoy
//! 1.40 or `sextant proxy`) serves the workload on a Sidecar ingress port, and `front`'s sidecar (Envoy)
//! calls it over mesh mTLS with pilot's certificates. PERMISSIVE lets a client without a sidecar in as
//! plain text, STRICT refuses it; an ALLOW policy for `front`'s principal lets `front` in, a DENY on a path
//! answers 403 on that path only (HTTP RBAC on the HTTP port), an ALLOW for another principal shuts `front`
//! out (403); and when that policy turns invalid its last good version stays enforced (said on
//! `/debug/config`) until it is fixed.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, DataPlane, Envoy, HeldPort, Plane, ads_bootstrap, get_json, scratch_config,
    start_pilot, wait_until, write_atomically,
};

const WAIT: Duration = Duration::from_secs(60);
const WEB_ID: &str = "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local";
const WEB_NODE: &str = "{id: \"sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local\", cluster: web.shop, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: shop, SERVICE_ACCOUNT: web, LABELS: {app: web}}}";
const FRONT_NODE: &str = "{id: \"sidecar~127.0.0.1~front-1.shop~shop.svc.cluster.local\", cluster: front.shop, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: shop, SERVICE_ACCOUNT: front, LABELS: {app: front}}}";

/// `web`'s service on `port` (its pod's sidecar listens on `ingress`), mesh mTLS to it, and `web`'s Sidecar:
/// the ingress port forwarding to the workload at `app`, importing nothing.
fn mesh(port: u16, ingress: u16, app: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ingress}}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: shop}}
spec:
  host: web.shop.svc.cluster.local
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL}}
    # A connection is authorized when it opens: one request per connection, so each call is judged anew.
    connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - {{port: {{number: {ingress}, protocol: HTTP, name: http}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: "{app}"}}
  egress: [{{hosts: ["~/*"]}}]
"#
    )
}

fn allow(principal: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  \
         selector: {{matchLabels: {{app: web}}}}\n  rules:\n  - from: [{{source: {{principals: [\"{principal}\"]}}}}]\n"
    )
}

const DENY_ADMIN: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: shop}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]\n";

const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n";

/// `GET /` to `at` with `host`: the status (0 when the connection failed or was closed).
fn status(at: SocketAddr, host: &str) -> u16 {
    status_of(at, host, "/")
}

/// `GET path` to `at` with `host`: the status (0 when the connection failed or was closed).
fn status_of(at: SocketAddr, host: &str, path: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{at}{path}"))
        .output()
        .expect("curl (installed by .ci/peers)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn run(plane: Plane) {
    let (dir, config) = scratch_config(&format!("pilot-authz-{plane:?}"));
    let app = Backend::answering("the workload");
    let (port, ingress) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(port.port(), ingress.port(), app.addr),
    )
    .expect("mesh");
    let (pilot, xds, monitoring) = start_pilot(&config, "127.0.0.1:0");
    let web = plane.start(
        &dir.join("web"),
        xds,
        "GRPC",
        WEB_NODE,
        WEB_ID,
        &[
            ("POD_NAMESPACE", "shop"),
            ("SERVICE_ACCOUNT", "web"),
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("ISTIO_METAJSON_LABELS", r#"{"app": "web"}"#),
        ],
    );
    let front_dir = dir.join("front");
    std::fs::create_dir_all(&front_dir).expect("dir");
    let front = Envoy::start(&front_dir, &ads_bootstrap(xds, "GRPC", FRONT_NODE));
    let via_front = SocketAddr::from(([127, 0, 0, 1], port.port()));
    let direct = SocketAddr::from(([127, 0, 0, 1], ingress.port()));
    let host = "web.shop.svc.cluster.local";

    // PERMISSIVE: mesh mTLS from front, and plain text from a client without a sidecar.
    wait_until(WAIT, "front to reach web over mTLS", || {
        status(via_front, host) == 200
    });
    assert_eq!(status(direct, host), 200, "plain text under PERMISSIVE");

    // STRICT: plain text refused, mTLS still in.
    write_atomically(&config.join("peer.yaml"), STRICT);
    wait_until(WAIT, "STRICT to refuse plain text", || {
        status(direct, host) == 0
    });
    assert_eq!(status(via_front, host), 200);

    // ALLOW front's principal; then another principal only: front is shut out.
    let policy = config.join("authz.yaml");
    write_atomically(&policy, &allow("cluster.local/ns/shop/sa/front"));
    wait_until(WAIT, "the policy to be in force", || {
        get_json(monitoring, "/debug/config")["authorization_policies"][0]["name"] == "web"
    });
    assert_eq!(status(via_front, host), 200);
    // HTTP-level rules on the HTTP port: a DENY on a path answers 403 there, and only there.
    let deny = config.join("deny.yaml");
    write_atomically(&deny, DENY_ADMIN);
    wait_until(WAIT, "/admin to be denied", || {
        status_of(via_front, host, "/admin/x") == 403
    });
    assert_eq!(status_of(via_front, host, "/"), 200);
    std::fs::remove_file(&deny).expect("remove the DENY policy");
    wait_until(WAIT, "/admin to be served again", || {
        status_of(via_front, host, "/admin/x") == 200
    });
    write_atomically(&policy, &allow("cluster.local/ns/shop/sa/other"));
    wait_until(WAIT, "front to be denied", || {
        status(via_front, host) == 403
    });

    // Invalid now: its last good version (other only) stays enforced, and pilot says so.
    write_atomically(&policy, &allow("cluster.local/*/sa/front"));
    wait_until(WAIT, "the invalid policy to be reported", || {
        let c = get_json(monitoring, "/debug/config");
        c["rejected"].to_string().contains("AuthorizationPolicy")
            && c["authorization_policies"][0]["fail_closed"].is_string()
    });
    for _ in 0..3 {
        assert_eq!(
            status(via_front, host),
            403,
            "an invalid policy opened the door"
        );
    }
    assert!(
        pilot
            .log()
            .contains("its last good version is still enforced"),
        "{}",
        pilot.log()
    );

    // Fixed: the new version applies.
    write_atomically(&policy, &allow("cluster.local/ns/shop/sa/front"));
    wait_until(WAIT, "front to be allowed again", || {
        status(via_front, host) == 200
    });
    assert_eq!(web.rejected_updates(), 0, "web's sidecar refused an update");
    assert_eq!(
        front.rejected_updates(),
        0,
        "front's sidecar refused an update"
    );
    drop((web, front, pilot, port, ingress));
}

#[test]
fn envoy_enforces_peer_authentication_and_authorization_policy() {
    run(Plane::Envoy);
}

#[test]
fn sextant_proxy_enforces_peer_authentication_and_authorization_policy() {
    run(Plane::Sextant);
}
