//! `sextant hub --prometheus-url`: the query API (and so the dashboard) answered from a real Prometheus, as a
//! hub of a fleet does it. `sextant dev` runs the bookinfo mesh with its traffic; a real Prometheus scrapes
//! its hub (Istio's metrics on the adapters' exposition, the hub's own on its admin `/metrics`); a second
//! `sextant hub`, which no sidecar reports to, answers from that Prometheus. A user would notice: a graph
//! missing a workload or an edge, a service without its versions, a RED chart without points, the bot's
//! rate-limit refusals missing, a Prometheus that went away answered as an empty mesh instead of an error,
//! or a mistyped URL accepted at start.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    BOOKINFO_NODES, DevMesh, Hub, Prometheus, ScrapeJob, eventually, get, get_json, scratch,
    start_dev,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
/// Edges the demo's traffic makes, by their caller's id and their callee's (the metrics' `source_version`
/// tells reviews v2 and v3 apart as callers of ratings).
const EDGES: [(&str, &str); 6] = [
    ("bookinfo/productpage/v1", "bookinfo/details/v1"),
    ("bookinfo/productpage/v1", "bookinfo/reviews/v1"),
    ("bookinfo/productpage/v1", "bookinfo/reviews/v2"),
    ("bookinfo/productpage/v1", "bookinfo/reviews/v3"),
    ("bookinfo/reviews/v2", "bookinfo/ratings/v1"),
    ("bookinfo/reviews/v3", "bookinfo/ratings/v1"),
];

