//! gRPC through a sidecar, Envoy 1.40 and `sextant proxy` on the same table: `sextant pilot` serves a
//! ServiceEntry whose port is `grpc` (so its cluster speaks HTTP/2 upstream) to a sidecar without
//! interception, which binds the service port on 127.0.0.1; a grpcio client calls a grpcio server through
//! that listener with the service's name as `:authority`. What a gRPC user relies on must come through
//! intact: unary calls with initial and trailing metadata (repeated and binary keys included), server,
//! client and bidirectional streams (a ping-pong that stalls if the proxy holds either direction), 4 MiB
//! messages each way, 500 calls at once, a deadline (DEADLINE_EXCEEDED at the client, the deadline known
//! to the server), a cancellation reaching the server, status codes and messages (trailers-only responses
//! and failures after headers or messages), UNIMPLEMENTED, and Istio's default retry of UNAVAILABLE.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{HeldPort, Plane, Proc, python, repo, scratch_config, start_pilot, wait_until};
use serde_json::{Value, json};

/// The service's host, as the client names it.
const SERVICE: &str = "echo.default.svc.cluster.local";

/// Starts `tests/python/grpc_echo.py` on a port the kernel picks; returns it with that port.
fn echo_server(log: std::path::PathBuf) -> (Proc, u16) {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/python/grpc_echo.py"));
    let mut proc = Proc::spawn("grpc echo server", cmd, log);
    let line = proc.wait_for_line("ready on ", Duration::from_secs(60));
    let port = line
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the server's ready line names its port: {line}"));
    (proc, port)
}

/// Runs `tests/python/grpc_calls.py` against `listener` in `mode`: its stdout when it succeeds, else what
/// it printed.
fn grpc_calls(listener: SocketAddr, authority: &str, mode: &str) -> Result<String, String> {
    let out = Command::new(python())
        .arg(repo().join("tests/python/grpc_calls.py"))
        .args([&listener.to_string(), authority, mode])
        .output()
        .map_err(|e| format!("cannot run grpc_calls.py: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The ServiceEntry: one `grpc` port, the echo server its only endpoint.
fn service_entry(port: u16, backend: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: echo}}
spec:
  hosts: [{SERVICE}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: grpc, protocol: GRPC}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{grpc: {backend}}}, labels: {{app: echo}}}}
"#
    )
}

/// The client's results checked case by case; every mismatch is kept, so one run shows them all.
struct Table<'a> {
    results: &'a Value,
    failures: Vec<String>,
}

impl Table<'_> {
    /// The case's whole result must be `want`.
    fn equals(&mut self, case: &str, want: Value) {
        let got = &self.results[case];
        if *got != want {
            self.failures.push(format!(
                "{case}: got {got}\n{:>width$}want {want}",
                "",
                width = case.len() + 2
            ));
        }
    }

    /// The case's result must satisfy `what`.
    fn holds(&mut self, case: &str, what: &str, cond: impl FnOnce(&Value) -> bool) {
        let got = &self.results[case];
        if !cond(got) {
            self.failures.push(format!("{case}: {what}; got {got}"));
        }
    }
}

