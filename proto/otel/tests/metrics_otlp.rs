//! A role's Prometheus text exported over OTLP (gRPC and HTTP/protobuf) to receivers in the test, each
//! request decoded by the official Python types (`tests/python/otlp_decode.py` in the `otel` venv the
//! peers script installs): the user's metric names, values, attributes and resource survive the trip. A
//! dead collector is counted, not fatal.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prost::Message;
use serde_json::Value;
use sextant_otel::options::{self, Flags, Options};
use sextant_otel::stats::stats;
use tokio::sync::{Mutex, mpsc};

/// The tests share the process's failure counter: one at a time, so a rise belongs to the test that sees it.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn options(endpoint: &str, protocol: &str) -> Options {
    let vars: HashMap<&str, String> = [
        (options::ENDPOINT, endpoint),
        (options::PROTOCOL, protocol),
        (options::METRIC_INTERVAL, "100"),
        (options::TIMEOUT, "3000"),
        (options::SERVICE_NAME, "sextant-test"),
        (options::RESOURCE_ATTRIBUTES, "k8s.pod.name=pod-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    options::resolve(&Flags::default(), |k| vars.get(k).cloned(), "unused")
        .expect("valid options")
        .expect("export on")
}

/// An OTLP/gRPC collector: each request re-encoded and handed to the test.
struct GrpcReceiver(mpsc::UnboundedSender<Vec<u8>>);

#[tonic::async_trait]
impl MetricsService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner().encode_to_vec());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(GrpcReceiver(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (format!("http://{addr}"), rx)
}

/// An OTLP/HTTP collector: each body POSTed to `/v1/metrics` (with its content type) handed to the test.
async fn http_receiver() -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let content_type = headers
                    .get(axum::http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                if content_type != Some("application/x-protobuf") {
                    return (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
                }
                let _ = tx.send(body.to_vec());
                (
                    axum::http::StatusCode::OK,
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

/// The next request a receiver got (at most 20 s).
async fn next(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a request within 20 s")
        .expect("the receiver runs")
}

/// `bytes` decoded as an `ExportMetricsServiceRequest` by the official Python types, as protobuf JSON.
fn decoded(bytes: &[u8], name: &str) -> Value {
    let peers = std::env::var_os("SEXTANT_PEERS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.peers")),
        PathBuf::from,
    );
    let python = peers.join("otel/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `.ci/peers` first",
        python.display()
    );
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "metrics-otlp-{}-{}.pb",
        name.replace('/', "-"),
        std::process::id()
    ));
    std::fs::write(&file, bytes).expect("write the request");
    let out = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/python/otlp_decode.py"
        ))
        .arg("metrics")
        .arg(&file)
        .output()
        .expect("run otlp_decode.py");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "otlp_decode.py refused the request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The metrics of a decoded request by name, and its resource's attributes.
