//! The mesh as pods live in it: two network namespaces (pods A and B) on a bridge, each with the rules
//! `sextant proxy-init` writes (istio-init's) and a sidecar running as uid/gid 1337, an unmodified curl in A
//! calling B's service by name, pilot and the hub on the host side of the bridge.
//!
//! Each sidecar keeps its own key: its certificate is signed by pilot's CA for the service-account token
//! mounted in the pod, and its configuration comes over pilot's secure port (`sextant proxy` does both
//! itself; beside Envoy, `sextant agent` does, serving Envoy its secrets over SDS on a socket in the pod).
//! The call is captured in A, goes to B over mesh mTLS with those certificates, is captured again in B,
//! checked by B's sidecar with the hub and handed to the application. A user would notice: the answer is
//! the application's; the hub's Prometheus exposition shows the request with both workloads and principals
//! and `mutual_tls`; a hub Policy denying a path answers 403 at A's curl; repeating a request costs the hub
//! nothing (B's check cache); neither sidecar refused any configuration. Then B's security resources, as
//! pod C without a sidecar sees them: PERMISSIVE lets its plain text in, an AuthorizationPolicy allowing
//! only A's principal answers it 403 (A still gets through), and PeerAuthentication STRICT refuses its
//! plain text outright while A's mesh mTLS still passes.
//!
//! Run for `sextant proxy` on both sides, and with Envoy 1.40 + `sextant agent` on either side (its Check
//! through the hub's ext_authz, its telemetry through the hub's access-log service, as pilot configures it).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    HUB_HOST, Netns, Plane, Proc, addrs_in, eventually, peers, python, scratch, wait_until,
};

const HOST: &str = "reviews.default.svc.cluster.local";
const PORT: u16 = 9080;
const DB_HOST: &str = "db.default.svc.cluster.local";
const DB_PORT: u16 = 9090;
const HUB_PORT: u16 = 9091;
const WAIT: Duration = Duration::from_secs(60);

/// The hub's policy: `/private` denied to reviews.
const POLICY: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: reviews-paths, namespace: default}
spec:
  selector: 'destination.workload.name == "reviews"'
  rules:
  - name: no-private
    # TCP connections have no path: a DENY rule that cannot be evaluated denies, so say what it means.
    when: 'has(request.url_path) && request.url_path == "/private"'
    action: DENY
"#;

/// Only productpage's principal may call reviews.
const ALLOW_PRODUCTPAGE: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-callers, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
"#;

/// Reviews accepts mesh mTLS only.
const STRICT: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-strict, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
"#;

/// B's application: answers every GET with its name.
const BACKEND: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"reviews-v1"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

import socketserver, threading

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)

socketserver.ThreadingTCPServer.allow_reuse_address = True
db = socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[3])), Echo)
threading.Thread(target=db.serve_forever, daemon=True).start()
ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"#;

/// A's TCP client: connects to B's database by name (at B's address), sends a line, prints the echo.
const DB_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"hello db")
print(s.recv(64).decode(), flush=True)
"#;

