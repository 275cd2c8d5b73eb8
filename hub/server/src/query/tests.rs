use std::collections::HashMap;

use super::client::{Answer, Reason, Series, decode};
use super::prometheus::{
    covered, edge_queries, edges, graph_of, rate_limits_of, red_of, red_queries, red_steps,
    services_of, start_query,
};
use super::{PrometheusUrl, UrlError};

#[test]
fn urls_are_checked_before_anything_runs() {
    let ok = PrometheusUrl::parse("http://127.0.0.1:9090").unwrap();
    assert_eq!(ok.to_string(), "http://127.0.0.1:9090");
    let prefixed = PrometheusUrl::parse("http://prometheus.monitoring:9090/prom/").unwrap();
    assert_eq!(
        prefixed.to_string(),
        "http://prometheus.monitoring:9090/prom"
    );
    for (text, want) in [
        ("not-a-url", UrlError::NotUrl),
        ("127.0.0.1:9090", UrlError::NotUrl),
        ("", UrlError::NotUrl),
        ("https://prometheus:9090", UrlError::Https),
        ("ftp://prometheus:9090", UrlError::Scheme("ftp".to_string())),
        ("http://user:secret@prometheus:9090", UrlError::Credentials),
        ("http://prometheus:9090/?x=1", UrlError::Query),
    ] {
        assert_eq!(PrometheusUrl::parse(text), Err(want), "{text:?}");
    }
}

#[test]
fn prometheus_errors_are_read_as_its_errors() {
    let refused = decode(
        400,
        br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
    );
    assert!(
        matches!(&refused, Err(Reason::Refused { kind, message }) if kind == "bad_data" && message.contains("parse error")),
        "{refused:?}"
    );
    let html = decode(200, b"<html>not prometheus</html>");
    assert!(
        matches!(&html, Err(Reason::NotApi { status: 200, detail }) if detail.contains("not prometheus")),
        "{html:?}"
    );
    let scalar = decode(
        200,
        br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#,
    );
    assert!(matches!(scalar, Err(Reason::NotApi { .. })), "{scalar:?}");
    let matrix = decode(
        200,
        br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"le":"+Inf"},"values":[[10,"1"],[15,"NaN"],[20,"3.5"]]}]}}"#,
    )
    .unwrap();
    assert_eq!(matrix.series[0].samples, vec![(10.0, 1.0), (20.0, 3.5)]);
}

fn series(labels: &[(&str, &str)], value: f64) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        samples: vec![(0.0, value)],
    }
}

fn edge<'a>(
    source: &'a str,
    destination: &'a str,
    version: &'a str,
    service: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("source_workload", source),
        ("source_workload_namespace", "bookinfo"),
        ("destination_workload", destination),
        ("destination_workload_namespace", "bookinfo"),
        ("destination_version", version),
        ("destination_service_name", service),
    ]
}

fn outcome<'a>(
    mut e: Vec<(&'a str, &'a str)>,
    code: &'a str,
    mtls: bool,
) -> Vec<(&'a str, &'a str)> {
    e.push(("response_code", code));
    e.push(("grpc_response_status", "unknown"));
    let policy = if mtls { "mutual_tls" } else { "none" };
    e.push(("connection_security_policy", policy));
    e
}

fn bucket<'a>(mut e: Vec<(&'a str, &'a str)>, le: &'a str) -> Vec<(&'a str, &'a str)> {
    e.push(("le", le));
    e
}

/// Bookinfo's shape: productpage (v1 only) calls reviews v1 and v2; reviews-v1 calls ratings.
fn bookinfo() -> (Answer, Answer) {
    let pp_v1 = edge("productpage", "reviews", "v1", "reviews");
    let pp_v2 = edge("productpage", "reviews", "v2", "reviews");
    let caller = edge("unknown", "productpage", "v1", "productpage");
    let rv1 = edge("reviews", "ratings", "v1", "ratings");
    let requests = Answer {
        series: vec![
            series(&outcome(pp_v1.clone(), "200", true), 90.0),
            series(&outcome(pp_v1.clone(), "503", true), 10.0),
            series(&outcome(pp_v2.clone(), "200", true), 50.0),
            series(&outcome(pp_v2.clone(), "403", false), 50.0),
            series(&outcome(caller.clone(), "200", false), 200.0),
            series(&outcome(rv1.clone(), "200", true), 30.0),
        ],
        truncated: false,
    };
    let latency = Answer {
        series: vec![
            series(&bucket(pp_v1.clone(), "5"), 0.0),
            series(&bucket(pp_v1.clone(), "10"), 50.0),
            series(&bucket(pp_v1.clone(), "25"), 100.0),
            series(&bucket(pp_v1, "+Inf"), 100.0),
            series(&bucket(pp_v2.clone(), "10"), 0.0),
            series(&bucket(pp_v2.clone(), "25"), 100.0),
            series(&bucket(pp_v2, "+Inf"), 100.0),
        ],
        truncated: false,
    };
    (requests, latency)
}

