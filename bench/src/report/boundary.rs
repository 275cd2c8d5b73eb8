//! The host → guest boundary: the cost of one `handle-metrics` call and of each record it carries, measured
//! with `hub_adapters` directly against the `faulty` test adapter in `ok` mode (its handler ignores the batch,
//! so what is measured is the crossing: the runtime's deadline arming, copying the batch into guest memory,
//! the SDK's segment parse, the call and the return).
//!
//! `hub_adapters` has no synchronous single-call API: batches go through an adapter's worker thread. So for
//! each N the adapter runs with `batch_size = N` and is fed segments of exactly N records (one segment = one
//! call), and two numbers come out:
//! * the mean duration of a handler call, from the runtime's own `sextant_hub_adapter_batch_duration_seconds`
//!   histogram (sum / count: the worker's clock around `call_handle_metrics` only);
//! * the worker thread's CPU time per record over the whole run (the call plus channel receive, segment
//!   concatenation and counters): the throughput-derived cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hub_adapters::{AdapterConfig, BatchKind, Limits, ModuleSource, Runtime, RuntimeOptions};
use sextant_batch::{BatchWriter, Family, MetricKind};
use sextant_bench::cpu::threads_seconds;
use sextant_bench::prom;

/// Thread name prefix of this module's adapter workers (`adapter bench/n<N>`, cut to 15 bytes).
const WORKER_THREADS: &str = "adapter bench/";

/// Batch sizes measured; the first is the 1-record reference.
pub const SIZES: [usize; 3] = [1, 100, 1000];

/// The label names of Istio's `istio_requests_total` (14), as the hub declares them.
const LABELS: [&str; 14] = [
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_version",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// One batch size's result.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// Records per call.
    pub n: usize,
    /// Encoded batch size, bytes.
    pub bytes: usize,
    /// Calls measured.
    pub calls: u64,
    /// Mean handler call duration, ns (runtime histogram).
    pub call_ns: f64,
    /// Worker thread CPU per call, ns (throughput-derived).
    pub worker_ns_per_call: Option<f64>,
    /// Records delivered per wall-clock second.
    pub records_per_sec: f64,
    /// Records dropped (should be 0).
    pub dropped: u64,
}

/// A metrics segment of `n` records shaped like the hub's: one 14-label counter family, label values from
/// small sets so strings repeat as in real batches.
fn segment(n: usize) -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let family = w.family(&Family {
        name: "istio_requests_total",
        kind: MetricKind::Counter,
        help: "Requests, by source, destination and response.",
        label_names: &LABELS,
        buckets: &[],
    });
    let sources = [
        "productpage-v1",
        "frontend-v3",
        "checkout-v2",
        "ingressgateway",
    ];
    let dests = [
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "ratings-v1",
        "details-v1",
    ];
    let codes = ["200", "201", "404", "503"];
    for i in 0..n {
        let (s, d, c) = (
            sources[i % sources.len()],
            dests[i % dests.len()],
            codes[i % codes.len()],
        );
        let labels = [
            "destination",
            s,
            "shop",
            "spiffe://cluster.local/ns/shop/sa/default",
            d,
            "shop",
            "reviews.shop.svc.cluster.local",
            "reviews",
            "v1",
            "http",
            c,
            "",
            "-",
            "mutual_tls",
        ];
        w.metric(family, 1.0, 1_700_000_000_000_000_000 + i as u64, labels);
    }
    w.finish()
}

/// The faulty adapter's text exposition of the runtime's metrics.
fn runtime_metrics(registry: &prometheus_client::registry::Registry) -> anyhow::Result<String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .context("encoding the runtime metrics")?;
    Ok(text)
}

/// Measures every size in [`SIZES`] for about `per_size` each. Must be called outside the runtime `rt`
/// (it blocks on it).
pub fn measure(rt: &tokio::runtime::Runtime, per_size: Duration) -> anyhow::Result<Vec<Point>> {
    let bytes: Arc<[u8]> =
        Arc::from(hub_builtin_adapters::test_module("faulty").context(
            "the faulty test adapter is not embedded (built with SEXTANT_SKIP_ADAPTERS?)",
        )?);
    let runtime = {
        let _guard = rt.enter();
        Runtime::new(RuntimeOptions::default()).context("creating the adapter runtime")?
    };
    let mut registry = prometheus_client::registry::Registry::default();
    runtime.register_metrics(&mut registry);
    let mut points = Vec::with_capacity(SIZES.len());
    for n in SIZES {
        let name = format!("bench/n{n}");
        let mut cfg = AdapterConfig::new(
            name.clone(),
            ModuleSource::Bytes {
                label: "faulty".into(),
                bytes: bytes.clone(),
            },
            serde_json::json!({"mode": "ok"}),
        );
        // Generous queue and a long flush interval: every call is a full batch of exactly one segment.
        cfg.limits = Limits {
            batch_size: n,
            queue_records: (n * 256).max(100_000),
            flush_interval: Duration::from_secs(60),
            ..Limits::default()
        };
        let handle = rt
            .block_on(runtime.start(cfg))
            .with_context(|| format!("starting {name}"))?;
        let seg = segment(n);
        // Keep at most this many records queued: the worker never waits, the queue never refuses.
        let in_flight = (n * 64).max(1024) as u64;
        let feed = |until: Instant| {
            while Instant::now() < until {
                if handle.stats().queued >= in_flight {
                    std::thread::yield_now();
                    continue;
                }
                handle.submit(BatchKind::Metrics, seg.clone(), n);
            }
            // Let the worker empty its queue.
            let limit = Instant::now() + Duration::from_secs(10);
            while handle.stats().queued > 0 && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // Warm-up: instance caches, page faults in guest memory, branch predictors.
        feed(Instant::now() + per_size / 5);

        let label = format!("adapter=\"{name}\"");
        let text = runtime_metrics(&registry)?;
        let (sum0, count0) = (
            prom::sum(
                &text,
                "sextant_hub_adapter_batch_duration_seconds_sum",
                &label,
            ),
            prom::sum(
                &text,
                "sextant_hub_adapter_batch_duration_seconds_count",
                &label,
            ),
        );
        let stats0 = handle.stats();
        let cpu0 = threads_seconds(WORKER_THREADS);
        let t0 = Instant::now();
        feed(t0 + per_size);
        let wall = t0.elapsed();
        let cpu1 = threads_seconds(WORKER_THREADS);
        let stats1 = handle.stats();
        let text = runtime_metrics(&registry)?;
        let (sum1, count1) = (
            prom::sum(
                &text,
                "sextant_hub_adapter_batch_duration_seconds_sum",
                &label,
            ),
            prom::sum(
                &text,
                "sextant_hub_adapter_batch_duration_seconds_count",
                &label,
            ),
        );
        let calls = (count1 - count0).max(0.0) as u64;
        let delivered = stats1.delivered - stats0.delivered;
        let dropped = stats1.dropped.total() - stats0.dropped.total();
        let call_ns = (sum1 - sum0) * 1e9 / (calls.max(1) as f64);
        let worker_ns_per_call = cpu0
            .zip(cpu1)
            .map(|(a, b)| (b - a) * 1e9 / (calls.max(1) as f64));
        points.push(Point {
            n,
            bytes: seg.len(),
            calls,
            call_ns,
            worker_ns_per_call,
            records_per_sec: delivered as f64 / wall.as_secs_f64().max(1e-9),
            dropped,
        });
        let _ = rt.block_on(handle.drain(Duration::from_secs(5)));
    }
    Ok(points)
}
