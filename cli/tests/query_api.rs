//! The hub's query API (`docs/dashboard.md`) on a real hub fed by the Report API, as a user of `curl` and `jq`
//! (or the dashboard) sees it: the graph, services and RED with their rates, errors and latency; the window
//! parameter checked; and memory bounded under a flood of distinct series chosen by the clients — the window
//! keeps at most its limits, counts what it leaves out (in the API and in `/metrics`), and the hub's
//! resident memory stops growing once it is full.

mod common;

use std::time::Duration;

use common::{Hub, get, get_json, scratch_config, wait_until};
use sextant_attributes::{Bag, Span, Value};
use sextant_proto::mixer;
use sextant_proto::mixer::mixer_client::MixerClient;

const WAIT: Duration = Duration::from_secs(60);

/// An inbound report of a request from workload `source` to `destination`, both version v1.
fn bag(source: &str, destination: &str, code: i64, ms: i32, trace: u64) -> Bag {
    let mut b = Bag::new();
    let s = |v: &str| Value::String(v.to_string());
    let mut set = |name: &str, v: Value| {
        b.set_by_name(name, v).expect("vocabulary attribute");
    };
    set("context.reporter.kind", s("inbound"));
    set("source.workload.name", s(source));
    set("source.workload.namespace", s("shop"));
    set("destination.workload.name", s(destination));
    set("destination.workload.namespace", s("shop"));
    set("destination.service.name", s(destination));
    set("destination.service.namespace", s("shop"));
    // The caller's version, as a Sextant sidecar sends it.
    set(
        "source.labels",
        Value::StringMap([("version".to_string(), "v1".to_string())].into()),
    );
    set(
        "destination.labels",
        Value::StringMap([("version".to_string(), "v1".to_string())].into()),
    );
    set("request.url_path", s("/items"));
    set(
        "request.headers",
        Value::StringMap(
            [(
                "traceparent".to_string(),
                format!("00-{trace:032x}-{:016x}-01", trace + 1),
            )]
            .into(),
        ),
    );
    set("response.code", Value::Int64(code));
    set(
        "response.duration",
        Value::Duration(Span {
            seconds: 0,
            nanos: ms * 1_000_000,
        }),
    );
    set("connection.mtls", Value::Bool(true));
    b
}

/// Reports `bags` to `hub`, 500 to a call.
fn report(hub: &Hub, bags: &[Bag]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut client = MixerClient::connect(format!("http://{}", hub.grpc))
            .await
            .expect("connect");
        for chunk in bags.chunks(500) {
            let req = mixer::ReportRequest {
                attributes: chunk
                    .iter()
                    .map(sextant_attributes::to_compressed)
                    .collect(),
                default_words: Vec::new(),
                global_word_count: sextant_attributes::global_word_count(),
                repeated_attributes_semantics:
                    mixer::report_request::RepeatedAttributesSemantics::IndependentEncoding as i32,
            };
            client.report(req).await.expect("report");
        }
    });
}

/// `GET path` on the admin port: the status.
fn status(hub: &Hub, path: &str) -> u16 {
    get(hub.admin, path, &[]).expect("the admin answers").status
}

