//! Pilot's mesh sidecar to sidecar, with transparent interception exactly as istio-init sets it up: two
//! network namespaces joined by a veth pair, each a pod with a real Envoy 1.40 that has nothing but the
//! ADS cluster in its bootstrap. In the client pod (A) iptables' nat OUTPUT redirects every TCP
//! connection to Envoy's 15001, except loopback and the sidecar's own sockets, which carry SO_MARK 0x539;
//! in the server pod (B) PREROUTING redirects TCP arriving for the service port to 15006. `sextant pilot`
//! runs in B on B's address, serving both Envoys.
//!
//! An application in A calls `reviews.default.svc.cluster.local:9080` (resolved to B's address) as if no
//! mesh existed: the connection is captured by A's iptables, routed by A's Envoy through the outbound
//! cluster `outbound|9080||reviews.default.svc.cluster.local` that pilot built from a ServiceEntry,
//! captured again in B, where Envoy's `virtualInbound` listener hands it to the application. The answer
//! is the backend's, each Envoy's stats show the hop it made, nothing looped through the passthrough
//! cluster, and neither Envoy refused any configuration.
//!
//! With Istio's bookinfo `destination-rule-all-mtls.yaml` (ISTIO_MUTUAL) the same call goes over mesh mTLS:
//! both sidecars take their workload certificate (`default`) and the trust root (`ROOTCA`) from pilot
//! over ADS, A's cluster handshakes with B, whose `virtualInbound` terminates the mTLS and presents
//! `spiffe://cluster.local/ns/default/sa/bookinfo-reviews`. When the ServiceEntry says reviews runs as
//! another service account, A refuses B's certificate (a 503, `ssl.fail_verify_san`); saying it back
//! restores the service. No NACK anywhere.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Netns, Plane, Proc, peers, python, repo, scratch, wait_until, write_atomically};

/// The service both pods' sidecars know, and its port (the mesh's convention inside private namespaces).
const HOST: &str = "reviews.default.svc.cluster.local";
const SERVICE_PORT: u16 = 9080;
const OUTBOUND_CLUSTER: &str = "outbound|9080||reviews.default.svc.cluster.local";
/// Istio's mark for the sidecar's own sockets (1337), excluded from the outbound capture.
const MARK: &str = "0x539";
/// Envoy's admin port inside each pod (private to the namespace).
const ADMIN_PORT: u16 = 15000;
/// How long a changed cluster may take to be used, generously. That it does not wait out Envoy's
/// `initial_fetch_timeout` (15 s), as an updated EDS cluster does when pilot does not send its (unchanged)
/// endpoints again, is checked with Envoy's count of initial fetch timeouts, not with a clock.
const CLUSTER_CHANGE: Duration = Duration::from_secs(60);

/// The backend in B: answers every GET with its name.
const BACKEND: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = sys.argv[3].encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"#;

/// The reviews ServiceEntry: one endpoint, B's address, running as `service_account`.
fn service_entry(b: &str, service_account: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {SERVICE_PORT}, name: http}}]
  endpoints:
  - address: {b}
    labels: {{app: reviews, version: v1}}
    serviceAccount: {service_account}
"#
    )
}

/// A pod: a network namespace, its address on the veth pair, and (once started) its sidecar.
struct Pod {
    ns: Netns,
    ip: String,
}

impl Pod {
    /// A GET on the sidecar's admin inside the pod.
    fn admin(&self, path: &str) -> Option<String> {
        self.ns
            .curl(&[&format!("http://127.0.0.1:{ADMIN_PORT}{path}")])
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
    }

    /// One counter or gauge of the sidecar, exactly `name`.
    fn stat(&self, name: &str) -> Option<u64> {
        let filter = common::urlencode(&format!("^{}$", regex_escape(name)));
        self.admin(&format!("/stats?filter={filter}"))?
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
    }

