//! Mesh mTLS between proxies with pilot's CA, every pairing of Envoy 1.40 and `sextant proxy`: a sidecar
//! (no interception) calls a service whose DestinationRule says ISTIO_MUTUAL, and the service is an ingress
//! gateway whose server terminates ISTIO_MUTUAL. Both proxies get their workload certificate and the root
//! over SDS from `sextant pilot`; the sidecar checks the gateway's SPIFFE identity (the ServiceEntry's
//! service account), the gateway requires the sidecar's certificate. With a DestinationRule naming another
//! identity the sidecar refuses the gateway (503, `ssl.fail_verify_san`), as Envoy does.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Backend, HeldPort, Plane, scratch, wait_until, write_atomically};

const SIDECAR_ID: &str = "sidecar~127.0.0.1~sleep-1.default~default.svc.cluster.local";
const SIDECAR_NODE: &str = "{id: \"sidecar~127.0.0.1~sleep-1.default~default.svc.cluster.local\", cluster: sleep.default, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: default, SERVICE_ACCOUNT: sleep, LABELS: {app: sleep}}}";
const GATEWAY_ID: &str = "router~127.0.0.1~ingress-1.istio-system~istio-system.svc.cluster.local";
const GATEWAY_NODE: &str = "{id: \"router~127.0.0.1~ingress-1.istio-system~istio-system.svc.cluster.local\", cluster: istio-ingressgateway.istio-system, metadata: {NAMESPACE: istio-system, SERVICE_ACCOUNT: ingress-sa, LABELS: {istio: ingressgateway}}}";
const GATEWAY_HOST: &str = "istio-ingressgateway.istio-system.svc.cluster.local";

/// The mesh: `web` behind the gateway, the gateway's service on `side` (its pods listen on `gw`), and the
/// gateway's ISTIO_MUTUAL server routing everything to `web`.
fn mesh(backend: u16, side: u16, gw: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8000, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {backend}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  hosts: [{GATEWAY_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {side}, name: http}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {gw}}}, labels: {{istio: ingressgateway}}, serviceAccount: ingress-sa}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mesh-gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {side}, name: https, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web-via-gateway, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [mesh-gw]
  http: [{{route: [{{destination: {{host: web.default.svc.cluster.local, port: {{number: 8000}}}}}}]}}]
"#
    )
}

/// The sidecar's DestinationRule for the gateway: ISTIO_MUTUAL, checking `sans` when given.
fn destination_rule(sans: &[&str]) -> String {
    let sans = if sans.is_empty() {
        String::new()
    } else {
        format!(", subjectAltNames: [{}]", sans.join(", "))
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: gateway-mtls}}\n\
         spec:\n  host: {GATEWAY_HOST}\n  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL{sans}}}}}\n"
    )
}

/// A GET through the sidecar's listener for the gateway's service: (status, body).
fn call(sidecar: SocketAddr) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {GATEWAY_HOST}"))
        .arg(format!("http://{sidecar}/"))
        .output()
        .expect("curl (installed by .ci/peers)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

fn run(sidecar_plane: Plane, gateway_plane: Plane) {
    let dir = scratch(&format!("proxy-mtls-{sidecar_plane:?}-{gateway_plane:?}"));
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let backend = Backend::start();
    let (side, gw) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(backend.addr.port(), side.port(), gw.port()),
    )
    .expect("mesh");
    write_atomically(
        &config.join("destination-rule.yaml"),
        &destination_rule(&[]),
    );
    let (_pilot, xds, _monitoring) = common::start_pilot(&config, "127.0.0.1:0");

    let gateway = gateway_plane.start(
        &dir.join("gateway"),
        xds,
        "GRPC",
        GATEWAY_NODE,
        GATEWAY_ID,
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("SERVICE_ACCOUNT", "ingress-sa"),
            ("ISTIO_METAJSON_LABELS", r#"{"istio": "ingressgateway"}"#),
        ],
    );
    let sidecar = sidecar_plane.start(
        &dir.join("sidecar"),
        xds,
        "GRPC",
        SIDECAR_NODE,
        SIDECAR_ID,
        &[
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("SERVICE_ACCOUNT", "sleep"),
            ("ISTIO_METAJSON_LABELS", r#"{"app": "sleep"}"#),
        ],
    );

    // Sidecar → gateway over mTLS, each checking the other against pilot's root.
    wait_until(
        Duration::from_secs(60),
        "a call through both proxies",
        || call(side.addr).is_some_and(|(s, _)| s == 200),
    );
    for _ in 0..5 {
        assert_eq!(call(side.addr), Some((200, "backend ok".into())));
    }
    let upstream = format!("cluster.outbound|{}||{GATEWAY_HOST}", side.port());
    let listener = format!("listener.0.0.0.0_{}", gw.port());
    assert!(
        sidecar
            .stat(&format!("{upstream}.ssl.handshake"))
            .unwrap_or(0)
            >= 1,
        "the sidecar originated TLS"
    );
    assert!(
        gateway
            .stat(&format!("{listener}.ssl.handshake"))
            .unwrap_or(0)
            >= 1,
        "the gateway terminated TLS"
    );
    assert_eq!(
        gateway
            .stat(&format!("{listener}.ssl.no_certificate"))
            .unwrap_or(0),
        0,
        "the sidecar showed its certificate"
    );

    // The gateway refuses a client without a mesh certificate.
    let direct = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{}/", gw.port()))
        .output()
        .expect("curl");
    assert!(
        !direct.status.success() || String::from_utf8_lossy(&direct.stdout) == "000",
        "a client without a certificate got an answer: {direct:?}"
    );

    // A DestinationRule naming another identity: the sidecar refuses the gateway's certificate.
    write_atomically(
        &config.join("destination-rule.yaml"),
        &destination_rule(&["spiffe://cluster.local/ns/istio-system/sa/impostor"]),
    );
    wait_until(
        Duration::from_secs(60),
        "the sidecar to refuse the gateway's identity",
        || call(side.addr).is_some_and(|(s, _)| s == 503),
    );
    assert!(
        sidecar
            .stat(&format!("{upstream}.ssl.fail_verify_san"))
            .unwrap_or(0)
            >= 1,
        "counted as a SAN failure"
    );

    // Naming the gateway's real identity again restores the calls.
    write_atomically(
        &config.join("destination-rule.yaml"),
        &destination_rule(&["spiffe://cluster.local/ns/istio-system/sa/ingress-sa"]),
    );
    wait_until(Duration::from_secs(60), "calls to work again", || {
        call(side.addr).is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(sidecar.rejected_updates(), 0);
    assert_eq!(gateway.rejected_updates(), 0);
    drop((sidecar, gateway));
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

#[test]
fn envoy_sidecar_to_envoy_gateway_over_mesh_mtls() {
    run(Plane::Envoy, Plane::Envoy);
}

#[test]
fn sextant_sidecar_to_sextant_gateway_over_mesh_mtls() {
    run(Plane::Sextant, Plane::Sextant);
}

#[test]
fn sextant_sidecar_to_envoy_gateway_over_mesh_mtls() {
    run(Plane::Sextant, Plane::Envoy);
}

#[test]
fn envoy_sidecar_to_sextant_gateway_over_mesh_mtls() {
    run(Plane::Envoy, Plane::Sextant);
}
