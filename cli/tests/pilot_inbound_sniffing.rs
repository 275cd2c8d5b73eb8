//! Inbound protocol sniffing, as a user of a port named without a protocol (`web`, `lines`) notices it: the
//! workload `web` runs in a network namespace of its own (a pod), its inbound connections captured to its
//! sidecar's `virtualInbound` (iptables REDIRECT to 15006, the inbound half of istio-init's rules), and
//! `front`'s sidecar on the host calls it over mesh mTLS (`ISTIO_MUTUAL`). Each sidecar is Envoy 1.40 or
//! `sextant proxy`, in all four pairings.
//!
//! An HTTP request through `front` reaches `web`'s sidecar as HTTP although the port declares no protocol —
//! `front` announces HTTP in its ALPN (`istio-http/1.1`) and `web`'s sidecar takes the connection to its HTTP
//! chain — so an AuthorizationPolicy DENY on a path answers 403 on that path and 200 on another (on a TCP
//! chain the DENY would refuse every connection); plain-text HTTP straight to the pod is sniffed the same
//! way. A client-first TCP protocol on such a port still passes over mesh mTLS, and `web`'s sidecar
//! terminated mesh mTLS for them (its `ssl.handshake`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{
    HeldPort, Netns, Plane, Proc, ads_bootstrap_with_admin, peers, python, scratch_config,
    start_pilot, wait_until, write_atomically,
};

const WAIT: Duration = Duration::from_secs(60);
/// Where `web` listens in its pod: HTTP, and a client-first line protocol.
const APP_HTTP: u16 = 8080;
const APP_LINES: u16 = 7070;
/// The sidecar's admin in the pod (a network namespace of its own: nothing else takes the port).
const ADMIN: u16 = 15000;
const HOST: &str = "web.shop.svc.cluster.local";
const FRONT_ID: &str = "sidecar~127.0.0.1~front-1.shop~shop.svc.cluster.local";
const FRONT_NODE: &str = "{id: \"sidecar~127.0.0.1~front-1.shop~shop.svc.cluster.local\", cluster: front.shop, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: shop, SERVICE_ACCOUNT: front, LABELS: {app: front}}}";