fn array(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// Whether `graph` has every node and every edge, each edge with traffic.
fn whole(graph: &Value) -> bool {
    let nodes = BOOKINFO_NODES
        .iter()
        .all(|id| array(&graph["nodes"]).iter().any(|n| n["id"] == *id));
    let edges = EDGES.iter().all(|(from, to)| {
        array(&graph["edges"]).iter().any(|e| {
            e["source"] == *from
                && e["destination"] == *to
                && e["stats"]["rps"].as_f64() > Some(0.0)
        })
    });
    nodes && edges
}

#[test]
fn a_hub_answers_the_query_api_from_prometheus() {
    let dir = scratch("query-prometheus");
    // A loopback network no other test of the run takes (dev 100-249, grafana 10-89, dashboard 20-79,
    // jaeger 180-239).
    let DevMesh {
        proc: mut dev,
        admin: dev_admin,
        metrics: adapters,
        ..
    } = start_dev(&dir, &dir.join("config"), 250, 5, &[]);
    let job = |name: &str, target| ScrapeJob {
        name: name.to_string(),
        path: "/metrics".to_string(),
        groups: vec![(vec![target], vec![])],
    };
    let mut prometheus = Prometheus::start_jobs(&[
        job("sextant-hub-adapters", adapters),
        job("sextant-hub", dev_admin),
    ]);
    let url = format!("http://{}", prometheus.addr);

    // A hub of its own: nothing reports to it, so all it knows of the mesh is Prometheus's.
    let (_, empty) = common::scratch_config("query-prometheus-hub");
    let hub = Hub::start_with(
        &empty,
        &["--prometheus-url", &url, "--no-default-telemetry"],
    );

    let mut graph = Value::Null;
    let whole_graph = eventually(WAIT, || {
        graph = get_json(hub.admin, "/api/v1/graph?window=1m");
        whole(&graph)
    });
    assert!(
        whole_graph,
        "the graph from Prometheus lacks a bookinfo node or edge: {graph:#}\nthe dev hub's own: {:#}",
        get_json(dev_admin, "/api/v1/graph?window=1m")
    );
    assert_eq!(graph["source"], "prometheus", "{graph:#}");
    let window = get_json(hub.admin, "/api/v1/window");
    assert_eq!(
        window["edges"], 0,
        "the hub had no reports: its window is empty"
    );
    let edge = array(&graph["edges"])
        .iter()
        .find(|e| e["destination"] == "bookinfo/reviews/v2")
        .expect("an edge to reviews-v2");
    assert_eq!(edge["service"], "reviews");
    assert_eq!(edge["service_namespace"], "bookinfo");
    for field in [
        "error_rate",
        "denied_rate",
        "rate_limited_rate",
        "mtls_share",
    ] {
        let share = edge["stats"][field].as_f64();
        assert!(
            share.is_some_and(|s| (0.0..=1.0).contains(&s)),
            "{field} is a share: {edge:#}"
        );
    }
    assert!(
        edge["stats"]["mtls_share"].as_f64() > Some(0.9),
        "the mesh is mTLS: {edge:#}"
    );
    assert!(
        edge["stats"]["p50_ms"].as_f64() > Some(0.0)
            && edge["stats"]["p99_ms"].as_f64() >= edge["stats"]["p50_ms"].as_f64(),
        "latency quantiles from the histogram: {edge:#}"
    );

    let services = get_json(hub.admin, "/api/v1/services?window=1m");
    assert_eq!(services["source"], "prometheus");
    let reviews = array(&services["services"])
        .iter()
        .find(|s| s["name"] == "reviews" && s["namespace"] == "bookinfo")
        .unwrap_or_else(|| panic!("reviews in {services:#}"));
    let versions: Vec<&str> = array(&reviews["versions"])
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    assert_eq!(versions, ["v1", "v2", "v3"], "{reviews:#}");

    let mut red = Value::Null;
    let traffic = eventually(WAIT, || {
        red = get_json(hub.admin, "/api/v1/services/bookinfo/reviews/red?window=1m");
        array(&red["points"])
            .iter()
            .any(|p| p["rps"].as_f64() > Some(0.0) && p["p50_ms"].as_f64() > Some(0.0))
    });
    assert!(traffic, "reviews' traffic in its RED: {red:#}");
    assert_eq!(red["source"], "prometheus", "{red:#}");
    assert_eq!(
        array(&red["points"]).len(),
        12,
        "a minute in 5 s steps, every step a point: {red:#}"
    );

    // The demo's bot bursts into details-per-user: refusals counted by the dev hub, read from Prometheus.
    let mut limits = Value::Null;
    let refused = eventually(WAIT, || {
        limits = get_json(hub.admin, "/api/v1/ratelimits?window=1m");
        array(&limits["rate_limits"]).iter().any(|l| {
            l["ratelimit"] == "bookinfo/details-per-user" && l["refused"].as_u64() > Some(0)
        })
    });
    assert!(refused, "the bot's refusals from Prometheus: {limits:#}");
    assert_eq!(limits["source"], "prometheus");
    // Decisions and traces are in no metric: this hub's own window, which saw none.
    let decisions = get_json(hub.admin, "/api/v1/decisions");
    assert_eq!(array(&decisions["recent"]).len(), 0, "{decisions:#}");

    // Prometheus gone: an error naming it, not an empty mesh.
    prometheus.proc.terminate();
    let answer = get(hub.admin, "/api/v1/graph?window=1m", &[]).expect("the hub answers");
    assert_eq!(answer.status, 502, "{}", answer.body);
    let error: Value = serde_json::from_str(&answer.body).expect("a JSON error");
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("prometheus at {url}: "))
            && message.contains("cannot connect"),
        "the error names Prometheus and what failed: {message}"
    );
    let answer = get(hub.admin, "/api/v1/ratelimits", &[]).expect("the hub answers");
    assert_eq!(answer.status, 502, "{}", answer.body);

    let status = dev.stop_with("INT");
    assert!(
        status.success(),
        "sextant dev exited {status}:\n{}",
        dev.log()
    );
}

#[test]
fn a_bad_prometheus_url_stops_the_hub_before_it_starts() {
    let (_, config) = common::scratch_config("query-prometheus-url");
    for (url, says) in [
        ("not-a-url", "not a URL"),
        ("https://127.0.0.1:9090", "https:// is not supported"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(["hub", "--config-dir"])
            .arg(&config)
            .args(["--prometheus-url", url])
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--prometheus-addr", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .output()
            .expect("run sextant hub");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: the hub started:\n{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{url}: one error line:\n{stderr}");
        assert!(
            errors[0].contains(&format!("--prometheus-url {url:?}")) && errors[0].contains(says),
            "{url}: the error names the flag and what is wrong: {}",
            errors[0]
        );
        assert!(
            !stderr.contains("hub: gRPC on"),
            "{url}: nothing bound:\n{stderr}"
        );
    }
}
