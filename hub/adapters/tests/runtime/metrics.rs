//! The prometheus adapter writes into the registry; the runtime's own metrics.

use std::time::Duration;

use hub_adapters::{AdapterConfig, BatchKind, ModuleSource};

use crate::{metrics_segment, runtime, wait_for};

#[tokio::test]
async fn prometheus_adapter_records_into_the_registry() {
    let rt = runtime(None);
    let mut cfg = AdapterConfig::new(
        "istio-system/prometheus",
        ModuleSource::Builtin("prometheus".into()),
        serde_json::json!({}),
    );
    cfg.limits.flush_interval = Duration::from_millis(20);
    let handle = rt.start(cfg).await.expect("start");
    assert!(handle.capabilities().metrics);
    assert!(!handle.capabilities().spans);

    assert!(handle.submit(BatchKind::Metrics, metrics_segment(3, "200"), 3));
    assert!(handle.submit(BatchKind::Metrics, metrics_segment(2, "503"), 2));
    // Not a kind this adapter handles: refused and counted.
    assert!(!handle.submit(BatchKind::Spans, Vec::new(), 4));
    wait_for("delivery", Duration::from_secs(10), || {
        handle.stats().delivered == 5
    })
    .await;

    let text = rt.registry().encode();
    assert!(
        text.contains("# TYPE istio_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "istio_requests_total{response_code=\"200\",destination_workload=\"reviews-v1\"} 3\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "istio_requests_total{response_code=\"503\",destination_workload=\"reviews-v1\"} 2\n"
        ),
        "{text}"
    );
    let stats = handle.stats();
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.dropped.unsupported, 4);
    assert_eq!(stats.queued, 0);
    assert!(stats.batches >= 1);

    let mut prom = prometheus_client::registry::Registry::default();
    rt.register_metrics(&mut prom);
    let mut exposition = String::new();
    prometheus_client::encoding::text::encode(&mut exposition, &prom).expect("encode");
    assert!(
        exposition.contains(
            "sextant_hub_adapter_records_delivered_total{adapter=\"istio-system/prometheus\"} 5"
        ),
        "{exposition}"
    );
    assert!(
        exposition.contains(
            "sextant_hub_adapter_records_dropped_total{adapter=\"istio-system/prometheus\",reason=\"unsupported\"} 4"
        ),
        "{exposition}"
    );

    // A policy call to an adapter without `check` is an error, not a hang.
    assert!(handle.check(Vec::new()).await.is_err());
    let drained = handle.drain(Duration::from_secs(5)).await;
    assert_eq!(drained.delivered, 5);
}

/// The logs adapter writes to stdout, which the config points at a file (appended).
#[tokio::test]
async fn guest_stdout_is_appended_to_the_configured_file() {
    let dir = crate::scratch("stdout");
    let path = dir.join("access.log");
    std::fs::write(&path, "existing line\n").expect("seed");
    let rt = runtime(None);
    let mut cfg = AdapterConfig::new(
        "ns/logs",
        ModuleSource::Builtin("logs".into()),
        serde_json::json!({"name": "access"}),
    );
    cfg.stdout = Some(path.clone());
    cfg.limits.flush_interval = Duration::from_millis(10);
    let h = rt.start(cfg).await.expect("start");
    let mut w = sextant_batch::BatchWriter::new(BatchKind::Logs);
    w.log(
        "accesslog",
        sextant_batch::Severity::Info,
        1_700_000_000_000_000_000,
        [("method", sextant_batch::Value::Str("GET"))],
    );
    assert!(h.submit(BatchKind::Logs, w.finish(), 1));
    wait_for("log delivered", Duration::from_secs(10), || {
        h.stats().delivered == 1
    })
    .await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("existing line\n"), "{text}");
    assert!(
        text.contains("\"adapter\":\"access\"") && text.contains("\"method\":\"GET\""),
        "{text}"
    );
}
