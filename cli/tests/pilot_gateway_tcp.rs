//! Istio's TCP traffic-shifting task through an ingress gateway, on both proxies: a Gateway with a `TCP`
//! server, a VirtualService `tcp` route bound to it sending 80 % of connections to subset v1 of `tcp-echo` and
//! 20 % to v2 (a DestinationRule's subsets, one endpoint each), the gateway a `router~` node of Envoy 1.40 or
//! `sextant proxy` fed by `sextant pilot`. Each backend greets a connection with its version, so the split is
//! counted as a client sees it; then the route moves to 100 % v2 and every new connection goes there.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{HeldPort, Plane, scratch, start_pilot, wait_until, write_atomically};

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

/// The version greeting one connection through the gateway at `addr`, if any.
fn version_at(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.trim().strip_prefix("hello from ").map(str::to_string)
}

/// The mesh: tcp-echo with endpoints v1 and v2, its subsets, the gateway's service (port `side`, its pod
/// listening on `pod`) and a Gateway with one TCP server.
fn mesh(v1: u16, v2: u16, side: u16, pod: u16) -> String {
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
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  hosts: [istio-ingressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {side}, name: tcp}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tcp: {pod}}}, labels: {{istio: ingressgateway}}}}]
---
apiVersion: networking.istio.io/v1
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
    let dir = scratch(&format!("gateway-tcp-{plane:?}"));
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let (v1, v2) = (echo_backend("v1"), echo_backend("v2"));
    let (side, pod) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(v1.port(), v2.port(), side.port(), pod.port()),
    )
    .expect("mesh");
    write_atomically(&config.join("shift.yaml"), &shift(side.port(), 80));
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let gateway = plane.start(
        &dir.join("gateway"),
        xds,
        "GRPC",
        GATEWAY_NODE,
        GATEWAY_ID,
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("ISTIO_METAJSON_LABELS", r#"{"istio": "ingressgateway"}"#),
        ],
    );
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
