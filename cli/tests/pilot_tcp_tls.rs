//! Istio's TCP traffic-shifting task through an ingress gateway, on both proxies: a Gateway with a `TCP`
//! server, a VirtualService `tcp` route bound to it sending 80 % of connections to subset v1 of `tcp-echo` and
//! 20 % to v2 (a DestinationRule's subsets, one endpoint each), the gateway a `router~` node of Envoy 1.40 or
//! `sextant proxy` fed by `sextant pilot`. Each backend greets a connection with its version, so the split is
//! counted as a client sees it; then the route moves to 100 % v2 and every new connection goes there.
//! And TLS passthrough: a Gateway `TLS` server (mode `PASSTHROUGH`) whose VirtualService `tls` routes send
//! SNI `a.example` and `b.example` to two `openssl s_server` backends, untouched (curl sees each backend's
//! own certificate and page); a name no route claims gets no connection. And a `TLS` server that terminates
//! (mode `SIMPLE`, a certificate made with the openssl CLI) in front of the TCP backend. And at a sidecar: a
//! ServiceEntry port of protocol TLS whose VirtualService `tls` routes send each SNI name to its own backend.
//! And an east-west gateway: a `TLS` server in mode `AUTO_PASSTHROUGH` forwarding Istio's SNI for a mesh
//! cluster (`outbound_.PORT_.SUBSET_.HOST`) untouched to that cluster.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    DataPlane, HeldPort, PRODUCTPAGE_ID, PRODUCTPAGE_NODE, Plane, Proc, scratch_config,
    start_pilot, wait_until, write_atomically,
};

const GATEWAY_ID: &str = "router~127.0.0.1~ingress-1.istio-system~istio-system.svc.cluster.local";
const GATEWAY_NODE: &str = "{id: \"router~127.0.0.1~ingress-1.istio-system~istio-system.svc.cluster.local\", cluster: istio-ingressgateway.istio-system, metadata: {NAMESPACE: istio-system, LABELS: {istio: ingressgateway}}}";
/// Connections counted for the 80/20 split.
const CONNECTIONS: usize = 200;

/// A server-first TCP backend: greets each connection with `hello from VERSION` and closes it.
fn echo_backend(version: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(format!("hello from {version}\n").as_bytes());
        }
    });
    addr
}

/// The gateway (`router~`, labels `istio: ingressgateway`) as `plane`, fed by pilot at `xds`.
fn start_gateway(plane: Plane, dir: &Path, xds: SocketAddr) -> Box<dyn DataPlane> {
    plane.start(
        &dir.join("gateway"),
        xds,
        "GRPC",
        GATEWAY_NODE,
        GATEWAY_ID,
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("ISTIO_METAJSON_LABELS", r#"{"istio": "ingressgateway"}"#),
        ],
    )
}

/// The version greeting one connection through the gateway at `addr`, if any.
fn version_at(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.trim().strip_prefix("hello from ").map(str::to_string)
}

/// The ingress gateway's own service: port `side` (named `port_name`), its pod listening on `pod`.
fn gateway_service(side: u16, pod: u16, port_name: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  hosts: [istio-ingressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {side}, name: {port_name}}}]
  endpoints: [{{address: 127.0.0.1, ports: {{{port_name}: {pod}}}, labels: {{istio: ingressgateway}}}}]
---
"#
    )
}

/// A TLS service `NAME.default.svc.cluster.local` on `port`, its one endpoint 127.0.0.1:`endpoint`.
fn tls_service(name: &str, port: u16, endpoint: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  \
         hosts: [{name}.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: tls}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{tls: {endpoint}}}}}]\n---\n"
    )
}

/// The mesh: tcp-echo with endpoints v1 and v2, its subsets, the gateway's service (port `side`, its pod
/// listening on `pod`) and a Gateway with one TCP server.
fn mesh(v1: u16, v2: u16, side: u16, pod: u16) -> String {
    let gateway = gateway_service(side, pod, "tcp");
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-echo}}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9000, name: tcp}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {v1}}}, labels: {{app: tcp-echo, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {v2}}}, labels: {{app: tcp-echo, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tcp-echo-destination}}
spec:
  host: tcp-echo
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
{gateway}apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-echo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {side}, name: tcp, protocol: TCP}}
    hosts: ["*"]
"#
    )
}

/// The VirtualService of the task: `v1`% of connections to v1, the rest to v2.
fn shift(side: u16, v1: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo}}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - match: [{{port: {side}}}]
    route:
    - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: tcp-echo, port: {{number: 9000}}, subset: v2}}, weight: {v2}}}
"#,
        v2 = 100 - v1
    )
}

