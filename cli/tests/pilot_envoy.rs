//! Pilot's translation driving a real Envoy 1.40, and `sextant proxy` on the same table: Istio's bookinfo
//! VirtualService and DestinationRule files, as shipped, plus ServiceEntries for local backends, translated
//! for a proxy without interception (its node metadata says `INTERCEPTION_MODE: NONE`, so it binds the
//! service port on 127.0.0.1 itself) and served over ADS, state of the world and delta. Each proxy ACKs
//! every type with zero rejections and then routes exactly as the VirtualServices say: the 90/10 split,
//! `end-user: jason` to v2, the abort and the delay of the ratings samples, retries on 503 and a route
//! timeout. The expectations are the same for both proxies, read through the same admin paths.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Ads, HeldPort, Plane, get, repo, scratch, wait_until};
use pilot_translate::{Interception, ProxyInfo, translate};
use pilot_xds::{Snapshot, types};
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::google::protobuf::{Struct, Value, value::Kind};

const NODE_ID: &str = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local";

/// A versioned HTTP backend: answers its name, except on `/fail-once/KEY` (503 the first time a key is
/// seen, then 200), `/always-503/KEY` and `/slow/MS`; counts the attempts per key.
struct Backend {
    addr: SocketAddr,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl Backend {
    fn start(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let attempts = Arc::new(Mutex::new(HashMap::new()));
        let counts = attempts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counts = counts.clone();
                std::thread::spawn(move || serve(conn, name, &counts));
            }
        });
        Backend { addr, attempts }
    }

    fn attempts(&self, key: &str) -> u32 {
        self.attempts
            .lock()
            .expect("lock")
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

fn serve(mut s: TcpStream, name: &str, counts: &Mutex<HashMap<String, u32>>) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let host = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("host:")
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default();
        // A broken version answers every request with 500.
        let mut status = if name.ends_with("-broken") { 500 } else { 200 };
        let count = |key: &str| {
            let mut c = counts.lock().expect("lock");
            let n = c.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        if let Some(key) = path.split("/fail-once/").nth(1) {
            if count(key) == 1 {
                status = 503;
            }
        } else if let Some(key) = path.split("/always-503/").nth(1) {
            count(key);
            status = 503;
        } else if let Some(key) = path.split("/seen/").nth(1) {
            count(key);
        } else if let Some(ms) = path.strip_prefix("/slow/") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        let body = name;
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nx-path: {path}\r\nx-host: {host}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A TCP backend: answers each connection with its name once the client has sent something, then closes.
fn tcp_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tcp backend");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                if conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    let _ = conn.write_all(name.as_bytes());
                }
            });
        }
    });
    addr
}

/// Which version of the TCP service answers one connection through the proxy's listener.
fn tcp_call(listener: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&listener, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"x").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// An answer through Envoy.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The response head, lower-cased.
    head: String,
    body: String,
    took: Duration,
}

impl Answer {
    /// The value of response header `name` (lower case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }
}

/// One request to Envoy's listener for the service `host` (the Host header picks the virtual host).
fn call(envoy: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Option<Answer> {
    call_method(envoy, "GET", host, path, headers)
}

/// [`call`] with another method.
fn call_method(
    envoy: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<Answer> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&envoy, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // Read exactly one response: Envoy lingers a second before closing after a local reply (an abort).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let body = match length {
        Some(length) => {
            let mut body = vec![0u8; length];
            s.read_exact(&mut body).ok()?;
            body
        }
        // No length: the body ends with the connection (the request asked for it to close).
        None => {
            let mut body = Vec::new();
            s.read_to_end(&mut body).ok()?;
            body
        }
    };
    let body = String::from_utf8_lossy(&body).to_string();
    Some(Answer {
        status,
        head,
        body,
        took: start.elapsed(),
    })
}