/// `web`'s application: any GET answered `web PATH`; each line on the other port answered `db: LINE`.
const APP: &str = r#"
import socketserver, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Web(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("web " + self.path).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Lines(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(b"db: " + line)
            self.wfile.flush()

class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True

lines = ThreadingTCP(("0.0.0.0", int(sys.argv[2])), Lines)
threading.Thread(target=lines.serve_forever, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Web).serve_forever()
"#;

/// `/admin/*` denied on web's HTTP port. On a TCP chain the path is dropped (Istio's rule for TCP: a DENY
/// denies more, not less), which would refuse every connection to the port: a 403 on that path alone says
/// the request was seen as HTTP.
const DENY_ADMIN: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  action: DENY\n  rules: [{to: [{operation: {ports: [\"8080\"], paths: [\"/admin/*\"]}}]}]\n";

/// `web`'s service: two ports named without a protocol (`front`'s listeners bind them on 127.0.0.1), its
/// endpoint the pod, mesh mTLS to it.
fn mesh(web_port: u16, lines_port: u16, pod: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {web_port}, name: web}}, {{number: {lines_port}, name: lines}}]
  endpoints: [{{address: {pod}, ports: {{web: {APP_HTTP}, lines: {APP_LINES}}}, labels: {{app: web}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: shop}}
spec:
  host: {HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
"#
    )
}

/// The pod: a network namespace joined to the host by a veth pair (host `SUBNET.1`, pod `SUBNET.2`), its
/// inbound TCP redirected to 15006, `web`'s application running in it.
struct Pod {
    ns: Netns,
    host_ip: String,
    ip: String,
    _app: Proc,
}

fn pod(dir: &std::path::Path, n: u32) -> Pod {
    let pid = std::process::id();
    // Unique per process and test: the tests of this file run at once.
    let subnet = format!("10.{}.{}", 240 + n, pid % 250);
    let ns = Netns::create(&format!("sniff{n}"));
    let (outer, inner) = (format!("sxs{pid}{n}h"), format!("sxs{pid}{n}p"));
    common::ip(&[
        "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns.name,
    ]);
    let host_ip = format!("{subnet}.1");
    common::ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &outer]);
    common::ip(&["link", "set", &outer, "up"]);
    let ip = format!("{subnet}.2");
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", &inner]);
    ns.ip(&["link", "set", &inner, "up"]);
    std::fs::write(dir.join("app.py"), APP).expect("app");
    let mut cmd = ns.command(python());
    cmd.arg(dir.join("app.py"))
        .args([APP_HTTP.to_string(), APP_LINES.to_string()]);
    let mut app = Proc::spawn("web", cmd, dir.join("app.log"));
    wait_until(WAIT, "web's application to answer", || {
        assert!(app.alive(), "web exited:\n{}", app.log());
        ns.curl(&[&format!("http://{ip}:{APP_HTTP}/")])
            .is_some_and(|(s, _)| s == 200)
    });
    // Connections from the host, to any port, go to the sidecar; the sidecar's own (to pilot, and on to
    // the application from 127.0.0.6) are not captured.
    ns.run(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            &inner,
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            "15006",
        ],
    );
    Pod {
        ns,
        host_ip,
        ip,
        _app: app,
    }
}

/// `web`'s sidecar in the pod, its configuration from `xds`: REDIRECT interception (the default), its admin on
/// the pod's 127.0.0.1:15000.
fn web_sidecar(plane: Plane, pod: &Pod, dir: &std::path::Path, xds: SocketAddr) -> Proc {
    let id = format!("sidecar~{}~web-1.shop~shop.svc.cluster.local", pod.ip);
    let mut cmd = match plane {
        Plane::Sextant => {
            let mut cmd = pod.ns.command(env!("CARGO_BIN_EXE_sextant"));
            cmd.args(["proxy", "--xds-addr", &xds.to_string(), "--node-id", &id])
                .args(["--admin-addr", &format!("127.0.0.1:{ADMIN}")])
                .args(["--stats-addr", "127.0.0.1:15090"])
                .env("POD_NAMESPACE", "shop")
                .env("SERVICE_ACCOUNT", "web")
                .env("ISTIO_METAJSON_LABELS", r#"{"app": "web"}"#)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
            cmd
        }
        Plane::Envoy => {
            let node = format!(
                "{{id: \"{id}\", cluster: web.shop, metadata: {{NAMESPACE: shop, SERVICE_ACCOUNT: web, LABELS: {{app: web}}}}}}"
            );
            let path = dir.join("envoy.yaml");
            std::fs::write(&path, ads_bootstrap_with_admin(xds, ADMIN, "GRPC", &node))
                .expect("bootstrap");
            let mut cmd = pod.ns.command(peers().join("venv/bin/envoy"));
            cmd.arg("-c").arg(&path).args([
                "--disable-hot-restart",
                "--use-dynamic-base-id",
                "-l",
                "warning",
            ]);
            cmd
        }
    };
    cmd.current_dir(dir);
    let mut sidecar = Proc::spawn("web sidecar", cmd, dir.join("sidecar.log"));
    wait_until(WAIT, "web's sidecar to be ready", || {
        assert!(sidecar.alive(), "web's sidecar exited:\n{}", sidecar.log());
        admin(pod, "/ready").is_some_and(|(s, _)| s == 200)
    });
    sidecar
}

/// `path` from the admin of `pod`'s sidecar.
fn admin(pod: &Pod, path: &str) -> Option<(u16, String)> {
    pod.ns.curl(&[&format!("http://127.0.0.1:{ADMIN}{path}")])
}

/// A counter of `pod`'s sidecar (Envoy's names on both).
fn stat(pod: &Pod, name: &str) -> u64 {
    admin(pod, &format!("/stats?filter=^{name}$"))
        .and_then(|(_, body)| {
            body.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// The xDS updates `pod`'s sidecar refused.
fn rejected(pod: &Pod) -> u64 {
    admin(pod, "/stats?filter=update_rejected")
        .map(|(_, body)| {
            body.lines()
                .filter_map(|l| l.split_once(": ")?.1.trim().parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(u64::MAX)
}

/// `GET path` to `at` for `web`: status and body (status 0 when the connection failed or was closed).
fn get(at: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://{at}{path}"))
        .output()
        .expect("curl (installed by .ci/peers)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
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

fn run(client: Plane, server: Plane, n: u32) {
    let (dir, config) = scratch_config(&format!("pilot-inbound-sniffing-{client:?}-{server:?}"));
    let pod = pod(&dir, n);
    let (web_port, lines_port) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        mesh(web_port.port(), lines_port.port(), &pod.ip),
    )
    .expect("mesh");
    write_atomically(&config.join("deny.yaml"), DENY_ADMIN);
    // On the host's end of the veth, where the pod reaches it (the host reaches it there too).
    let (_pilot, xds, _) = start_pilot(&config, &format!("{}:0", pod.host_ip));
    let web_dir = dir.join("web");
    std::fs::create_dir_all(&web_dir).expect("dir");
    let _web = web_sidecar(server, &pod, &web_dir, xds);
    let front = client.start(
        &dir.join("front"),
        xds,
        "GRPC",
        FRONT_NODE,
        FRONT_ID,
        &[
            ("POD_NAMESPACE", "shop"),
            ("SERVICE_ACCOUNT", "front"),
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("ISTIO_METAJSON_LABELS", r#"{"app": "front"}"#),
        ],
    );
    let via_front = format!("127.0.0.1:{}", web_port.port());
    let lines_via_front = SocketAddr::from(([127, 0, 0, 1], lines_port.port()));
    let direct = format!("{}:{APP_HTTP}", pod.ip);

    wait_until(WAIT, "front to reach web over mesh mTLS", || {
        get(&via_front, "/") == (200, "web /".into())
    });
    // The DENY on a path is HTTP RBAC: web's sidecar took front's mesh mTLS to its HTTP chain.
    assert_eq!(
        get(&via_front, "/admin/x"),
        (403, "RBAC: access denied".into())
    );
    assert_eq!(
        get(&via_front, "/shop/admin"),
        (200, "web /shop/admin".into())
    );
    // Plain-text HTTP straight to the pod: found by the HTTP inspector, the same HTTP chain.
    assert_eq!(
        get(&direct, "/admin/x"),
        (403, "RBAC: access denied".into())
    );
    assert_eq!(get(&direct, "/"), (200, "web /".into()));
    // A client-first TCP protocol on a port of undeclared protocol still passes, over mesh mTLS, as TCP.
    assert_eq!(
        line_through(lines_via_front, "PING").as_deref(),
        Some("db: PING")
    );
    let handshakes = stat(&pod, "listener.0.0.0.0_15006.ssl.handshake");
    assert!(
        handshakes >= 2,
        "web's sidecar ended mesh mTLS for HTTP and for TCP: {handshakes}"
    );
    assert_eq!(rejected(&pod), 0, "web's sidecar refused an update");
    assert_eq!(
        front.rejected_updates(),
        0,
        "front's sidecar refused an update"
    );
}

#[test]
fn envoy_to_envoy_sees_http_on_a_port_of_undeclared_protocol() {
    run(Plane::Envoy, Plane::Envoy, 0);
}

#[test]
fn sextant_to_sextant_sees_http_on_a_port_of_undeclared_protocol() {
    run(Plane::Sextant, Plane::Sextant, 1);
}

#[test]
fn envoy_client_and_sextant_server_see_http_on_a_port_of_undeclared_protocol() {
    run(Plane::Envoy, Plane::Sextant, 2);
}

#[test]
fn sextant_client_and_envoy_server_see_http_on_a_port_of_undeclared_protocol() {
    run(Plane::Sextant, Plane::Envoy, 3);
}