fn run(plane: Plane) {
    let (dir, config) = scratch_config(&format!("gateway-tcp-{plane:?}"));
    let (v1, v2) = (echo_backend("v1"), echo_backend("v2"));
    let (side, pod) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(v1.port(), v2.port(), side.port(), pod.port()),
    )
    .expect("mesh");
    write_atomically(&config.join("shift.yaml"), &shift(side.port(), 80));
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let gateway = start_gateway(plane, &dir, xds);
    let at = SocketAddr::from(([127, 0, 0, 1], pod.port()));
    wait_until(
        Duration::from_secs(60),
        "a connection through the gateway",
        || version_at(at).is_some(),
    );

    let mut to_v1 = 0;
    for i in 0..CONNECTIONS {
        match version_at(at).as_deref() {
            Some("v1") => to_v1 += 1,
            Some("v2") => {}
            other => panic!("connection {i} through the gateway got {other:?}"),
        }
    }
    // 80 % of 200 is 160, with a standard deviation of about 5.7: 130–190 fails one run in millions.
    assert!(
        (130..=190).contains(&to_v1),
        "{to_v1} of {CONNECTIONS} connections went to v1, with weights 80/20"
    );

    // All to v2: every new connection lands there.
    write_atomically(&config.join("shift.yaml"), &shift(side.port(), 0));
    wait_until(
        Duration::from_secs(60),
        "the gateway to apply the 0/100 route",
        || (0..20).all(|_| version_at(at).as_deref() == Some("v2")),
    );
    assert_eq!(
        gateway.rejected_updates(),
        0,
        "the gateway refused an update"
    );
}

#[test]
fn envoy_as_ingress_gateway_shifts_tcp_traffic_by_weight() {
    run(Plane::Envoy);
}

#[test]
fn sextant_proxy_as_ingress_gateway_shifts_tcp_traffic_by_weight() {
    run(Plane::Sextant);
}

/// An `openssl s_server` for `host` (a self-signed certificate) serving the files of `dir/www`, whose
/// `who` says `backend HOST`: its address and the process.
fn tls_backend(dir: &Path, host: &str) -> (SocketAddr, Proc) {
    let www = dir.join(format!("www-{host}"));
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("who"), format!("backend {host}")).expect("who");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem", "-subj"])
        .arg(format!("/CN={host}"))
        .current_dir(&www)
        .output()
        .expect("the openssl CLI (installed by .ci/peers)");
    assert!(out.status.success(), "openssl req: {out:?}");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-accept", "127.0.0.1:0", "-cert", "cert.pem"])
        .args(["-key", "key.pem", "-WWW"])
        .current_dir(&www);
    let mut proc = Proc::spawn(
        "openssl s_server",
        cmd,
        dir.join(format!("s_server-{host}.log")),
    );
    // It prints `ACCEPT 127.0.0.1:PORT` once listening.
    let line = proc.wait_for_line("ACCEPT ", Duration::from_secs(60));
    let [addr] = common::addrs_in(&line)[..] else {
        panic!("openssl s_server's ACCEPT line names one address: {line}");
    };
    (addr, proc)
}

/// `https://HOST:PORT/who` through `at` with SNI `host` (certificates not checked: each backend's own);
/// the body, or `None` when the connection or handshake failed.
fn who(at: SocketAddr, host: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", "--resolve"])
        .arg(format!("{host}:{}:{}", at.port(), at.ip()))
        .arg(format!("https://{host}:{}/who", at.port()))
        .output()
        .expect("curl (installed by .ci/peers)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Two TLS services, the gateway's service (port `side`, its pod on `pod`), a PASSTHROUGH server and the
/// VirtualService routing `a.example` and `b.example` by SNI.
fn passthrough(a: u16, b: u16, side: u16, pod: u16) -> String {
    format!(
        r#"{a}{b}{gateway}apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tls-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {side}, name: tls, protocol: TLS}}
    hosts: [a.example, b.example]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: by-sni}}
spec:
  hosts: [a.example, b.example]
  gateways: [tls-gateway]
  tls:
  - match: [{{port: {side}, sniHosts: [a.example]}}]
    route: [{{destination: {{host: tls-a, port: {{number: 443}}}}}}]
  - match: [{{sniHosts: [b.example]}}]
    route: [{{destination: {{host: tls-b, port: {{number: 443}}}}}}]
"#,
        a = tls_service("tls-a", 443, a),
        b = tls_service("tls-b", 443, b),
        gateway = gateway_service(side, pod, "tls"),
    )
}