fn must(envoy: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    call(envoy, host, path, headers).unwrap_or_else(|| panic!("no answer for {host}{path}"))
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The node Envoy's bootstrap declares: Istio's id and metadata, without interception.
fn node() -> Node {
    let labels = Struct {
        fields: [
            ("app".to_string(), text("productpage")),
            ("version".to_string(), text("v1")),
        ]
        .into(),
    };
    Node {
        id: NODE_ID.into(),
        cluster: "productpage.default".into(),
        metadata: Some(Struct {
            fields: [
                ("INTERCEPTION_MODE".to_string(), text("NONE")),
                ("NAMESPACE".to_string(), text("default")),
                (
                    "LABELS".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
            ]
            .into(),
        }),
        ..Default::default()
    }
}

/// ServiceEntries for the bookinfo services on `port`, each version a local backend.
fn service_entries(port: u16, backends: &[(&str, &str, &Backend)]) -> String {
    let mut hosts: Vec<&str> = backends.iter().map(|(h, _, _)| *h).collect();
    hosts.dedup();
    let mut out = String::new();
    for host in hosts {
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\n\
             spec:\n  hosts: [{host}.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  \
             resolution: STATIC\n  ports: [{{number: {port}, name: http}}]\n  endpoints:\n"
        ));
        for (_, version, b) in backends.iter().filter(|(h, _, _)| *h == host) {
            out.push_str(&format!(
                "  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: {host}, version: {version}}}}}\n",
                b.addr.port()
            ));
        }
    }
    out
}

fn samples() -> PathBuf {
    repo().join("pilot/config/tests/fixtures/bookinfo")
}

struct Pilot {
    ads: Ads,
    config: PathBuf,
}

impl Pilot {
    fn start(config: PathBuf) -> Pilot {
        Pilot {
            ads: Ads::start(),
            config,
        }
    }

    /// Makes `vs_file` (a bookinfo sample, or a VirtualService of the test's own) the only VirtualService
    /// file of the config directory, then loads, validates, translates and publishes the directory.
    fn publish(&self, vs_file: &str, text: &str) -> Arc<Snapshot> {
        for entry in std::fs::read_dir(&self.config)
            .expect("config dir")
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("virtual-service")
            {
                std::fs::remove_file(entry.path()).expect("remove");
            }
        }
        std::fs::write(self.config.join(vs_file), text).expect("write vs");
        let mesh = pilot_config::load_and_validate(&self.config)
            .unwrap_or_else(|e| panic!("{vs_file} loads: {e}"));
        let registry = pilot_config::RegistrySnapshot {
            version: 1,
            services: mesh.services.clone(),
        };
        let proxy = ProxyInfo::from_node(&node());
        assert_eq!(proxy.interception, Interception::None);
        let snapshot = translate(
            &mesh,
            &registry,
            &proxy,
            &pilot_translate::MeshTls::default(),
        );
        assert_eq!(snapshot.consistent(), Ok(()), "translation is consistent");
        self.ads.snapshots.publish(snapshot).expect("published");
        self.ads.snapshots.current()
    }

    /// [`Pilot::publish`], then waits until Envoy has ACKed exactly that snapshot.
    fn apply(&self, vs_file: &str, text: &str) {
        let current = self.publish(vs_file, text);
        self.wait_in_sync(&current, vs_file);
    }

    fn wait_in_sync(&self, snapshot: &Snapshot, what: &str) {
        wait_until(
            Duration::from_secs(20),
            &format!("Envoy to ACK every type of the {what} snapshot"),
            || self.in_sync(snapshot),
        );
    }

    /// Whether Envoy acknowledged exactly the resources of `snapshot`, for all four types (no mesh mTLS
    /// here, so no secrets).
    fn in_sync(&self, snapshot: &Snapshot) -> bool {
        let Some(status) = self.ads.connections.proxy(NODE_ID) else {
            return false;
        };
        [
            types::CLUSTER,
            types::ENDPOINT,
            types::LISTENER,
            types::ROUTE,
        ]
        .iter()
        .all(|url| {
            let want: Vec<(&String, &String)> = snapshot
                .resources(url)
                .into_iter()
                .flatten()
                .map(|(n, r)| (n, &r.version))
                .collect();
            status.types.get(*url).is_some_and(|t| {
                let have: Vec<(&String, &String)> =
                    t.resources.iter().map(|(n, r)| (n, &r.version)).collect();
                t.acked_version.as_ref() == Some(&t.sent_version) && have == want
            })
        })
    }
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(samples().join(name)).expect("sample")
}