    /// Every `update_rejected` counter of the sidecar's xDS subscriptions, summed: pushes it refused.
    fn rejected_updates(&self) -> u64 {
        self.admin("/stats?filter=update_rejected")
            .expect("envoy stats")
            .lines()
            .filter_map(|l| l.split_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// Two pods with istio-init's interception, pilot, a backend and a sidecar in each pod. Processes are
/// killed (fields drop in order) before the namespaces are deleted.
struct Mesh {
    envoy_a: Proc,
    envoy_b: Proc,
    backend: Proc,
    pilot: Proc,
    /// pilot's monitoring address, inside B.
    monitoring: String,
    config: PathBuf,
    a: Pod,
    b: Pod,
}

impl Mesh {
    /// Sets up both pods and starts everything with `files(B's address)` (name, YAML) in pilot's config
    /// dir; returns once pilot, the backend and both sidecars are ready.
    fn start(plane: Plane, files: impl Fn(&str) -> Vec<(&'static str, String)>) -> Mesh {
        let (a, b) = pods();
        let dir = scratch(&format!("pilot-mtls-{plane:?}"));
        let config = dir.join("config");
        std::fs::create_dir_all(&config).expect("mkdir config");
        for (name, text) in files(&b.ip) {
            std::fs::write(config.join(name), text).expect("write config");
        }

        // pilot, on B's address (ports B's kernel picks): reachable from both pods.
        let any = format!("{}:0", b.ip);
        let mut cmd = b.ns.command(env!("CARGO_BIN_EXE_sextant"));
        cmd.args(["pilot", "--config-dir"])
            .arg(&config)
            .args(["--xds-addr", &any, "--monitoring-addr", &any])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let mut pilot = Proc::spawn("pilot", cmd, dir.join("pilot.log"));
        let (xds, monitoring) = common::pilot_addrs(&mut pilot);
        let (xds, monitoring) = (xds.to_string(), monitoring.to_string());
        wait_until(Duration::from_secs(60), "pilot to be ready", || {
            assert!(pilot.alive(), "pilot exited:\n{}", pilot.log());
            b.ns.curl(&[&format!("http://{monitoring}/ready")])
                .is_some_and(|(s, _)| s == 200)
        });

        // The application in B, on the service port of B's address.
        std::fs::write(dir.join("backend.py"), BACKEND).expect("write backend");
        let mut cmd = b.ns.command(python());
        cmd.arg(dir.join("backend.py"))
            .args([&b.ip, &SERVICE_PORT.to_string(), "reviews-v1"]);
        let mut backend = Proc::spawn("backend", cmd, dir.join("backend.log"));
        wait_until(Duration::from_secs(20), "the backend to answer", || {
            assert!(backend.alive(), "backend exited:\n{}", backend.log());
            // From inside B, on B's own address: OUTPUT has no capture in B, PREROUTING only sees the veth.
            b.ns.curl(&[&format!("http://{}:{SERVICE_PORT}/", b.ip)])
                .is_some_and(|(s, body)| s == 200 && body == "reviews-v1")
        });

        let envoy_a = sidecar(plane, &a, &dir.join("envoy-a"), "productpage", &xds);
        let envoy_b = sidecar(plane, &b, &dir.join("envoy-b"), "reviews", &xds);
        Mesh {
            envoy_a,
            envoy_b,
            backend,
            pilot,
            monitoring,
            config,
            a,
            b,
        }
    }

    /// The application in A calls the service by name (resolved to B's address, as DNS would): the
    /// connection goes to B's address, iptables decides the rest. (status, body), None without answer.
    fn call(&self) -> Option<(u16, String)> {
        let resolve = format!("{HOST}:{SERVICE_PORT}:{}", self.b.ip);
        self.a.ns.curl(&[
            "--resolve",
            &resolve,
            &format!("http://{HOST}:{SERVICE_PORT}/"),
        ])
    }

    /// Waits until A's call gets the backend's answer, then checks that five more calls do too.
    fn wait_served(&self, what: &str) {
        wait_until(Duration::from_secs(20), what, || {
            self.call()
                .is_some_and(|(s, body)| s == 200 && body == "reviews-v1")
        });
        for _ in 0..5 {
            assert_eq!(self.call(), Some((200, "reviews-v1".to_string())));
        }
    }

    /// pilot's `/debug/syncz`.
    fn syncz(&self) -> serde_json::Value {
        self.b
            .ns
            .curl(&[&format!("http://{}/debug/syncz", self.monitoring)])
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    }

    /// pilot's generation of the configuration (`/ready`).
    fn generation(&self) -> u64 {
        self.b
            .ns
            .curl(&[&format!("http://{}/ready", self.monitoring)])
            .and_then(|(_, body)| body.trim().strip_prefix("ready: generation ")?.parse().ok())
            .unwrap_or(0)
    }

    /// Rewrites a config file and waits until pilot has loaded it.
    fn write_config(&self, file: &str, text: &str) {
        let before = self.generation();
        write_atomically(&self.config.join(file), text);
        wait_until(Duration::from_secs(30), "pilot to load the change", || {
            self.generation() > before
        });
    }

    /// Waits until pilot's `/debug/syncz` shows both sidecars with every type in `types` acknowledged at
    /// the version sent and no rejection.
    fn wait_synced(&self, types: &[&str]) {
        let nodes = [
            node_id(&self.a.ip, "productpage"),
            node_id(&self.b.ip, "reviews"),
        ];
        wait_until(
            Duration::from_secs(20),
            "both sidecars to ACK every type",
            || {
                let sync = self.syncz();
                nodes.iter().all(|node| {
                    sync.as_array()
                        .and_then(|ps| ps.iter().find(|p| p["node"] == node.as_str()))
                        .is_some_and(|p| {
                            types.iter().all(|t| {
                                p["types"].get(*t).is_some_and(|s| {
                                    s["acked"] == s["sent"] && s["last_nack"].is_null()
                                })
                            })
                        })
                })
            },
        );
    }

    /// Every process of the mesh is still running.
    fn assert_alive(&mut self) {
        for p in [
            &mut self.envoy_a,
            &mut self.envoy_b,
            &mut self.backend,
            &mut self.pilot,
        ] {
            assert!(p.alive(), "a process of the mesh exited:\n{}", p.log());
        }
    }

    /// Neither sidecar refused anything; pilot counted no NACK.
    fn assert_no_nacks(&self) {
        assert_eq!(self.a.rejected_updates(), 0, "A refused a push");
        assert_eq!(self.b.rejected_updates(), 0, "B refused a push");
        let metrics = self
            .b
            .ns
            .curl(&[&format!("http://{}/metrics", self.monitoring)])
            .map(|(_, b)| b)
            .unwrap_or_default();
        let nacks: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("pilot_xds_nacks"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        assert_eq!(nacks, 0.0, "pilot counted NACKs:\n{metrics}");
    }
}

/// Istio's node id of a sidecar of `app` v1 at `ip`.
fn node_id(ip: &str, app: &str) -> String {
    format!("sidecar~{ip}~{app}-v1.default~default.svc.cluster.local")
}

/// The two pods, as istio-init leaves them: A with outbound capture, B with inbound capture of the
/// service port. Names, interfaces and the /24 are unique per process and call.
fn pods() -> (Pod, Pod) {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let subnet = format!("10.{}.{}", 100 + (pid / 256 + n) % 150, pid % 256);
    let a = Pod {
        ns: Netns::create(&format!("{n}-a")),
        ip: format!("{subnet}.1"),
    };
    let b = Pod {
        ns: Netns::create(&format!("{n}-b")),
        ip: format!("{subnet}.2"),
    };
    let (veth_a, veth_b) = (format!("sx{pid}a{n}"), format!("sx{pid}b{n}"));
    common::ip(&[
        "link", "add", &veth_a, "netns", &a.ns.name, "type", "veth", "peer", "name", &veth_b,
        "netns", &b.ns.name,
    ]);
    for (pod, veth) in [(&a, &veth_a), (&b, &veth_b)] {
        pod.ns
            .ip(&["addr", "add", &format!("{}/24", pod.ip), "dev", veth]);
        pod.ns.ip(&["link", "set", veth, "up"]);
    }
    // A: every TCP connection leaving the pod goes to the sidecar, except its own (marked) and loopback.
    let ipt = |pod: &Pod, rule: &str| {
        let args: Vec<&str> = rule.split_whitespace().collect();
        pod.ns.run("iptables", &args);
    };
    ipt(&a, "-t nat -N MESH_OUTPUT");
    ipt(
        &a,
        &format!("-t nat -A MESH_OUTPUT -m mark --mark {MARK} -j RETURN"),
    );
    ipt(&a, "-t nat -A MESH_OUTPUT -o lo -j RETURN");
    ipt(
        &a,
        "-t nat -A MESH_OUTPUT -p tcp -j REDIRECT --to-ports 15001",
    );
    ipt(&a, "-t nat -A OUTPUT -p tcp -j MESH_OUTPUT");
    // B: TCP arriving on the veth for the service port goes to the sidecar's inbound listener.
    ipt(
        &b,
        &format!(
            "-t nat -A PREROUTING -i {veth_b} -p tcp --dport {SERVICE_PORT} -j REDIRECT --to-ports 15006"
        ),
    );
    (a, b)
}

/// Starts the sidecar of `app` v1 in `pod` (bootstrap: only the ADS cluster, pilot at `xds`; every
/// upstream socket marked so A's capture lets it through) and waits until its admin says LIVE.
fn sidecar(plane: Plane, pod: &Pod, dir: &Path, app: &str, xds: &str) -> Proc {
    std::fs::create_dir_all(dir).expect("mkdir envoy");
    let xds: std::net::SocketAddr = xds.parse().expect("xds address");
    if let Plane::Sextant = plane {
        return sextant_sidecar(pod, dir, app, xds);
    }
    let node = format!(
        "{{id: \"{id}\", cluster: {app}.default, metadata: {{NAMESPACE: default, SERVICE_ACCOUNT: bookinfo-{app}, LABELS: {{app: {app}, version: v1}}}}}}",
        id = node_id(&pod.ip, app),
    );
    // The mark on every upstream socket, the ADS connection's too, is appended as a top-level key.
    let bootstrap = common::ads_bootstrap_with_admin(xds, ADMIN_PORT, "GRPC", &node)
        + "cluster_manager:\n  upstream_bind_config:\n    socket_options: [{level: 1, name: 36, int_value: 1337, state: STATE_PREBIND}]\n";
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, bootstrap).expect("write bootstrap");
    let mut cmd = pod.ns.command(peers().join("venv/bin/envoy"));
    cmd.arg("-c").arg(&path).args([
        "--disable-hot-restart",
        "--use-dynamic-base-id",
        "-l",
        "warning",
    ]);
    let name = if app == "productpage" {
        "envoy A"
    } else {
        "envoy B"
    };
    let mut proc = Proc::spawn(name, cmd, dir.join("envoy.log"));
    wait_until(
        Duration::from_secs(30),
        &format!("{name} to be LIVE"),
        || {
            assert!(proc.alive(), "{name} exited:\n{}", proc.log());
            pod.admin("/ready").is_some_and(|b| b.trim() == "LIVE")
        },
    );
    proc
}

/// [`sidecar`] with `sextant proxy`: the node from the pod's environment, as pilot-agent passes it, and the
/// same mark on its upstream sockets and its connection to pilot (`--upstream-mark`).
fn sextant_sidecar(pod: &Pod, dir: &Path, app: &str, xds: std::net::SocketAddr) -> Proc {
    let mut cmd = pod.ns.command(env!("CARGO_BIN_EXE_sextant"));
    cmd.args([
        "proxy",
        "--xds-addr",
        &xds.to_string(),
        "--node-id",
        &node_id(&pod.ip, app),
    ])
    .args([
        "--admin-addr",
        &format!("127.0.0.1:{ADMIN_PORT}"),
        "--stats-addr",
        "127.0.0.1:15090",
    ])
    .args([
        "--upstream-mark",
        &u32::from_str_radix(MARK.trim_start_matches("0x"), 16)
            .unwrap_or(1337)
            .to_string(),
    ])
    .env("POD_NAMESPACE", "default")
    .env("INSTANCE_IP", &pod.ip)
    .env("SERVICE_ACCOUNT", format!("bookinfo-{app}"))
    .env(
        "ISTIO_METAJSON_LABELS",
        format!(r#"{{"app": "{app}", "version": "v1"}}"#),
    )
    .env("RUST_LOG", "info")
    .env("NO_COLOR", "1");
    let name = if app == "productpage" {
        "sextant proxy A"
    } else {
        "sextant proxy B"
    };
    let mut proc = Proc::spawn(name, cmd, dir.join("proxy.log"));
    wait_until(
        Duration::from_secs(30),
        &format!("{name} to be LIVE"),
        || {
            assert!(proc.alive(), "{name} exited:\n{}", proc.log());
            pod.admin("/ready").is_some_and(|b| b.trim() == "LIVE")
        },
    );
    proc
}

/// A cluster's or listener's counter in a sidecar, 0 when absent.
fn counter(pod: &Pod, name: &str) -> u64 {
    pod.stat(name).unwrap_or(0)
}

#[test]
fn sidecar_to_sidecar_through_istio_init_interception() {
    through_interception(Plane::Envoy);
}

#[test]
fn sextant_sidecar_to_sidecar_through_istio_init_interception() {
    through_interception(Plane::Sextant);
}

fn through_interception(plane: Plane) {
    let mut mesh = Mesh::start(plane, |b| {
        vec![("reviews.yaml", service_entry(b, "bookinfo-reviews"))]
    });
    // Both sidecars reached pilot through their pod's network (A's ADS socket is marked: unmarked, it
    // would be redirected to a 15001 nobody listens on before LDS) and acknowledged everything.
    mesh.wait_synced(&["cds", "eds", "lds", "rds"]);

    mesh.wait_served("the application in A to get the backend's answer");

    // A: each call captured by virtualOutbound, handed to the 9080 listener, routed to reviews' cluster.
    let (a, b) = (&mesh.a, &mesh.b);
    let cx = |p: &Pod, n: &str| counter(p, n);
    assert!(cx(a, "listener.0.0.0.0_9080.downstream_cx_total") >= 6);
    assert!(cx(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_rq_total")) >= 6);
    assert!(cx(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_rq_200")) >= 6);
    let upstream = cx(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_cx_total"));
    assert!(upstream >= 1);
    // Nothing looped back into the sidecar: the outbound cluster's sockets carry the mark.
    assert_eq!(cx(a, "cluster.PassthroughCluster.upstream_cx_total"), 0);
    // B: every connection A opened to B arrived through the inbound capture, and every request went on to
    // the backend — as HTTP, since 9080 is an HTTP port of B's own service (its connections to the backend
    // pooled as B's proxy sees fit).
    assert_eq!(
        cx(b, "listener.0.0.0.0_15006.downstream_cx_total"),
        upstream
    );
    assert_eq!(
        cx(b, "cluster.InboundPassthroughCluster.upstream_rq_total"),
        cx(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_rq_total"))
    );
    assert_eq!(
        cx(b, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_rq_total")),
        0
    );
    mesh.assert_no_nacks();
    mesh.assert_alive();
}

/// Istio's bookinfo `destination-rule-all-mtls.yaml`, as shipped: ISTIO_MUTUAL for every bookinfo service.
fn all_mtls() -> String {
    std::fs::read_to_string(
        repo().join("pilot/config/tests/fixtures/bookinfo/destination-rule-all-mtls.yaml"),
    )
    .expect("read bookinfo destination-rule-all-mtls.yaml")
}

/// The SPIFFE ID of a bookinfo service account in namespace default.
fn spiffe(service_account: &str) -> String {
    format!("spiffe://cluster.local/ns/default/sa/{service_account}")
}

/// The names of the SDS secrets a sidecar has accepted and uses.
fn active_secrets(pod: &Pod) -> Vec<String> {
    let dump: serde_json::Value = pod
        .admin("/config_dump?resource=dynamic_active_secrets")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    let mut names: Vec<String> = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some(s["name"].as_str()?.to_string()))
        .collect();
    names.sort();
    names
}

#[test]
fn istio_mutual_between_sidecars_checks_the_servers_identity() {
    istio_mutual(Plane::Envoy);
}

#[test]
fn istio_mutual_between_sextant_sidecars_checks_the_servers_identity() {
    istio_mutual(Plane::Sextant);
}

fn istio_mutual(plane: Plane) {
    let mut mesh = Mesh::start(plane, |b| {
        vec![
            ("reviews.yaml", service_entry(b, "bookinfo-reviews")),
            ("destination-rule-all-mtls.yaml", all_mtls()),
        ]
    });
    mesh.wait_synced(&["sds", "cds", "eds", "lds", "rds"]);
    mesh.wait_served("the application in A to get the backend's answer over mesh mTLS");
    let (a, b) = (&mesh.a, &mesh.b);
    let handshakes = counter(a, &format!("cluster.{OUTBOUND_CLUSTER}.ssl.handshake"));
    assert!(handshakes >= 1, "A made no TLS handshake to reviews");
    assert_eq!(
        counter(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_cx_total")),
        handshakes,
        "every connection A opened to reviews is TLS"
    );
    // B terminated each of them with its mesh certificate and handed the requests to the application.
    assert_eq!(
        counter(b, "listener.0.0.0.0_15006.ssl.handshake"),
        handshakes
    );
    assert_eq!(counter(b, "listener.0.0.0.0_15006.ssl.no_certificate"), 0);
    assert_eq!(
        counter(b, "cluster.InboundPassthroughCluster.upstream_rq_total"),
        counter(a, &format!("cluster.{OUTBOUND_CLUSTER}.upstream_rq_total")),
        "every request A sent reached the application through B"
    );
    // Both took their certificate and the trust root over ADS (SDS), and serve their own identity.
    for pod in [a, b] {
        assert_eq!(
            active_secrets(pod),
            ["ROOTCA", "default"],
            "{}",
            pod.ns.name
        );
    }
    let certs_b = b.admin("/certs").expect("B's /certs");
    assert!(certs_b.contains(&spiffe("bookinfo-reviews")), "{certs_b}");
    let certs_a = a.admin("/certs").expect("A's /certs");
    assert!(
        certs_a.contains(&spiffe("bookinfo-productpage")),
        "{certs_a}"
    );
    mesh.assert_no_nacks();

    // The registry says reviews runs as someone else: A refuses B's certificate.
    let san = format!("cluster.{OUTBOUND_CLUSTER}.ssl.fail_verify_san");
    let refused = counter(&mesh.a, &san);
    mesh.write_config("reviews.yaml", &service_entry(&mesh.b.ip, "someone-else"));
    wait_until(CLUSTER_CHANGE, "A to refuse B's certificate", || {
        mesh.call().is_none_or(|(s, _)| s == 503) && counter(&mesh.a, &san) > refused
    });
    for _ in 0..3 {
        let answer = mesh.call();
        assert!(answer.as_ref().is_none_or(|(s, _)| *s == 503), "{answer:?}");
    }
    // And back: served again.
    mesh.write_config(
        "reviews.yaml",
        &service_entry(&mesh.b.ip, "bookinfo-reviews"),
    );
    wait_until(CLUSTER_CHANGE, "A to accept B's certificate again", || {
        mesh.call()
            .is_some_and(|(s, body)| s == 200 && body == "reviews-v1")
    });
    mesh.wait_synced(&["sds", "cds", "eds", "lds", "rds"]);
    match plane {
        Plane::Envoy => assert_eq!(
            mesh.a
                .stat(&format!("cluster.{OUTBOUND_CLUSTER}.init_fetch_timeout")),
            Some(0),
            "A's changed cluster got its endpoints without waiting out the initial fetch timeout"
        ),
        // sextant proxy has no initial fetch to time out: a changed cluster starts with the hosts last
        // assigned to it, so it always has its endpoint.
        Plane::Sextant => assert_eq!(
            mesh.a
                .stat(&format!("cluster.{OUTBOUND_CLUSTER}.membership_total")),
            Some(1),
            "A's changed cluster kept its endpoint"
        ),
    }
    mesh.assert_no_nacks();
    mesh.assert_alive();
}