#[test]
fn the_query_api_answers_from_reports_and_stays_bounded_under_a_flood() {
    let (_dir, config) = scratch_config("query-api");
    let mut hub = Hub::start(&config);

    // web → api: 90 good in 8 ms, 10 failing in 40 ms; api → db: 50 in 2 ms.
    let mut bags: Vec<Bag> = (0..100u64)
        .map(|i| {
            let bad = i % 10 == 0;
            bag(
                "web",
                "api",
                if bad { 503 } else { 200 },
                if bad { 40 } else { 8 },
                i,
            )
        })
        .collect();
    bags.extend((0..50u64).map(|i| bag("api", "db", 200, 2, 1000 + i)));
    report(&hub, &bags);

    let mut graph = serde_json::Value::Null;
    wait_until(WAIT, "the graph to show both edges", || {
        graph = get_json(hub.admin, "/api/v1/graph?window=1m");
        graph["edges"].as_array().is_some_and(|e| e.len() == 2)
    });
    let edge = |from: &str, to: &str| {
        graph["edges"]
            .as_array()
            .and_then(|edges| {
                edges.iter().find(|e| {
                    e["source"] == format!("shop/{from}/v1")
                        && e["destination"] == format!("shop/{to}/v1")
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("edge {from} → {to}: {graph:#}"))
    };
    let web_api = edge("web", "api")["stats"].clone();
    assert_eq!(web_api["requests"], 100, "{web_api}");
    assert!(
        (web_api["error_rate"].as_f64().unwrap() - 0.1).abs() < 1e-9,
        "{web_api}"
    );
    assert_eq!(web_api["mtls_share"], 1.0, "{web_api}");
    let p50 = web_api["p50_ms"].as_f64().expect("p50");
    let p99 = web_api["p99_ms"].as_f64().expect("p99");
    assert!(
        (5.0..=10.0).contains(&p50),
        "p50 in the 5–10 ms bucket: {web_api}"
    );
    assert!(
        (20.0..=50.0).contains(&p99),
        "p99 in the 20–50 ms bucket: {web_api}"
    );
    assert_eq!(edge("api", "db")["stats"]["requests"], 50);
    let nodes: Vec<&str> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    for id in ["shop/web/v1", "shop/api/v1", "shop/db/v1"] {
        assert!(nodes.contains(&id), "node {id}: {nodes:?}");
    }

    let services = get_json(hub.admin, "/api/v1/services?window=1m");
    let api = services["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "api"))
        .cloned()
        .unwrap_or_else(|| panic!("service api: {services:#}"));
    assert_eq!(api["stats"]["requests"], 100);
    assert_eq!(api["versions"][0]["version"], "v1");
    let red = get_json(hub.admin, "/api/v1/services/shop/api/red?window=1m");
    let counted: u64 = red["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter_map(|p| p["requests"].as_u64())
        .sum();
    assert_eq!(counted, 100, "RED's points hold every request: {red:#}");
    let traces = get_json(hub.admin, "/api/v1/traces?limit=3");
    assert_eq!(
        traces["traces"].as_array().map(Vec::len),
        Some(3),
        "{traces:#}"
    );

    // The window parameter: what it accepts and what it refuses, saying why.
    for ok in ["30s", "5m", "1h"] {
        assert_eq!(
            status(&hub, &format!("/api/v1/graph?window={ok}")),
            200,
            "window={ok}"
        );
    }
    for bad in ["soon", "0s", "5", "-1m", "99999999999999999999h"] {
        let answer =
            get(hub.admin, &format!("/api/v1/graph?window={bad}"), &[]).expect("an answer");
        assert_eq!(answer.status, 400, "window={bad}: {}", answer.body);
        assert!(
            answer.body.contains("window"),
            "the refusal says what: {}",
            answer.body
        );
    }

    // A flood of distinct callers (a label the clients choose): the window keeps its limits and counts the
    // rest; once full, the hub's memory stays where it is.
    let flood = |first: u64, n: u64| -> Vec<Bag> {
        (first..first + n)
            .map(|i| bag(&format!("caller-{i}"), "api", 200, 3, 1_000_000 + i))
            .collect()
    };
    let before = hub.proc.rss_kib();
    report(&hub, &flood(0, 10_000));
    let mut window = serde_json::Value::Null;
    wait_until(
        WAIT,
        "the window to be full and count what it left out",
        || {
            window = get_json(hub.admin, "/api/v1/window");
            window["edges"] == window["max_edges"]
                && window["evictions"]["edges"].as_u64() > Some(0)
        },
    );
    let full = hub.proc.rss_kib();
    report(&hub, &flood(10_000, 20_000));
    wait_until(WAIT, "the second flood to be left out too", || {
        window = get_json(hub.admin, "/api/v1/window");
        // Every caller past the 1998 that joined the first two edges.
        window["evictions"]["edges"].as_u64() == Some(30_000 - 1998)
    });
    let after = hub.proc.rss_kib();
    eprintln!(
        "resident memory: {before} KiB before the flood, {full} KiB with the window full, {after} KiB after 20 000 more series"
    );
    assert_eq!(window["edges"], window["max_edges"], "{window:#}");
    assert!(
        window["traces"].as_u64() <= window["max_traces"].as_u64(),
        "{window:#}"
    );
    // 20 000 more distinct series hold no more memory (a margin for the allocator's own noise).
    assert!(
        after <= full + 16 * 1024,
        "resident memory grew from {full} KiB to {after} KiB with the window full"
    );
    let graph = get_json(hub.admin, "/api/v1/graph?window=1m");
    assert!(
        graph["edges"].as_array().map(Vec::len) <= window["max_edges"].as_u64().map(|n| n as usize),
        "the graph holds at most the window's edges"
    );
    wait_until(WAIT, "the evictions in /metrics", || {
        let metrics = get(hub.admin, "/metrics", &[])
            .map(|r| r.body)
            .unwrap_or_default();
        metrics.lines().any(|l| {
            l.starts_with("sextant_hub_window_evicted{kind=\"edges\"}")
                && l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) > Some(0.0)
        })
    });
    assert!(hub.proc.alive());
}
