//! `sextant pilot` as a process, with a real Envoy 1.40 connected: the configuration directory's Istio
//! resources become Envoy's routes, the monitoring port tells what each proxy was sent and acknowledged, a
//! change takes effect without a restart, and a resource that turns invalid is left out (the rest served)
//! without Envoy refusing anything.
//! (How fast a change reaches Envoy is pilot-bench's to measure, not a test's.)

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Backend, HeldPort, Plane, Proc, call, get, get_json, scratch, scratch_config, start_pilot,
    wait_until, write_atomically,
};

fn services(port: u16, backend: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {backend}}}, labels: {{app: reviews, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}]
"#,
        backend = backend.port()
    )
}

fn routes(abort: bool) -> String {
    let fault = if abort {
        "    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v1}}\n{fault}"
    )
}

#[test]
fn pilot_drives_a_real_envoy_and_shows_what_it_sent() {
    run(Plane::Envoy);
}

#[test]
fn pilot_drives_sextant_proxy_and_shows_what_it_sent() {
    run(Plane::Sextant);
}

fn run(plane: Plane) {
    let (dir, config) = scratch_config(&format!("pilot-cli-{plane:?}"));
    let backend = Backend::start();
    // The ServiceEntry's port: Envoy binds it on 127.0.0.1 (no interception).
    let held = HeldPort::hold();
    let port = held.port();
    std::fs::write(config.join("services.yaml"), services(port, backend.addr)).expect("write");
    std::fs::write(config.join("routes.yaml"), routes(false)).expect("write");
    let (pilot, xds, monitoring) = start_pilot(&config, "127.0.0.1:0");
    let envoy = plane.start(
        &dir.join("proxy"),
        xds,
        "GRPC",
        common::PRODUCTPAGE_NODE,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
    );
    let listener = held.addr;
    wait_until(
        Duration::from_secs(60),
        "Envoy to route reviews to v1",
        || call(listener, "reviews", "/").is_some_and(|(s, b)| s == 200 && b == "backend ok"),
    );

    // /debug/syncz: the proxy, every type acknowledged at the version sent.
    let node = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local";
    wait_until(Duration::from_secs(30), "Envoy to ACK every type", || {
        let sync = get_json(monitoring, "/debug/syncz");
        let Some(p) = sync.as_array().and_then(|a| a.first()) else {
            return false;
        };
        let types = p["types"].as_object().cloned().unwrap_or_default();
        p["node"] == node
            && ["cds", "eds", "lds", "rds"].iter().all(|t| {
                types
                    .get(*t)
                    .is_some_and(|s| s["acked"] == s["sent"] && s["last_nack"].is_null())
            })
    });
    let dump = get(monitoring, &format!("/debug/config_dump?proxy={node}"), &[])
        .expect("config dump")
        .body;
    assert!(
        dump.contains(&format!(
            "outbound|{port}|v1|reviews.default.svc.cluster.local"
        )),
        "{dump}"
    );
    // The resources themselves, as protobuf JSON, nested Anys expanded: what Envoy was sent.
    let dump: serde_json::Value = serde_json::from_str(&dump).expect("config dump is JSON");
    let text = dump.to_string();
    assert!(
        text.contains(r#""@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster""#)
            && text.contains(r#""connectTimeout""#)
            && text.contains(r#""@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager""#)
            && text.contains(&format!(r#""routeConfigName":"{port}""#)),
        "{dump:#}"
    );
    let metrics = get(monitoring, "/metrics", &[]).expect("metrics").body;
    assert!(
        metrics.contains("pilot_xds_connected_proxies{protocol=\"sotw\"} 1"),
        "{metrics}"
    );

    // A VirtualService that turns invalid (an unknown subset) is left out, as Istio does: reviews is routed
    // by its default route (its one endpoint), nothing is NACKed.
    write_atomically(
        &config.join("routes.yaml"),
        &routes(false).replace("subset: v1", "subset: v9"),
    );
    wait_until(
        Duration::from_secs(30),
        "pilot to leave the VirtualService out",
        || {
            get_json(monitoring, "/debug/config")["rejected"]
                .to_string()
                .contains("routes.yaml:8")
        },
    );
    assert_eq!(
        call(listener, "reviews", "/").map(|(s, _)| s),
        Some(200),
        "the rest of the configuration keeps serving"
    );

    // A valid change (a fault abort) takes effect in Envoy, pilot and Envoy running on.
    let written = Instant::now();
    write_atomically(&config.join("routes.yaml"), &routes(true));
    wait_until(Duration::from_secs(60), "the abort to take effect", || {
        call(listener, "reviews", "/").is_some_and(|(s, _)| s == 418)
    });
    eprintln!(
        "the abort took effect {:?} after the write",
        written.elapsed()
    );
    assert_eq!(envoy.stat("cluster_manager.cds.update_rejected"), Some(0));
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), Some(0));
    drop(envoy);
    drop(pilot);
}

/// Starts the Python gRPC backend `name` on a port the kernel picks and waits until it serves.
fn grpc_backend(name: &str) -> (Proc, u16) {
    let mut cmd = Command::new(common::python());
    cmd.arg(common::repo().join("tests/python/grpc_backend.py"))
        .arg(name);
    let mut proc = Proc::spawn("grpc backend", cmd, scratch("grpc-backend").join("log"));
    let line = proc.wait_for_line("ready on ", Duration::from_secs(60));
    let port = line
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("the backend's ready line names its port: {line}"));
    (proc, port)
}

/// A real grpcio client with an `xds:///` target resolves a service through pilot (listener, routes,
/// clusters, endpoints over ADS) and spreads its calls by the VirtualService's weights.
#[test]
fn a_proxyless_grpc_client_resolves_through_pilot_and_follows_weights() {
    let (dir, config) = scratch_config("pilot-grpc");
    let (_v1, p1) = grpc_backend("v1");
    let (_v2, p2) = grpc_backend("v2");
    // Only a name in the xds:/// target: the proxyless client binds nothing, so any number does.
    let port = 7070;
    std::fs::write(
        config.join("greeter.yaml"),
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: greeter}}
spec:
  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: grpc, protocol: GRPC}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{grpc: {p1}}}, labels: {{app: greeter, version: v1}}}}
  - {{address: 127.0.0.1, ports: {{grpc: {p2}}}, labels: {{app: greeter, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: greeter}}
spec:
  host: greeter
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: greeter}}
spec:
  hosts: [greeter]
  http:
  - route:
    - {{destination: {{host: greeter, subset: v1}}, weight: 80}}
    - {{destination: {{host: greeter, subset: v2}}, weight: 20}}
