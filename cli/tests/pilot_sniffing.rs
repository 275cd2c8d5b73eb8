//! One port for HTTP and TCP, as Istio's protocol sniffing: on a port where a service of undeclared
//! protocol (port name `web`) and a declared TCP service (`tcp-db`) meet, Envoy 1.40 and `sextant proxy`
//! fed by `sextant pilot` route plain HTTP/1.1 and prior-knowledge HTTP/2 by `Host` to the HTTP service and
//! pass any other client's bytes to the TCP service.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, HeldPort, PRODUCTPAGE_ID, PRODUCTPAGE_NODE, Plane, call, scratch_config, start_pilot,
    wait_until,
};

/// A client-first line protocol: answers each line with `db: LINE`.
fn line_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut out = s.try_clone().expect("clone");
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { return };
                    if writeln!(out, "db: {line}").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One line sent through `at` as raw bytes, and the line answered.
fn line_through(at: SocketAddr, line: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    writeln!(s, "{line}").ok()?;
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).ok()?;
    Some(answer.trim_end().to_string())
}

/// `GET /` over HTTP/2 with prior knowledge (h2c) through `at` for `host`: status and body.
fn h2c(at: SocketAddr, host: &str) -> Option<(String, String)> {
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "5"])
        .args(["-H", &format!("host: {host}")])
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(format!("http://{at}/"))
        .output()
        .expect("curl (installed by .ci/peers)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n')?;
    Some((status.to_string(), body.to_string()))
}

fn mesh(port: u16, web: SocketAddr, db: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web}}
spec:
  hosts: [web.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: web}}]
  endpoints: [{{address: 127.0.0.1, ports: {{web: {web}}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: tcp-db}}]
  endpoints: [{{address: 127.0.0.1, ports: {{tcp-db: {db}}}}}]
"#,
        web = web.port(),
        db = db.port(),
    )
}

fn run(plane: Plane) {
    let (dir, config) = scratch_config(&format!("pilot-sniffing-{plane:?}"));
    let web = Backend::answering("web");
    let db = line_backend();
    let held = HeldPort::hold();
    std::fs::write(config.join("mesh.yaml"), mesh(held.port(), web.addr, db)).expect("mesh");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let proxy = plane.start(
        &dir.join("proxy"),
        xds,
        "GRPC",
        PRODUCTPAGE_NODE,
        PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
    );
    let at = SocketAddr::from(([127, 0, 0, 1], held.port()));
    wait_until(Duration::from_secs(60), "HTTP to reach web", || {
        call(at, "web.default.svc.cluster.local", "/").is_some_and(|(s, b)| s == 200 && b == "web")
    });
    assert_eq!(line_through(at, "PING").as_deref(), Some("db: PING"));
    assert_eq!(
        h2c(at, "web.default.svc.cluster.local"),
        Some(("200 2".to_string(), "web".to_string()))
    );
    // HTTP is routed: a host no service has is not passed to the TCP service.
    let (status, _) = call(at, "unknown.example", "/").expect("an answer");
    assert_eq!(status, 404);
    assert_eq!(proxy.rejected_updates(), 0);
}

#[test]
fn envoy_sniffs_http_and_tcp_on_one_port() {
    run(Plane::Envoy);
}

#[test]
fn sextant_proxy_sniffs_http_and_tcp_on_one_port() {
    run(Plane::Sextant);
}
