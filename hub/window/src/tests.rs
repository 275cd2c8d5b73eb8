use super::*;

fn bag(source: &str, destination: &str, version: &str, code: i64, ms: i32) -> Bag {
    let mut b = Bag::new();
    let s = |v: &str| Value::String(v.to_string());
    let set = |b: &mut Bag, name: &str, v: Value| b.set_by_name(name, v).expect("vocabulary");
    set(&mut b, "context.reporter.kind", s("inbound"));
    set(&mut b, "source.workload.name", s(source));
    set(&mut b, "source.workload.namespace", s("bookinfo"));
    set(&mut b, "destination.workload.name", s(destination));
    set(&mut b, "destination.workload.namespace", s("bookinfo"));
    set(&mut b, "destination.service.name", s(destination));
    set(&mut b, "destination.service.namespace", s("bookinfo"));
    set(
        &mut b,
        "destination.labels",
        Value::StringMap([("version".to_string(), version.to_string())].into()),
    );
    set(&mut b, "response.code", Value::Int64(code));
    set(
        &mut b,
        "response.duration",
        Value::Duration(sextant_attributes::Span {
            seconds: 0,
            nanos: ms * 1_000_000,
        }),
    );
    set(&mut b, "connection.mtls", Value::Bool(true));
    b
}

#[test]
fn the_graph_and_services_show_rates_errors_and_latency() {
    let w = Window::new(WindowOptions::default());
    for _ in 0..9 {
        w.observe(&bag("productpage", "reviews", "v1", 200, 8));
    }
    w.observe(&bag("productpage", "reviews", "v3", 503, 60));
    let g = w.graph(Duration::from_secs(60));
    let ids: Vec<&str> = g["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "bookinfo/productpage/unknown",
            "bookinfo/reviews/v1",
            "bookinfo/reviews/v3"
        ]
    );
    let edges = g["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 2);
    // Once productpage is known in one version (as a destination), its calls come from that node.
    w.observe(&bag("unknown", "productpage", "v1", 200, 20));
    let g = w.graph(Duration::from_secs(60));
    let sources: Vec<&str> = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["source"].as_str())
        .collect();
    assert!(sources.contains(&"bookinfo/productpage/v1"), "{sources:?}");
    assert!(
        !sources.contains(&"bookinfo/productpage/unknown"),
        "{sources:?}"
    );
    let v3 = edges
        .iter()
        .find(|e| e["destination"] == "bookinfo/reviews/v3")
        .expect("the v3 edge");
    assert_eq!(v3["stats"]["requests"], 1);
    assert_eq!(v3["stats"]["error_rate"], 1.0);
    assert_eq!(v3["stats"]["mtls_share"], 1.0);

    let services = w.services(Duration::from_secs(60));
    let reviews = services["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "reviews"))
        .expect("reviews");
    assert_eq!(reviews["stats"]["requests"], 10);
    assert!((reviews["stats"]["error_rate"].as_f64().expect("a rate") - 0.1).abs() < 1e-9);
    let p50 = reviews["stats"]["p50_ms"].as_f64().expect("p50");
    assert!((5.0..=10.0).contains(&p50), "{p50}");
    let p99 = reviews["stats"]["p99_ms"].as_f64().expect("p99");
    assert!((50.0..=100.0).contains(&p99), "{p99}");
    assert_eq!(reviews["versions"].as_array().map(Vec::len), Some(2));

    let red = w.red("bookinfo", "reviews", Duration::from_secs(60));
    let points = red["points"].as_array().expect("points");
    assert_eq!(points.len(), 12, "60 s in 5 s steps");
    let total: u64 = points.iter().filter_map(|p| p["requests"].as_u64()).sum();
    assert_eq!(total, 10);
}

#[test]
fn memory_is_bounded_and_evictions_are_counted() {
    let w = Window::new(WindowOptions {
        max_edges: 10,
        max_decisions: 5,
        max_decision_counts: 3,
        max_traces: 4,
        max_spans: 2,
        ..WindowOptions::default()
    });
    // A flood of distinct callers: ten edges kept, the rest counted.
    for i in 0..1000 {
        w.observe(&bag(&format!("caller-{i}"), "reviews", "v1", 200, 1));
    }
    assert_eq!(w.status()["edges"], 10);
    assert_eq!(w.evictions().edges, 990);
    // Traces: a ring of four, two spans each.
    for t in 0..6u64 {
        for s in 1..=3u64 {
            let mut b = bag("productpage", "reviews", "v1", 200, 1);
            let headers = [
                ("x-b3-traceid".to_string(), format!("{:032x}", t + 1)),
                ("x-b3-spanid".to_string(), format!("{s:016x}")),
                ("x-b3-sampled".to_string(), "1".to_string()),
            ];
            b.set_by_name("request.headers", Value::StringMap(headers.into()))
                .expect("vocabulary");
            w.observe(&b);
        }
    }
    let traces = w.traces(10);
    assert_eq!(traces["traces"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        traces["traces"][0]["spans"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(w.evictions().traces, 2);
    assert_eq!(w.evictions().spans, 6);
    // Decisions: the five newest kept; three distinct counts.
    for i in 0..8 {
        w.decision(DecisionEvent {
            time: now_secs(),
            result: "deny",
            policy: format!("bookinfo/p{}", i % 4),
            rule: "r".into(),
            action: "DENY".into(),
            ..DecisionEvent::default()
        });
    }
    let d = w.decisions(100);
    assert_eq!(d["recent"].as_array().map(Vec::len), Some(5));
    assert_eq!(d["recent"][0]["policy"], "bookinfo/p3", "newest first");
    assert_eq!(d["counts"].as_array().map(Vec::len), Some(3));
    assert_eq!(w.evictions().decisions, 3);
    assert_eq!(w.evictions().decision_counts, 2);
}

#[test]
fn rate_limit_refusals_are_counted_per_rate_limit() {
    let w = Window::new(WindowOptions::default());
    for _ in 0..3 {
        w.decision(DecisionEvent {
            time: now_secs(),
            result: "rate_limited",
            policy: "bookinfo/details-per-user".into(),
            action: "RATE_LIMIT".into(),
            code: 8,
            http_status: 429,
            ..DecisionEvent::default()
        });
    }
    let r = w.rate_limits(Duration::from_secs(60));
    assert_eq!(
        r["rate_limits"][0]["ratelimit"],
        "bookinfo/details-per-user"
    );
    assert_eq!(r["rate_limits"][0]["refused"], 3);
}