"#
        ),
    )
    .expect("write");
    let (_pilot, xds, _monitoring) = start_pilot(&config, "127.0.0.1:0");
    let bootstrap = dir.join("grpc-bootstrap.json");
    std::fs::write(
        &bootstrap,
        serde_json::json!({
            "xds_servers": [{"server_uri": xds.to_string(), "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
            "node": {"id": "grpc~127.0.0.1~client.default~default.svc.cluster.local", "metadata": {"GENERATOR": "grpc", "NAMESPACE": "default"}},
        })
        .to_string(),
    )
    .expect("write");
    let calls = 1000;
    let out = Command::new(common::python())
        .arg(common::repo().join("tests/python/xds_client.py"))
        .arg(format!("xds:///greeter.default.svc.cluster.local:{port}"))
        .arg(calls.to_string())
        .env("GRPC_XDS_BOOTSTRAP", &bootstrap)
        .output()
        .expect("run the grpcio client");
    assert!(
        out.status.success(),
        "grpcio client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON counts");
    let v1 = counts["v1"].as_f64().unwrap_or(0.0);
    let v2 = counts["v2"].as_f64().unwrap_or(0.0);
    assert_eq!(v1 + v2, f64::from(calls), "{counts}");
    let share = v2 / f64::from(calls);
    assert!(
        (share - 0.2).abs() <= 0.05,
        "v2 got {:.1} % of the calls, the VirtualService says 20 %: {counts}",
        share * 100.0
    );
}