/// Retries and a timeout, as a user writes them (the bookinfo samples have none).
const RESILIENCE: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fail-once}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "503"}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /always-503}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 1s
    retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v3}}]
"#;

/// The TCP service on its own port (two versions) and the connection limits of `httpbin`, Istio's
/// circuit-breaking task.
fn extra_config(tcp_port: u16, echo: [SocketAddr; 2]) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [echo.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {tcp_port}, name: tcp, protocol: TCP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {}}}, labels: {{app: echo, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{tcp: {}}}, labels: {{app: echo, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo}}
spec:
  host: echo
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: flaky}}
spec:
  host: flaky
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection: {{consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin}}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 1}}, http: {{http1MaxPendingRequests: 1}}}}
"#,
        echo[0].port(),
        echo[1].port()
    )
}

/// Redirect, rewrite, mirror, CORS and header operations, as a user writes them.
const EDGES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example, redirectCode: 302}
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /api/, authority: internal.reviews}
    route: [{destination: {host: reviews, subset: v1}}]
  - match: [{uri: {prefix: /mirrored}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 100}
    route: [{destination: {host: reviews, subset: v1}}]
  - corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-path]
      maxAge: 24h
    headers:
      response: {add: {x-served-by: mesh}}
    route: [{destination: {host: reviews, subset: v3}}]
"#;

/// 80/20 between the TCP service's versions.
const TCP_SPLIT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  tcp:
  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
"#;