#[test]
fn the_graph_has_the_windows_shape() {
    let (requests, latency) = bookinfo();
    let (edges, truncated) = edges(&requests, &latency);
    assert!(!truncated);
    let g = graph_of(&edges, 100.0);
    let ids: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    // productpage's calls come from its one version; reviews calls ratings from two candidate versions,
    // so its caller node stays `unknown`, as the window draws it.
    assert_eq!(
        ids,
        [
            "bookinfo/productpage/v1",
            "bookinfo/ratings/v1",
            "bookinfo/reviews/unknown",
            "bookinfo/reviews/v1",
            "bookinfo/reviews/v2",
            "bookinfo/unknown/unknown"
        ]
    );
    let e = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["destination"] == "bookinfo/reviews/v1")
        .unwrap();
    assert_eq!(e["source"], "bookinfo/productpage/v1");
    assert_eq!(e["service"], "reviews");
    assert_eq!(e["service_namespace"], "bookinfo");
    let s = &e["stats"];
    assert_eq!(s["requests"], 100);
    assert_eq!(s["rps"], 1.0);
    assert_eq!(s["error_rate"], 0.1);
    assert_eq!(s["mtls_share"], 1.0);
    // Half the observations by 10 ms, all by 25 ms: p50 at 10, p90 interpolated at 22.
    assert_eq!(s["p50_ms"], 10.0);
    assert!((s["p90_ms"].as_f64().unwrap() - 22.0).abs() < 1e-9, "{s}");
    let ratings = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "bookinfo/ratings/v1")
        .unwrap();
    assert_eq!(ratings["stats"]["p50_ms"], serde_json::Value::Null);
    assert_eq!(ratings["services"], serde_json::json!(["ratings"]));
}

#[test]
fn services_sum_their_versions() {
    let (requests, latency) = bookinfo();
    let (edges, _) = edges(&requests, &latency);
    let s = services_of(&edges, 100.0);
    let reviews = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "reviews")
        .unwrap();
    assert_eq!(reviews["namespace"], "bookinfo");
    assert_eq!(reviews["stats"]["requests"], 200);
    assert_eq!(reviews["stats"]["denied_rate"], 0.25);
    assert_eq!(reviews["stats"]["mtls_share"], 0.75);
    let versions: Vec<&str> = reviews["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v2"]);
}

#[test]
fn edges_past_the_limit_are_the_quietest() {
    let requests = Answer {
        series: (0..2_100)
            .map(|i| {
                let name = format!("w{i}");
                let mut s = series(&outcome(edge("a", "b", "v1", "b"), "200", false), i as f64);
                s.labels.insert("source_workload".to_string(), name);
                s
            })
            .collect(),
        truncated: false,
    };
    let (kept, truncated) = edges(&requests, &Answer::default());
    assert!(truncated);
    // Series of zero requests are not edges; of the others the 2000 busiest stay.
    assert_eq!(kept.len(), 2_000);
    assert!(kept.iter().all(|(e, _)| e.source.name != "w99"));
}

#[test]
fn red_points_fill_every_step() {
    assert_eq!(red_steps(60), (5, 12));
    assert_eq!(red_steps(600), (5, 120));
    assert_eq!(red_steps(3600), (30, 120));
    let mut ok = series(
        &[
            ("response_code", "200"),
            ("connection_security_policy", "mutual_tls"),
        ],
        0.0,
    );
    // Rates at each step's end: 1010 ends the step of 1005.
    ok.samples = vec![(1010.0, 2.0), (1015.0, 4.0)];
    let answer = Answer {
        series: vec![ok],
        truncated: false,
    };
    let red = red_of(
        "bookinfo",
        "reviews",
        (1000.0, 5.0, 3),
        &answer,
        &Answer::default(),
    );
    let points = red["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[0]["requests"], 0);
    assert_eq!(points[1]["rps"], 2.0);
    assert_eq!(points[1]["requests"], 10);
    assert_eq!(points[2]["time"], 1010.0);
    assert_eq!(points[2]["mtls_share"], 1.0);
    assert_eq!(red["step_seconds"], 5.0);
}

#[test]
fn queries_quote_what_the_path_says() {
    let (requests, latency) = red_queries("book\"info", "re\\views", 60);
    assert!(
        requests.contains(
            r#"destination_service_name="re\\views",destination_workload_namespace="book\"info""#
        ),
        "{requests}"
    );
    assert!(latency.contains(
        "sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\""
    ));
    let (requests, _) = edge_queries(300);
    assert!(requests.contains("[300s]"), "{requests}");
    assert!(requests.ends_with("> 0"), "{requests}");
}

#[test]
fn rate_limits_have_the_windows_shape() {
    let refusals = Answer {
        series: vec![
            series(&[("ratelimit", "bookinfo/details-per-user")], 42.4),
            series(&[("ratelimit", "bookinfo/other")], 0.0),
        ],
        truncated: false,
    };
    let l = rate_limits_of(&refusals, 60.0);
    assert_eq!(
        l["rate_limits"],
        serde_json::json!([{"ratelimit": "bookinfo/details-per-user", "refused": 42, "per_second": 42.4 / 60.0}])
    );
    assert_eq!(l["window_seconds"], 60.0);
}

#[test]
fn rates_are_over_the_part_of_the_window_with_data() {
    assert_eq!(
        start_query(60, 5),
        "min_over_time(timestamp(count(istio_requests_total{reporter=\"destination\"}))[60s:5s])"
    );
    let since = |t: f64| Answer {
        series: vec![Series {
            labels: HashMap::new(),
            samples: vec![(1000.0, t)],
        }],
        truncated: false,
    };
    // Data since 12 s, in 5 s steps: the steps from its first, the one under way included.
    assert_eq!(covered(&since(988.0), 60, 5, 1000.0), 17.0);
    assert_eq!(covered(&since(100.0), 60, 5, 1000.0), 60.0);
    assert_eq!(covered(&since(1000.0), 60, 5, 1000.0), 5.0);
    assert_eq!(covered(&Answer::default(), 60, 5, 1000.0), 5.0);
}