fn run(plane: Plane) {
    let (dir, config) = scratch_config(&format!("proxy-grpc-{plane:?}"));
    let (_server, backend) = echo_server(dir.join("grpc-echo.log"));
    // The service port: the sidecar binds it on 127.0.0.1 (no interception).
    let held = HeldPort::hold();
    std::fs::write(
        config.join("echo.yaml"),
        service_entry(held.port(), backend),
    )
    .expect("write the ServiceEntry");
    let (_pilot, xds, _monitoring) = start_pilot(&config, "127.0.0.1:0");
    let proxy = plane.start(
        &dir.join("proxy"),
        xds,
        "GRPC",
        common::PRODUCTPAGE_NODE,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
    );
    // Istio's domains for the service include `HOST:PORT`, what a client dialing the service sends.
    let authority = format!("{SERVICE}:{}", held.port());
    // Each new way a probe fails is shown once: when the wait times out, the last one says why.
    let mut last = String::new();
    wait_until(
        Duration::from_secs(60),
        "a unary call through the proxy's listener",
        || match grpc_calls(held.addr, &authority, "probe") {
            Ok(_) => true,
            Err(e) => {
                if e != last {
                    eprintln!("{plane:?}: a probe failed: {e}");
                    last = e;
                }
                false
            }
        },
    );

    let out = grpc_calls(held.addr, &authority, "all")
        .unwrap_or_else(|e| panic!("grpc_calls.py failed through {plane:?}:\n{e}"));
    eprintln!("{plane:?}: {out}");
    let results: Value = serde_json::from_str(&out).expect("grpc_calls.py prints JSON");
    let mut table = Table {
        results: &results,
        failures: Vec::new(),
    };

    table.equals(
        "unary",
        json!({
            "code": "OK",
            "reply": "hello",
            "initial": [["x-test-initial", "hello"], ["x-test-client-echo", "c1"]],
            "trailing": [
                ["x-test-trailer", "world"],
                ["x-test-multi", "a"],
                ["x-test-multi", "b"],
                ["x-test-trace-bin", "000102ff"],
            ],
        }),
    );
    table.equals(
        "server_stream",
        json!({"code": "OK", "count": 100, "in_order": true, "trailing": [["x-test-count", "100"]]}),
    );
    table.equals(
        "server_stream_fails",
        json!({
            "code": "RESOURCE_EXHAUSTED",
            "details": "quota spent",
            "items": ["item-0", "item-1", "item-2"],
            "initial": [],
            "trailing": [["x-test-count", "10"]],
        }),
    );
    table.equals(
        "client_stream",
        json!({"code": "OK", "count": 100, "bytes": 100_000}),
    );
    table.equals("bidi", json!({"code": "OK", "pongs": 50, "in_order": true}));
    let four_mib = 4 * 1024 * 1024;
    table.equals(
        "large",
        json!({"code": "OK", "sent": four_mib, "received": four_mib, "same": true}),
    );
    // 500 small responses at once on the proxy's one upstream connection, which Envoy forwards however
    // many small DATA frames arrive together.
    table.equals("concurrent", json!({"answered": 500, "failures": {}}));
    table.equals("unimplemented", json!({"code": "UNIMPLEMENTED"}));

    // Each failure with its code, its message (percent-encoded on the wire: non-ASCII, `%`, `/`, `?`) and
    // its trailers; a failure before any header is a trailers-only response.
    let failed = |code: &str, details: &str, initial: Value| {
        json!({
            "code": code,
            "details": details,
            "initial": initial,
            "trailing": [["x-test-why", "asked-to-fail"]],
        })
    };
    table.equals(
        "status",
        json!({
            "NOT_FOUND": failed("NOT_FOUND", "no such thing", json!([])),
            "INVALID_ARGUMENT": failed("INVALID_ARGUMENT", "résumé 100% wrong: a/b?c=d", json!([])),
            "PERMISSION_DENIED":
                failed("PERMISSION_DENIED", "not yours", json!([["x-test-initial", "before-failure"]])),
            "INTERNAL": failed("INTERNAL", "it broke", json!([["x-test-initial", "before-failure"]])),
        }),
    );

    // The client gives up at its 0.5 s deadline; the server learned the deadline from `grpc-timeout`
    // (Envoy forwards the header untouched: pilot's routes set no `max_stream_duration`) and ended then.
    table.holds(
        "deadline",
        "DEADLINE_EXCEEDED at the client within 5 s",
        |r| r["code"] == "DEADLINE_EXCEEDED" && r["took_ms"].as_u64().is_some_and(|t| t < 5000),
    );
    table.holds(
        "deadline",
        // grpc-timeout is encoded rounded up and read against another clock: a bound, not 500 exactly.
        "the server saw the client's deadline, about 500 ms (grpc-timeout forwarded)",
        |r| {
            r["server"]["remaining_ms"]
                .as_u64()
                .is_some_and(|t| t <= 1000)
        },
    );
    table.holds("deadline", "the server's call ended within 5 s", |r| {
        r["server"]["ended"] == true && r["server"]["ended_ms"].as_u64().is_some_and(|t| t < 5000)
    });
    // A call without a deadline, cancelled by the client: only the proxy's reset of the upstream stream
    // tells the server, which must stop at once rather than work on for nobody.
    table.holds(
        "cancel",
        "CANCELLED at the client, the server's call ended within 5 s",
        |r| {
            r["code"] == "CANCELLED"
                && r["server"]["ended"] == true
                && r["server"]["ended_ms"].as_u64().is_some_and(|t| t < 5000)
        },
    );

    // Istio's default route retries `unavailable` twice (pilot's DEFAULT_RETRY_ON): a first UNAVAILABLE is
    // hidden from the client, a lasting one reaches it after three attempts with the last message. A gRPC
    // request has no content-length; Envoy retries it all the same, keeping a copy of the body as it streams
    // it upstream (up to its buffer limit, 1 MiB by default).
    table.equals("unavailable_once", json!({"code": "OK", "attempts": 2}));
    table.equals(
        "unavailable_always",
        json!({"code": "UNAVAILABLE", "details": "attempt 3 fails", "attempts": 3}),
    );

    // The proxy's counters for the service: whether a retry row differs by a retry not attempted or one
    // attempted and lost, and how many upstream connections the calls took (a connection the proxy gave up
    // shows as more than one).
    let counters = || {
        common::get(
            proxy.admin(),
            "/stats?filter=echo.*(retry|upstream_cx_total|upstream_rq_total)",
            &[],
        )
        .map(|r| r.body)
        .unwrap_or_default()
    };
    assert!(
        table.failures.is_empty(),
        "gRPC through {plane:?}: {} case(s) differ (logs in {}):\n{}\nthe proxy's counters:\n{}",
        table.failures.len(),
        dir.display(),
        table.failures.join("\n"),
        counters()
    );
    assert_eq!(proxy.rejected_updates(), 0, "the proxy rejected no push");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grpc_calls_streams_deadlines_statuses_and_trailers_come_through_envoy_intact() {
    run(Plane::Envoy);
}

#[test]
fn grpc_calls_streams_deadlines_statuses_and_trailers_come_through_sextant_proxy_intact() {
    run(Plane::Sextant);
}
