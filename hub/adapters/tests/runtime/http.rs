//! Outbound HTTP: the allowlist is enforced before connecting; allowed requests reach a real server.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hub_adapters::{AdapterConfig, BatchKind, ModuleSource};
use hyper::body::Bytes;
use sextant_batch::{BatchWriter, SpanKind};

use crate::{runtime, wait_for};

/// A collector on 127.0.0.1:0 that counts the spans requests it gets.
async fn collector() -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if body.starts_with(b"[") {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::ACCEPTED;
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (port, hits)
}

fn spans_segment() -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Spans);
    w.span(
        &sextant_batch::Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_id: [0; 8],
            name: "GET /reviews",
            kind: SpanKind::Server,
            start_nanos: 1_700_000_000_000_000_000,
            end_nanos: 1_700_000_000_005_000_000,
            flags: sextant_batch::SPAN_SAMPLED,
            service: "reviews",
            peer_service: "productpage",
        },
        [],
    );
    w.finish()
}

fn zipkin(name: &str, port: u16, allowed: &[&str]) -> AdapterConfig {
    let mut cfg = AdapterConfig::new(
        name,
        ModuleSource::Builtin("zipkin".into()),
        serde_json::json!({"endpoint": format!("http://127.0.0.1:{port}/api/v2/spans")}),
    );
    cfg.allowed_hosts = allowed.iter().map(|s| s.to_string()).collect();
    cfg.limits.flush_interval = Duration::from_millis(10);
    cfg.limits.backoff_initial = Duration::from_millis(10);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_are_reached_and_others_denied_before_connecting() {
    let (port, hits) = collector().await;
    let rt = runtime(None);

    let allowed = rt
        .start(zipkin("ns/zipkin", port, &[&format!("127.0.0.1:{port}")]))
        .await
        .expect("start");
    assert!(allowed.submit(BatchKind::Spans, spans_segment(), 1));
    wait_for("spans delivered", Duration::from_secs(20), || {
        allowed.stats().delivered == 1
    })
    .await;
    assert_eq!(hits.load(Ordering::Relaxed), 1);
    assert_eq!(allowed.http_denied(), 0);

    // Same collector, but the allowlist names another port: refused without a connection.
    let denied = rt
        .start(zipkin(
            "ns/zipkin-denied",
            port,
            &["127.0.0.1:1", "*.example.com"],
        ))
        .await
        .expect("start");
    assert!(denied.submit(BatchKind::Spans, spans_segment(), 1));
    wait_for("denied batch dropped", Duration::from_secs(20), || {
        denied.stats().dropped.total() == 1
    })
    .await;
    assert!(denied.http_denied() >= 1);
    assert_eq!(
        hits.load(Ordering::Relaxed),
        1,
        "a denied request reached the collector"
    );

    let mut prom = prometheus_client::registry::Registry::default();
    rt.register_metrics(&mut prom);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &prom).expect("encode");
    assert!(
        text.contains("sextant_hub_adapter_http_denied_total{adapter=\"ns/zipkin-denied\"}"),
        "{text}"
    );
}

/// A collector that accepts connections and never answers: the request times out within the adapter's
/// time limit, the guest gets `timeout` (a retryable error), nothing deadlocks and nothing is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_times_out_within_the_call_deadline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let rt = runtime(None);
    let mut cfg = zipkin("ns/zipkin-hang", port, &[&format!("127.0.0.1:{port}")]);
    cfg.limits.time_per_batch = Duration::from_millis(400);
    cfg.limits.retries = 1;
    let h = rt.start(cfg).await.expect("start");
    assert!(h.submit(BatchKind::Spans, spans_segment(), 1));
    // The endpoint never answers: the batch is dropped only if each attempt is cut at time_per_batch.
    wait_for("dropped after retries", Duration::from_secs(60), || {
        h.stats().dropped.retries_exhausted == 1
    })
    .await;
    let s = h.stats();
    assert_eq!((s.batches, s.restarts, s.delivered), (2, 0, 0), "{s:?}");
}