/// A TLS gateway as `plane` in front of two `openssl s_server` backends (`a.example`, `b.example`), with
/// the mesh `mesh(a, b, side, pod)` writes: the gateway, the address it listens on, and what must live as
/// long as the test (pilot, the backends, the held ports).
fn tls_gateway(
    plane: Plane,
    name: &str,
    mesh: fn(u16, u16, u16, u16) -> String,
) -> (Box<dyn DataPlane>, SocketAddr, impl Sized) {
    let (dir, config) = scratch_config(&format!("{name}-{plane:?}"));
    let ((a, a_proc), (b, b_proc)) = (
        tls_backend(&dir, "a.example"),
        tls_backend(&dir, "b.example"),
    );
    let (side, pod) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(a.port(), b.port(), side.port(), pod.port()),
    )
    .expect("mesh");
    let (pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let gateway = start_gateway(plane, &dir, xds);
    let at = SocketAddr::from(([127, 0, 0, 1], pod.port()));
    (gateway, at, (pilot, a_proc, b_proc, side, pod))
}

fn run_passthrough(plane: Plane) {
    let (gateway, at, _keep) = tls_gateway(plane, "gateway-tls", passthrough);
    wait_until(
        Duration::from_secs(60),
        "a TLS connection through the gateway",
        || who(at, "a.example").is_some(),
    );
    for _ in 0..5 {
        assert_eq!(who(at, "a.example").as_deref(), Some("backend a.example"));
        assert_eq!(who(at, "b.example").as_deref(), Some("backend b.example"));
    }
    assert_eq!(
        who(at, "c.example"),
        None,
        "a name no route claims was served"
    );
    assert_eq!(
        gateway.rejected_updates(),
        0,
        "the gateway refused an update"
    );
}

/// Two TLS services (tls-b's one endpoint labelled v1, its subset), the gateway's service and an
/// AUTO_PASSTHROUGH server for every `*.svc.cluster.local` host: no VirtualService at all.
fn auto_passthrough(a: u16, b: u16, side: u16, pod: u16) -> String {
    format!(
        r#"{a}apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tls-b}}
spec:
  hosts: [tls-b.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 443, name: tls}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tls: {b}}}, labels: {{version: v1}}}}]
---
{gateway}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: tls-b}}
spec:
  host: tls-b
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: cross-network-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {side}, name: tls, protocol: TLS}}
    hosts: ["*.svc.cluster.local"]
    tls: {{mode: AUTO_PASSTHROUGH}}
"#,
        a = tls_service("tls-a", 443, a),
        gateway = gateway_service(side, pod, "tls"),
    )
}

/// An east-west gateway: connections whose SNI is Istio's name for a mesh cluster
/// (`outbound_.PORT_.SUBSET_.HOST`) pass through untouched to that cluster's endpoints.
fn run_auto_passthrough(plane: Plane) {
    let (gateway, at, _keep) = tls_gateway(plane, "gateway-auto", auto_passthrough);
    let sni_a = "outbound_.443_._.tls-a.default.svc.cluster.local";
    wait_until(
        Duration::from_secs(60),
        "a TLS connection through the gateway",
        || who(at, sni_a).is_some(),
    );
    assert_eq!(who(at, sni_a).as_deref(), Some("backend a.example"));
    for sni in [
        "outbound_.443_._.tls-b.default.svc.cluster.local",
        "outbound_.443_.v1_.tls-b.default.svc.cluster.local",
    ] {
        assert_eq!(who(at, sni).as_deref(), Some("backend b.example"), "{sni}");
    }
    for unknown in [
        "outbound_.443_.v9_.tls-b.default.svc.cluster.local",
        "outbound_.8443_._.tls-a.default.svc.cluster.local",
        "tls-a.default.svc.cluster.local",
    ] {
        assert_eq!(who(at, unknown), None, "{unknown} was served");
    }
    assert_eq!(
        gateway.rejected_updates(),
        0,
        "the gateway refused an update"
    );
}

#[test]
fn envoy_as_east_west_gateway_passes_mesh_sni_through() {
    run_auto_passthrough(Plane::Envoy);
}

#[test]
fn sextant_proxy_as_east_west_gateway_passes_mesh_sni_through() {
    run_auto_passthrough(Plane::Sextant);
}

#[test]
fn envoy_as_ingress_gateway_passes_tls_through_by_sni() {
    run_passthrough(Plane::Envoy);
}

#[test]
fn sextant_proxy_as_ingress_gateway_passes_tls_through_by_sni() {
    run_passthrough(Plane::Sextant);
}

/// The greeting of the TCP backend through `at` over TLS with SNI `host` (`openssl s_client`), if any.
fn greeting_over_tls(at: SocketAddr, host: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(at.to_string())
        .args(["-servername", host])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the openssl CLI");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("hello from "))
        .map(str::to_string)
}