/// Pilot's configuration: reviews (HTTP) and db (TCP) in B, mesh mTLS to both, and the hub on the host.
fn mesh(b: &str, hub: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {PORT}, name: http}}]
  endpoints: [{{address: {b}, labels: {{app: reviews, version: v1}}, serviceAccount: bookinfo-reviews}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: {HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [{DB_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {DB_PORT}, name: tcp, protocol: TCP}}]
  endpoints: [{{address: {b}, labels: {{app: reviews, version: v1}}, serviceAccount: bookinfo-reviews}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: {DB_HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
"#
    ) + &common::hub_service(HUB_PORT, hub)
}

/// The host side of the pods' network: a bridge in the test's own namespace, deleted on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.0])
            .status();
    }
}

/// A pod: its namespace and address.
struct Pod {
    ns: Netns,
    ip: String,
}

impl Pod {
    /// `curl` from the pod's application (root, so captured) to reviews by name, at B's address.
    fn call(&self, b: &str, path: &str) -> Option<(u16, String)> {
        let resolve = format!("{HOST}:{PORT}:{b}");
        self.ns.curl(&[
            "--resolve",
            &resolve,
            &format!("http://{HOST}:{PORT}{path}"),
        ])
    }

    /// The sidecar's stats, whole.
    fn stats(&self) -> String {
        self.ns
            .curl(&["http://127.0.0.1:15000/stats"])
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// One counter of the sidecar, by its exact name.
    fn stat(&self, name: &str) -> u64 {
        self.stats()
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Pushes the sidecar refused.
    fn rejected(&self) -> u64 {
        self.stats()
            .lines()
            .filter(|l| l.contains("update_rejected"))
            .filter_map(|l| l.split_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    }
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The sextant binary where uid 1337 can run it (the checkout may be private to root).
fn public_binary(dir: &Path) -> PathBuf {
    publish(dir, Path::new(env!("CARGO_BIN_EXE_sextant")))
}

/// Envoy's binary where uid 1337 can run it (the peers may be in a directory private to root): the one the
/// venv's `envoy` entry point runs.
fn public_envoy(dir: &Path) -> PathBuf {
    let lib = peers().join("venv/lib");
    let binary = std::fs::read_dir(&lib)
        .expect("the venv's lib")
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no envoy binary under {}", lib.display()));
    publish(dir, &binary)
}

/// `source` linked (or copied) into `dir/bin`, every directory on the way and the file readable and
/// executable by all.
fn publish(dir: &Path, source: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = bin.join(source.file_name().expect("a file name"));
    if !exe.exists() && std::fs::hard_link(source, &exe).is_err() {
        std::fs::copy(source, &exe).expect("copy the binary");
    }
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    exe
}

/// The pods on a bridge whose host address is returned: A and B, with the rules of `sextant proxy-init`
/// (istio-init's defaults) and B's application started, and C, a pod without a sidecar.
fn network(dir: &Path, sextant: &Path) -> (Bridge, [Pod; 3], String, Proc) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    // Unique per process and call: the tests of this file run at once.
    let subnet = format!("10.{}.{}", 250 + n % 5, pid % 250);
    let bridge = Bridge(format!("sxbr{pid}n{n}"));
    common::ip(&["link", "add", &bridge.0, "type", "bridge"]);
    let host = format!("{subnet}.254");
    common::ip(&["addr", "add", &format!("{host}/24"), "dev", &bridge.0]);
    common::ip(&["link", "set", &bridge.0, "up"]);
    let pod = |name: &str, last: u8| {
        let p = Pod {
            ns: Netns::create(&format!("mesh{n}-{name}")),
            ip: format!("{subnet}.{last}"),
        };
        let (outer, inner) = (format!("sx{pid}{n}{name}h"), format!("sx{pid}{n}{name}p"));
        common::ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &p.ns.name,
        ]);
        common::ip(&["link", "set", &outer, "master", &bridge.0, "up"]);
        p.ns.ip(&["addr", "add", &format!("{}/24", p.ip), "dev", &inner]);
        p.ns.ip(&["link", "set", &inner, "up"]);
        p
    };
    let (a, b, c) = (pod("a", 1), pod("b", 2), pod("c", 3));
    std::fs::write(dir.join("backend.py"), BACKEND).expect("backend");
    let mut cmd = b.ns.command(python());
    cmd.arg(dir.join("backend.py"))
        .args([&b.ip, &PORT.to_string(), &DB_PORT.to_string()]);
    let mut backend = Proc::spawn("backend", cmd, dir.join("backend.log"));
    wait_until(WAIT, "B's application to answer", || {
        assert!(backend.alive(), "backend exited:\n{}", backend.log());
        b.ns.curl(&[&format!("http://{}:{PORT}/", b.ip)])
            .is_some_and(|(s, _)| s == 200)
    });
    for p in [&a, &b] {
        let out =
            p.ns.command(sextant)
                .arg("proxy-init")
                .output()
                .expect("run proxy-init");
        assert!(
            out.status.success(),
            "proxy-init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (bridge, [a, b, c], host, backend)
}

/// Pilot as the pods see it: its secure (TLS) port, the mesh root, and the bootstrap tokens of the pods'
/// service accounts.
struct Pilot {
    secure: SocketAddr,
    root: PathBuf,
    tokens: PathBuf,
}

/// A command run in `pod` as uid/gid 1337, the sidecar's user (which `proxy-init` leaves uncaptured).
fn as_proxy_user(pod: &Pod) -> Command {
    let mut cmd = pod.ns.command("setpriv");
    cmd.args(["--reuid", "1337", "--regid", "1337", "--clear-groups"]);
    cmd
}

/// Starts the sidecar of `app` in `pod` as uid/gid 1337 and waits until it is ready: `sextant proxy`, or
/// Envoy and the `sextant agent` beside it (their processes are returned). It keeps its own key:
/// its certificate is signed by `pilot` for the token mounted in the pod (as a projected service-account
/// token would be), and its configuration comes over pilot's secure port.
fn sidecar(
    plane: Plane,
    pod: &Pod,
    dir: &Path,
    sextant: &Path,
    app: &str,
    pilot: &Pilot,
) -> Vec<Proc> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir.join(app);
    std::fs::create_dir_all(&dir).expect("sidecar dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    // What the pod mounts: the mesh root and its service account's token, readable by the sidecar.
    let mount = |from: &Path, name: &str| {
        let to = dir.join(name);
        std::fs::copy(from, &to).expect("mount into the pod");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        to
    };
    let root = mount(&pilot.root, "root-cert.pem");
    let token = mount(
        &pilot.tokens.join(format!("default/bookinfo-{app}")),
        "token",
    );
    let id = format!(
        "sidecar~{}~{app}-v1.default~default.svc.cluster.local",
        pod.ip
    );
    let ca = format!("https://{}", pilot.secure);
    let mut procs = Vec::new();
    let mut cmd = as_proxy_user(pod);
    match plane {
        Plane::Sextant => {
            cmd.arg(sextant)
                .args(["proxy", "--xds-addr", &ca, "--node-id", &id])
                .arg("--root-cert")
                .arg(&root)
                .arg("--token-file")
                .arg(&token)
                .env("POD_NAMESPACE", "default")
                .env("SERVICE_ACCOUNT", format!("bookinfo-{app}"))
                .env(
                    "ISTIO_METAJSON_LABELS",
                    format!(r#"{{"app": "{app}", "version": "v1"}}"#),
                )
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
        }
        Plane::Envoy => {
            // pilot-agent's part: the key, the CSR, and SDS to Envoy over a socket in the pod.
            let socket = dir.join("sds.sock");
            let mut agent = as_proxy_user(pod);
            agent
                .arg(sextant)
                .args(["agent", "--ca-addr", &ca, "--sds-socket"])
                .arg(&socket)
                .arg("--root-cert")
                .arg(&root)
                .arg("--token-file")
                .arg(&token)
                .env("POD_NAMESPACE", "default")
                .env("SERVICE_ACCOUNT", format!("bookinfo-{app}"))
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1");
            let mut agent = Proc::spawn("sextant agent", agent, dir.join("agent.log"));
            agent.wait_for_line("workload certificate installed", WAIT);
            procs.push(agent);
            let node = format!(
                "{{id: \"{id}\", cluster: {app}, metadata: {{NAMESPACE: default, SERVICE_ACCOUNT: bookinfo-{app}, LABELS: {{app: {app}, version: v1}}, SEXTANT_LOCAL_CERT: \"true\"}}}}"
            );
            let bootstrap = common::agent_bootstrap(pilot.secure, 15000, &node, &root, &socket);
            let path = dir.join("envoy.yaml");
            std::fs::write(&path, bootstrap).expect("bootstrap");
            let scratch = dir.parent().unwrap_or(&dir);
            cmd.arg(public_envoy(scratch)).arg("-c").arg(&path).args([
                "--disable-hot-restart",
                "--use-dynamic-base-id",
                "-l",
                "warning",
            ]);
        }
    }
    procs.push(Proc::spawn("sidecar", cmd, dir.join("sidecar.log")));
    wait_until(WAIT, &format!("{app}'s sidecar to be ready"), || {
        for p in &mut procs {
            assert!(p.alive(), "{app}'s sidecar exited:\n{}", p.log());
        }
        pod.ns
            .curl(&["http://127.0.0.1:15000/ready"])
            .is_some_and(|(s, _)| s == 200)
    });
    procs
}

/// A host-side process printing a ready line with its addresses: it and the line.
fn start(dir: &Path, name: &'static str, args: &[&str], ready: &str) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(args).env("RUST_LOG", "info").env("NO_COLOR", "1");
    let mut proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")));
    let line = proc.wait_for_line(ready, Duration::from_secs(120));
    (proc, line)
}

/// `GET http://addr/path` from the host: the body.
fn fetch(addr: SocketAddr, path: &str) -> String {
    common::get(addr, path, &[])
        .map(|r| r.body)
        .unwrap_or_default()
}

fn run(plane_a: Plane, plane_b: Plane) {
    if !root() {
        eprintln!(
            "skipped: mesh_pods needs root (namespaces, iptables, uid 1337); CI runs it as root"
        );
        return;
    }
    let dir = scratch(&format!("mesh-pods-{plane_a:?}-{plane_b:?}"));
    let sextant = public_binary(&dir);
    let (bridge, [a, b, c], host, backend) = network(&dir, &sextant);

    let hub_config = dir.join("hub");
    std::fs::create_dir_all(&hub_config).expect("hub config");
    std::fs::write(hub_config.join("policy.yaml"), POLICY).expect("policy");
    let any = format!("{host}:0");
    let cache = common::target_dir().join("sextant-test-component-cache");
    let (hub, hub_line) = start(
        &dir,
        "hub",
        &[
            "hub",
            "--config-dir",
            &hub_config.to_string_lossy(),
            "--grpc-addr",
            &any,
            "--admin-addr",
            &any,
            "--prometheus-addr",
            &any,
            "--adapter-cache",
            &cache.to_string_lossy(),
        ],
        "hub: gRPC on ",
    );
    let [hub_grpc, hub_admin, hub_metrics] = addrs_in(&hub_line)[..] else {
        panic!("the hub's ready line names three addresses")
    };
    let pilot_config = dir.join("pilot");
    let tokens = pilot_config.join("tokens");
    std::fs::create_dir_all(tokens.join("default")).expect("pilot config");
    std::fs::write(pilot_config.join("mesh.yaml"), mesh(&b.ip, hub_grpc)).expect("mesh");
    for app in ["productpage", "reviews"] {
        let token = format!("{app}-token-{}", std::process::id());
        std::fs::write(tokens.join(format!("default/bookinfo-{app}")), token).expect("token");
    }
    let ca = dir.join("ca");
    let hub_service = format!("{HUB_HOST}:{HUB_PORT}");
    let (pilot, pilot_line) = start(
        &dir,
        "pilot",
        &[
            "pilot",
            "--config-dir",
            &pilot_config.to_string_lossy(),
            "--xds-addr",
            &any,
            "--monitoring-addr",
            &any,
            "--hub-service",
            &hub_service,
            "--ca-dir",
            &ca.to_string_lossy(),
            "--secure-xds-addr",
            &any,
        ],
        "pilot: xDS on ",
    );
    let pilot_addrs = Pilot {
        secure: common::https_addr_in(&pilot_line)
            .unwrap_or_else(|| panic!("no secure address in {pilot_line}")),
        root: ca.join("root-cert.pem"),
        tokens,
    };

    let sidecar_a = sidecar(plane_a, &a, &dir, &sextant, "productpage", &pilot_addrs);
    let sidecar_b = sidecar(plane_b, &b, &dir, &sextant, "reviews", &pilot_addrs);

    // The unmodified application in A reaches B's, over mesh mTLS, checked by the hub.
    wait_until(WAIT, "A's call to reach B's application", || {
        a.call(&b.ip, "/")
            .is_some_and(|(s, body)| s == 200 && body == "reviews-v1")
    });
    wait_until(WAIT, "the hub's policy to deny /private", || {
        a.call(&b.ip, "/private").is_some_and(|(s, _)| s == 403)
    });
    if matches!(plane_b, Plane::Sextant) {
        // A second identical request is decided by B's check cache: no hub call.
        let calls = format!("cluster.outbound|{HUB_PORT}||{HUB_HOST}.hub.check.calls");
        assert_eq!(a.call(&b.ip, "/").map(|r| r.0), Some(200));
        let before = b.stat(&calls);
        assert_eq!(a.call(&b.ip, "/").map(|r| r.0), Some(200));
        assert_eq!(a.call(&b.ip, "/private").map(|r| r.0), Some(403));
        assert_eq!(b.stat(&calls), before, "a cached decision called the hub");
    }

    // The hub saw the request as Istio's standard metric: both workloads, A's principal, mutual TLS.
    let mut want = vec![
        "reporter=\"destination\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-productpage\"",
        "destination_workload=\"reviews\"",
        "connection_security_policy=\"mutual_tls\"",
        "response_code=\"200\"",
    ];
    if matches!((plane_a, plane_b), (Plane::Sextant, Plane::Sextant)) {
        // The client's workload travels with the request between Sextant sidecars.
        want.push("source_workload=\"productpage\"");
    }
    let reported = |want: &[&str]| {
        fetch(hub_metrics, "/metrics")
            .lines()
            .any(|l| l.starts_with("istio_requests_total{") && want.iter().all(|w| l.contains(w)))
    };
    if !eventually(WAIT, || reported(&want)) {
        let seen: Vec<String> = fetch(hub_metrics, "/metrics")
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .map(str::to_string)
            .collect();
        panic!(
            "no series with {want:?} in the hub's metrics; it has:\n{}",
            seen.join("\n")
        );
    }
    // Between Sextant sidecars the server's workload comes back with the response for A's report.
    let answered_by = match (plane_a, plane_b) {
        (Plane::Sextant, Plane::Sextant) => "destination_workload=\"reviews\"",
        _ => "reporter=\"source\"",
    };
    wait_until(WAIT, "A's report in the hub's metrics", || {
        fetch(hub_metrics, "/metrics").lines().any(|l| {
            l.starts_with("istio_requests_total{")
                && l.contains("reporter=\"source\"")
                && l.contains("source_workload=\"productpage\"")
                && l.contains(answered_by)
        })
    });
    // TCP: A's client talks to B's database through both sidecars (mTLS); B's reports the connection.
    let echoed =
        a.ns.command(python())
            .args(["-c", DB_CLIENT, &b.ip, &DB_PORT.to_string()])
            .output()
            .expect("the TCP client");
    assert_eq!(
        String::from_utf8_lossy(&echoed.stdout).trim(),
        "hello db",
        "{}",
        String::from_utf8_lossy(&echoed.stderr)
    );
    let tcp = [
        "reporter=\"destination\"",
        "destination_workload=\"reviews\"",
        "source_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-productpage\"",
    ];
    let tcp_reported = |name: &str| {
        fetch(hub_metrics, "/metrics").lines().any(|l| {
            l.starts_with(name)
                && tcp.iter().all(|w| l.contains(w))
                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(0.0)
        })
    };
    if !eventually(WAIT, || tcp_reported("istio_tcp_received_bytes_total{")) {
        let seen: Vec<String> = fetch(hub_metrics, "/metrics")
            .lines()
            .filter(|l| l.starts_with("istio_tcp"))
            .map(str::to_string)
            .collect();
        panic!(
            "no TCP report with {tcp:?}; the hub has:\n{}",
            seen.join("\n")
        );
    }
    assert!(fetch(hub_admin, "/metrics").contains("sextant_hub_checks_total"));

    // Security resources, enforced by B's sidecar whichever proxy it is. C has no sidecar: PERMISSIVE (the
    // default) lets its plain text in.
    wait_until(WAIT, "C's plain-text call to be let in", || {
        c.call(&b.ip, "/").is_some_and(|(s, _)| s == 200)
    });
    // ALLOW for A's principal only: C, with no principal, is refused per request; A is still let in.
    std::fs::write(pilot_config.join("authz.yaml"), ALLOW_PRODUCTPAGE).expect("policy");
    wait_until(WAIT, "B to refuse C by AuthorizationPolicy", || {
        c.call(&b.ip, "/").is_some_and(|(s, _)| s == 403)
    });
    assert_eq!(
        a.call(&b.ip, "/").map(|r| r.0),
        Some(200),
        "A's principal is allowed"
    );
    // STRICT: plain text is not even accepted; mesh mTLS still is.
    std::fs::write(pilot_config.join("peer.yaml"), STRICT).expect("peer authentication");
    wait_until(WAIT, "B to refuse C's plain text under STRICT", || {
        c.call(&b.ip, "/").is_none()
    });
    assert_eq!(
        a.call(&b.ip, "/").map(|r| r.0),
        Some(200),
        "mesh mTLS under STRICT"
    );

    assert_eq!(a.rejected(), 0, "A's sidecar refused a push");
    assert_eq!(b.rejected(), 0, "B's sidecar refused a push");
    drop((sidecar_a, sidecar_b, pilot, hub, backend));
    drop((a, b, c, bridge));
}

#[test]
fn sextant_sidecars_in_pods_with_proxy_init() {
    run(Plane::Sextant, Plane::Sextant);
}

#[test]
fn envoy_client_sidecar_and_sextant_server_sidecar() {
    run(Plane::Envoy, Plane::Sextant);
}

#[test]
fn sextant_client_sidecar_and_envoy_server_sidecar() {
    run(Plane::Sextant, Plane::Envoy);
}