fn metrics_of(json: &Value) -> (HashMap<String, Value>, HashMap<String, String>) {
    let rm = &json["resourceMetrics"][0];
    let resource = rm["resource"]["attributes"]
        .as_array()
        .expect("resource attributes")
        .iter()
        .map(|kv| {
            (
                kv["key"].as_str().expect("key").to_string(),
                kv["value"]["stringValue"]
                    .as_str()
                    .expect("string")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(rm["scopeMetrics"][0]["scope"]["name"], "sextant");
    let metrics = rm["scopeMetrics"][0]["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| (m["name"].as_str().expect("name").to_string(), m.clone()))
        .collect();
    (metrics, resource)
}

fn attributes(point: &Value) -> HashMap<String, String> {
    point["attributes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().expect("key").to_string(),
                        kv["value"]["stringValue"]
                            .as_str()
                            .expect("string")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A monotonic cumulative sum's only point.
fn counter_point(m: &Value) -> &Value {
    let sum = &m["sum"];
    assert_eq!(sum["isMonotonic"], true, "{m}");
    assert_eq!(
        sum["aggregationTemporality"], "AGGREGATION_TEMPORALITY_CUMULATIVE",
        "{m}"
    );
    let points = sum["dataPoints"].as_array().expect("points");
    assert_eq!(points.len(), 1, "{m}");
    &points[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("int64 as a string").to_string())
        .collect()
}

/// What a role's prometheus-client registry renders (OpenMetrics).
fn hub_text() -> String {
    let mut registry = Registry::with_prefix("sextant_hub");
    let checks = Family::<Vec<(String, String)>, Counter>::default();
    checks
        .get_or_create(&vec![
            ("policy".into(), "ns/deny \"all\"".into()),
            ("outcome".into(), "denied".into()),
        ])
        .inc_by(42);
    registry.register("checks", "Check calls by outcome", checks);
    let adapters = Gauge::<i64>::default();
    adapters.set(3);
    registry.register("adapters", "Adapters loaded", adapters);
    let latency = Histogram::new([0.001, 0.01, 0.1]);
    for v in [0.0005, 0.002, 0.003, 0.05, 1.0] {
        latency.observe(v);
    }
    registry.register("check_seconds", "Check latency", latency);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

/// What the proxy's `/stats/prometheus` renders (Envoy's text format).
const PROXY_TEXT: &str = "\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"reviews\"} 42
# TYPE envoy_server_live gauge
envoy_server_live{} 3
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"reviews\",le=\"1\"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"reviews\",le=\"10\"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"reviews\",le=\"100\"} 4
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"reviews\",le=\"+Inf\"} 5
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"reviews\"} 1055.5
envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"reviews\"} 5
this line is not Prometheus
";

/// What a Prometheus user would see of one exported request: the role's names, the counter as a counter
/// with its value and labels, the gauge, the histogram's buckets, and the service as the resource.
struct Expect<'a> {
    counter: &'a str,
    counter_labels: &'a [(&'a str, &'a str)],
    gauge: &'a str,
    histogram: &'a str,
    bounds: &'a [f64],
    sum: f64,
}

fn check(json: &Value, want: &Expect, after: u64) {
    let (metrics, resource) = metrics_of(json);
    assert_eq!(
        resource,
        labels(&[("service.name", "sextant-test"), ("k8s.pod.name", "pod-1")])
    );
    let mut names: Vec<&str> = metrics.keys().map(String::as_str).collect();
    names.sort();
    let mut expected = vec![want.counter, want.gauge, want.histogram];
    expected.sort();
    assert_eq!(names, expected, "{json}");

    // `X` as a monotonic sum: the collector's Prometheus side shows it as `X_total` again.
    let point = counter_point(&metrics[want.counter]);
    assert_eq!(point["asDouble"].as_f64(), Some(42.0), "{point}");
    assert_eq!(attributes(point), labels(want.counter_labels));
    let start: u64 = point["startTimeUnixNano"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("start time");
    let time: u64 = point["timeUnixNano"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("time");
    assert!(
        after <= start && start < time,
        "start {start}, started {after}, time {time}"
    );

    let gauge = &metrics[want.gauge]["gauge"]["dataPoints"][0];
    assert_eq!(gauge["asDouble"].as_f64(), Some(3.0), "{gauge}");

    let h = &metrics[want.histogram]["histogram"];
    assert_eq!(
        h["aggregationTemporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    let p = &h["dataPoints"][0];
    let bounds: Vec<f64> = p["explicitBounds"]
        .as_array()
        .expect("bounds")
        .iter()
        .map(|b| b.as_f64().expect("bound"))
        .collect();
    assert_eq!(bounds, want.bounds, "{p}");
    assert_eq!(strings(&p["bucketCounts"]), ["1", "2", "1", "1"], "{p}");
    assert_eq!(p["count"], "5", "{p}");
    let sum = p["sum"].as_f64().expect("sum");
    assert!((sum - want.sum).abs() < 1e-9, "{sum}");
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .expect("after 1970")
}

async fn exports_to(protocol: &str, text: impl Fn() -> String + Send + 'static, want: Expect<'_>) {
    let (endpoint, mut rx) = match protocol {
        "grpc" => grpc_receiver().await,
        _ => http_receiver().await,
    };
    let failures = stats().metric_export_failures.get();
    let before = now_nanos();
    let export = sextant_otel::metrics::start(&options(&endpoint, protocol), text).expect("start");
    let first = next(&mut rx).await;
    check(&decoded(&first, protocol), &want, before);
    // Exports go on every interval.
    next(&mut rx).await;

    // The drop sends a last export and waits for it, within the timeout.
    let dropped_at = now_nanos();
    let t = Instant::now();
    drop(export);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // (An export cancelled by the drop may arrive too, in any order: the latest point counts.)
    let mut latest = 0;
    while let Ok(r) = rx.try_recv() {
        let request = ExportMetricsServiceRequest::decode(r.as_slice()).expect("a request");
        let counter_time = request.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.first().map(|p| p.time_unix_nano),
                _ => None,
            })
            .expect("the counter");
        latest = latest.max(counter_time);
    }
    assert!(
        latest >= dropped_at,
        "no export after the drop began ({latest} < {dropped_at})"
    );
    // Every export of the test went through.
    assert_eq!(stats().metric_export_failures.get(), failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hubs_openmetrics_over_grpc_keep_their_names() {
    let _one = SERIAL.lock().await;
    exports_to(
        "grpc",
        hub_text,
        Expect {
            counter: "sextant_hub_checks",
            counter_labels: &[("policy", "ns/deny \"all\""), ("outcome", "denied")],
            gauge: "sextant_hub_adapters",
            histogram: "sextant_hub_check_seconds",
            bounds: &[0.001, 0.01, 0.1],
            sum: 1.0555,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxys_envoy_text_over_http_keeps_its_names() {
    let _one = SERIAL.lock().await;
    exports_to(
        "http/protobuf",
        || PROXY_TEXT.to_string(),
        Expect {
            counter: "envoy_cluster_upstream_rq",
            counter_labels: &[("envoy_cluster_name", "reviews")],
            gauge: "envoy_server_live",
            histogram: "envoy_cluster_upstream_rq_time",
            bounds: &[1.0, 10.0, 100.0],
            sum: 1055.5,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_is_counted_for_both_protocols() {
    let _one = SERIAL.lock().await;
    for protocol in ["grpc", "http/protobuf"] {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", dead.local_addr().expect("addr"));
        drop(dead);
        let failures = stats().metric_export_failures.get();
        let export =
            sextant_otel::metrics::start(&options(&endpoint, protocol), || PROXY_TEXT.to_string())
                .expect("a dead collector is not a startup error");
        let deadline = Instant::now() + Duration::from_secs(20);
        while stats().metric_export_failures.get() < failures + 2 {
            assert!(
                Instant::now() < deadline,
                "{protocol}: failures not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(export);
    }
}

#[test]
fn an_https_endpoint_is_refused_at_start() {
    let e = sextant_otel::metrics::start(&options("https://127.0.0.1:4317", "grpc"), String::new)
        .expect_err("no TLS");
    assert!(e.to_string().contains("https"), "{e}");
}