fn run(api_type: &str, plane: Plane) {
    let dir = scratch(&format!("pilot-{plane:?}-{api_type}"));
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let reviews = [
        Backend::start("reviews-v1"),
        Backend::start("reviews-v2"),
        Backend::start("reviews-v3"),
    ];
    let ratings = Backend::start("ratings-v1");
    let details = Backend::start("details-v1");
    let productpage = Backend::start("productpage-v1");
    let httpbin = Backend::start("httpbin-v1");
    let flaky = [Backend::start("flaky-good"), Backend::start("flaky-broken")];
    let echo = [tcp_backend("echo-v1"), tcp_backend("echo-v2")];
    // The service ports: the proxy binds them on 127.0.0.1 (no interception).
    let held = HeldPort::hold();
    let port = held.port();
    let held_tcp = HeldPort::hold();
    let entries = service_entries(
        port,
        &[
            ("productpage", "v1", &productpage),
            ("reviews", "v1", &reviews[0]),
            ("reviews", "v2", &reviews[1]),
            ("reviews", "v3", &reviews[2]),
            ("ratings", "v1", &ratings),
            ("details", "v1", &details),
            ("httpbin", "v1", &httpbin),
            ("flaky", "good", &flaky[0]),
            ("flaky", "broken", &flaky[1]),
        ],
    );
    std::fs::write(config.join("services.yaml"), entries).expect("services");
    std::fs::write(
        config.join("extra.yaml"),
        extra_config(held_tcp.port(), echo),
    )
    .expect("extra config");
    std::fs::copy(
        samples().join("destination-rule-all.yaml"),
        config.join("destination-rule-all.yaml"),
    )
    .expect("copy destination rules");

    let pilot = Pilot::start(config);
    // Envoy's first fetch waits for clusters and listeners: have them ready before it starts.
    let first = pilot.publish(
        "virtual-service-all-v1.yaml",
        &sample("virtual-service-all-v1.yaml"),
    );
    let envoy = plane.start(
        &dir.join("proxy"),
        pilot.ads.addr,
        api_type,
        common::PRODUCTPAGE_NODE,
        NODE_ID,
        common::PRODUCTPAGE_ENV,
    );
    let listen = held.addr;

    // Everything to v1: Envoy binds the service port itself and ACKs all four types.
    pilot.wait_in_sync(&first, "virtual-service-all-v1.yaml");
    wait_until(
        Duration::from_secs(30),
        "Envoy's listener on the service port",
        || call(listen, "reviews", "/", &[]).is_some_and(|a| a.status == 200),
    );
    for host in [
        "reviews",
        "reviews.default",
        "reviews.default.svc.cluster.local",
        &format!("reviews:{port}"),
    ] {
        let a = must(listen, host, "/", &[]);
        assert_eq!((a.status, a.body.as_str()), (200, "reviews-v1"), "{host}");
    }
    assert_eq!(must(listen, "ratings", "/", &[]).body, "ratings-v1");
    assert_eq!(must(listen, "details", "/", &[]).body, "details-v1");
    assert_eq!(must(listen, "productpage", "/", &[]).body, "productpage-v1");
    assert_eq!(
        must(listen, "unknown.example", "/", &[]).status,
        404,
        "no virtual host"
    );
    assert_eq!(envoy.rejected_updates(), 0);

    // 90/10 between v1 and v2 over 2000 requests.
    pilot.apply(
        "virtual-service-reviews-90-10.yaml",
        &sample("virtual-service-reviews-90-10.yaml"),
    );
    let mut seen: HashMap<String, u32> = HashMap::new();
    let started = Instant::now();
    for _ in 0..2000 {
        let a = must(listen, "reviews", "/", &[]);
        assert_eq!(a.status, 200);
        *seen.entry(a.body).or_default() += 1;
    }
    let v1 = seen.get("reviews-v1").copied().unwrap_or(0);
    let v2 = seen.get("reviews-v2").copied().unwrap_or(0);
    eprintln!(
        "{api_type}: 90/10 split over 2000 requests: v1 {v1}, v2 {v2} ({:?})",
        started.elapsed()
    );
    assert_eq!(v1 + v2, 2000, "only v1 and v2 answer: {seen:?}");
    let share = f64::from(v2) / 20.0;
    assert!(
        (5.0..=15.0).contains(&share),
        "v2 took {share}% (want 10 ± 5): {seen:?}"
    );

    // end-user: jason → v2, everyone else v1.
    pilot.apply(
        "virtual-service-reviews-test-v2.yaml",
        &sample("virtual-service-reviews-test-v2.yaml"),
    );
    for _ in 0..50 {
        assert_eq!(
            must(listen, "reviews", "/", &[("end-user", "jason")]).body,
            "reviews-v2"
        );
        assert_eq!(
            must(listen, "reviews", "/", &[("end-user", "alice")]).body,
            "reviews-v1"
        );
        assert_eq!(must(listen, "reviews", "/", &[]).body, "reviews-v1");
    }

    // Abort: jason's calls to ratings get 500 (100 %), other calls pass.
    pilot.apply(
        "virtual-service-ratings-test-abort.yaml",
        &sample("virtual-service-ratings-test-abort.yaml"),
    );
    for _ in 0..50 {
        let a = must(listen, "ratings", "/ratings/0", &[("end-user", "jason")]);
        assert_eq!(a.status, 500, "{a:?}");
        assert_eq!(
            must(listen, "ratings", "/ratings/0", &[]).body,
            "ratings-v1"
        );
    }
    let aborts = envoy.stat(&format!("http.127.0.0.1_{port}.fault.aborts_injected"));
    assert_eq!(aborts, Some(50), "Envoy counts the injected aborts");

    // Delay: jason waits the sample's 7 s, others do not. Envoy counts each delay it injects; the time a
    // delayed call took is only a lower bound (a loaded machine makes calls slower, never faster).
    pilot.apply(
        "virtual-service-ratings-test-delay.yaml",
        &sample("virtual-service-ratings-test-delay.yaml"),
    );
    let delays = || {
        envoy
            .stat(&format!("http.127.0.0.1_{port}.fault.delays_injected"))
            .unwrap_or(0)
    };
    let quick = must(listen, "ratings", "/", &[]);
    assert_eq!(quick.body, "ratings-v1");
    assert_eq!(delays(), 0, "no delay for others: {quick:?}");
    let slow = must(listen, "ratings", "/", &[("end-user", "jason")]);
    eprintln!("{api_type}: fault delay observed: {:?}", slow.took);
    assert_eq!((slow.status, slow.body.as_str()), (200, "ratings-v1"));
    assert_eq!(delays(), 1, "jason's call was delayed");
    assert!(
        // Envoy's timer may fire a few milliseconds early.
        slow.took >= Duration::from_millis(6900),
        "delayed by {:?}",
        slow.took
    );

    // Retries and a timeout.
    pilot.apply("virtual-service-reviews-resilience.yaml", RESILIENCE);
    assert_eq!(must(listen, "reviews", "/", &[]).body, "reviews-v3");
    let a = must(listen, "reviews", "/fail-once/a", &[]);
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "reviews-v1"),
        "the retry succeeds"
    );
    assert_eq!(
        reviews[0].attempts("a"),
        2,
        "the backend saw the failed try and the retry"
    );
    let a = must(listen, "reviews", "/always-503/b", &[]);
    assert_eq!(a.status, 503, "attempts: 0 disables retries");
    assert_eq!(reviews[0].attempts("b"), 1);
    // Istio's default policy retries 503 on a route that says nothing about retries.
    let a = must(listen, "reviews", "/other/fail-once/c", &[]);
    assert_eq!((a.status, a.body.as_str()), (200, "reviews-v3"));
    assert_eq!(reviews[2].attempts("c"), 2);
    let a = must(listen, "reviews", "/slow/4000", &[]);
    eprintln!(
        "{api_type}: route timeout of 1s answered {} after {:?}",
        a.status, a.took
    );
    // A 504 before the backend's 4 s answer is the route timeout; the time taken is only a lower bound.
    assert_eq!(a.status, 504, "{a:?}");
    assert!(
        // Envoy's timer may fire a millisecond early.
        a.took >= Duration::from_millis(950),
        "timed out after {:?}",
        a.took
    );

    // Redirect, rewrite, mirror, CORS, response headers.
    pilot.apply("virtual-service-reviews-edges.yaml", EDGES);
    let a = must(listen, "reviews", "/old/path?q=1", &[]);
    assert_eq!(a.status, 302, "{a:?}");
    assert_eq!(
        a.header("location"),
        Some("http://new.example/new?q=1"),
        "{a:?} (the head is lower-cased)"
    );
    let a = must(listen, "reviews", "/v1/items", &[]);
    assert_eq!((a.status, a.body.as_str()), (200, "reviews-v1"));
    assert_eq!(
        a.header("x-path"),
        Some("/api/items"),
        "prefix rewritten: {a:?}"
    );
    assert_eq!(
        a.header("x-host"),
        Some("internal.reviews"),
        "authority rewritten: {a:?}"
    );
    let a = must(listen, "reviews", "/mirrored/seen/m", &[]);
    assert_eq!(a.body, "reviews-v1");
    assert_eq!(reviews[0].attempts("m"), 1);
    wait_until(
        Duration::from_secs(10),
        "the mirrored copy to reach v2",
        || reviews[1].attempts("m") == 1,
    );
    let origin = ("origin", "https://shop.example");
    let a = call_method(
        listen,
        "OPTIONS",
        "reviews",
        "/",
        &[origin, ("access-control-request-method", "POST")],
    )
    .expect("preflight answered");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://shop.example"),
        "{a:?}"
    );
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("get,post"),
        "{a:?}"
    );
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("x-custom"),
        "{a:?}"
    );
    assert_eq!(a.header("access-control-max-age"), Some("86400"), "{a:?}");
    assert_ne!(a.body, "reviews-v3", "a preflight is answered by the proxy");
    let a = must(listen, "reviews", "/", &[origin]);
    assert_eq!((a.status, a.body.as_str()), (200, "reviews-v3"));
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://shop.example"),
        "{a:?}"
    );
    assert_eq!(
        a.header("access-control-expose-headers"),
        Some("x-path"),
        "{a:?}"
    );
    assert_eq!(a.header("x-served-by"), Some("mesh"), "{a:?}");
    let a = must(
        listen,
        "reviews",
        "/",
        &[("origin", "https://evil.example")],
    );
    assert_eq!(
        a.header("access-control-allow-origin"),
        None,
        "an origin not allowed gets no CORS headers"
    );

    // Circuit breaker: one connection, one pending request; the rest overflow at once with 503.
    let started: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || must(listen, "httpbin", "/slow/1500", &[])))
        .collect();
    let answers: Vec<Answer> = started
        .into_iter()
        .map(|t| t.join().expect("caller"))
        .collect();
    let overflowed = answers
        .iter()
        .filter(|a| a.status == 503 && a.header("x-envoy-overloaded") == Some("true"))
        .count();
    let served = answers.iter().filter(|a| a.status == 200).count();
    eprintln!("{api_type}: circuit breaker: {served} served, {overflowed} overflowed");
    assert!(
        served >= 1 && overflowed >= 1 && served + overflowed == 8,
        "{answers:?}"
    );
    let cluster = format!("cluster.outbound|{port}||httpbin.default.svc.cluster.local");
    assert_eq!(
        envoy.stat(&format!("{cluster}.upstream_rq_pending_overflow")),
        Some(overflowed as u64),
        "each overflow counted"
    );

    // Outlier detection: the broken host's 500s in a row eject it; then only the good one answers.
    wait_until(
        Duration::from_secs(20),
        "the broken flaky host to be ejected",
        || (0..10).all(|_| must(listen, "flaky", "/", &[]).status == 200),
    );
    for _ in 0..20 {
        assert_eq!(must(listen, "flaky", "/", &[]).body, "flaky-good");
    }
    let flaky_cluster = format!("cluster.outbound|{port}||flaky.default.svc.cluster.local");
    assert_eq!(
        envoy.stat(&format!(
            "{flaky_cluster}.outlier_detection.ejections_enforced_total"
        )),
        Some(1),
        "one ejection"
    );

    // TCP: 80/20 between the versions, per connection.
    pilot.apply("virtual-service-echo-tcp.yaml", TCP_SPLIT);
    let tcp_listen = held_tcp.addr;
    wait_until(Duration::from_secs(20), "the TCP listener to split", || {
        tcp_call(tcp_listen).is_some_and(|a| a == "echo-v2")
    });
    let mut versions: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        let a = tcp_call(tcp_listen).expect("a TCP answer");
        *versions.entry(a).or_default() += 1;
    }
    let v2 = versions.get("echo-v2").copied().unwrap_or(0);
    assert_eq!(
        versions.values().sum::<u32>(),
        400,
        "only v1 and v2 answer: {versions:?}"
    );
    let share = f64::from(v2) / 4.0;
    assert!(
        (13.0..=27.0).contains(&share),
        "v2 took {share}% of connections (want 20 ± 7): {versions:?}"
    );

    assert_eq!(envoy.rejected_updates(), 0, "Envoy rejected nothing");
    let dump = get(envoy.admin(), "/config_dump", &[])
        .expect("config dump")
        .body;
    for name in [
        format!("outbound|{port}|v2|reviews.default.svc.cluster.local"),
        format!("127.0.0.1_{port}"),
        "BlackHoleCluster".into(),
        "PassthroughCluster".into(),
    ] {
        assert!(dump.contains(&name), "{name} in Envoy's config dump");
    }
    drop(envoy);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

#[test]
fn envoy_routes_the_bookinfo_samples_as_istio_does_over_state_of_the_world_ads() {
    run("GRPC", Plane::Envoy);
}

#[test]
fn envoy_routes_the_bookinfo_samples_as_istio_does_over_delta_ads() {
    run("DELTA_GRPC", Plane::Envoy);
}

#[test]
fn sextant_proxy_routes_the_bookinfo_samples_as_istio_does_over_state_of_the_world_ads() {
    run("GRPC", Plane::Sextant);
}

#[test]
fn sextant_proxy_routes_the_bookinfo_samples_as_istio_does_over_delta_ads() {
    run("DELTA_GRPC", Plane::Sextant);
}