fn run_terminating(plane: Plane) {
    let (dir, config) = scratch_config(&format!("gateway-tls-terminate-{plane:?}"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=echo.example",
        ])
        .current_dir(&dir)
        .output()
        .expect("the openssl CLI");
    assert!(out.status.success(), "openssl req: {out:?}");
    let (v1, v2) = (echo_backend("v1"), echo_backend("v2"));
    let (side, pod) = (HeldPort::hold(), HeldPort::hold());
    let server = format!(
        "protocol: TLS}}\n    hosts: [echo.example]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let text = mesh(v1.port(), v2.port(), side.port(), pod.port())
        .replace("protocol: TCP}\n    hosts: [\"*\"]\n", &server);
    assert!(
        text.contains("mode: SIMPLE"),
        "the server was rewritten:\n{text}"
    );
    std::fs::write(config.join("mesh.yaml"), text).expect("mesh");
    write_atomically(&config.join("shift.yaml"), &shift(side.port(), 100));
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let gateway = start_gateway(plane, &dir, xds);
    let at = SocketAddr::from(([127, 0, 0, 1], pod.port()));
    wait_until(
        Duration::from_secs(60),
        "a TLS connection ended at the gateway",
        || greeting_over_tls(at, "echo.example").is_some(),
    );
    for _ in 0..5 {
        assert_eq!(greeting_over_tls(at, "echo.example").as_deref(), Some("v1"));
    }
    assert_eq!(
        version_at(at),
        None,
        "a plain-text connection got the backend's greeting past a TLS server"
    );
    assert_eq!(
        gateway.rejected_updates(),
        0,
        "the gateway refused an update"
    );
}

#[test]
fn envoy_as_ingress_gateway_terminates_tls_in_front_of_tcp() {
    run_terminating(Plane::Envoy);
}

#[test]
fn sextant_proxy_as_ingress_gateway_terminates_tls_in_front_of_tcp() {
    run_terminating(Plane::Sextant);
}

/// At a sidecar: `a.example` and `b.example` on `port` (TLS), routed by SNI to `tls-a` and `tls-b` (their
/// own ports `a_port`, `b_port` held, endpoints `a` and `b`).
fn sidecar_sni(port: u16, a_port: u16, b_port: u16, a: u16, b: u16) -> String {
    format!(
        r#"{a}{b}apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external}}
spec:
  hosts: [a.example, b.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: {port}, name: tls, protocol: TLS}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: by-sni}}
spec:
  hosts: [a.example, b.example]
  tls:
  - match: [{{port: {port}, sniHosts: [a.example]}}]
    route: [{{destination: {{host: tls-a, port: {{number: {a_port}}}}}}}]
  - match: [{{sniHosts: [b.example]}}]
    route: [{{destination: {{host: tls-b, port: {{number: {b_port}}}}}}}]
"#,
        a = tls_service("tls-a", a_port, a),
        b = tls_service("tls-b", b_port, b),
    )
}

fn run_sidecar_sni(plane: Plane) {
    let (dir, config) = scratch_config(&format!("sidecar-sni-{plane:?}"));
    let ((a, _a), (b, _b)) = (
        tls_backend(&dir, "a.example"),
        tls_backend(&dir, "b.example"),
    );
    let held = [HeldPort::hold(), HeldPort::hold(), HeldPort::hold()];
    std::fs::write(
        config.join("mesh.yaml"),
        sidecar_sni(
            held[0].port(),
            held[1].port(),
            held[2].port(),
            a.port(),
            b.port(),
        ),
    )
    .expect("mesh");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let sidecar = plane.start(
        &dir.join("sidecar"),
        xds,
        "GRPC",
        PRODUCTPAGE_NODE,
        PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
    );
    let at = held[0].addr;
    wait_until(
        Duration::from_secs(60),
        "a TLS connection through the sidecar",
        || who(at, "a.example").is_some(),
    );
    for _ in 0..5 {
        assert_eq!(who(at, "a.example").as_deref(), Some("backend a.example"));
        assert_eq!(who(at, "b.example").as_deref(), Some("backend b.example"));
    }
    assert_eq!(
        sidecar.rejected_updates(),
        0,
        "the sidecar refused an update"
    );
}

#[test]
fn envoy_as_sidecar_routes_tls_by_sni() {
    run_sidecar_sni(Plane::Envoy);
}

#[test]
fn sextant_proxy_as_sidecar_routes_tls_by_sni() {
    run_sidecar_sni(Plane::Sextant);
}
