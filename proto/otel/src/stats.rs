//! What happened to the spans: exported, or dropped and why. One set per process (the exporter is the
//! process's), registered by each role in its own metrics.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why spans were dropped (chosen by the code, never by a client).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// `queue_full`: the queue held `OTEL_BSP_MAX_QUEUE_SIZE` spans; `export_failed`: the collector refused,
    /// was unreachable or slower than `OTEL_EXPORTER_OTLP_TIMEOUT`; `shutdown`: still queued when the
    /// process stopped and the last export ran out of time.
    pub reason: &'static str,
}

/// The exporter's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped, by reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Spans waiting for export now.
    pub queued: Gauge,
    /// Exports (batches) that failed.
    pub export_failures: Counter,
    /// Metric exports that failed.
    pub metric_export_failures: Counter,
}

impl Stats {
    /// Counts `n` spans dropped for `reason`.
    pub fn drop_spans(&self, reason: &'static str, n: u64) {
        self.dropped.get_or_create(&DropLabels { reason }).inc_by(n);
    }

    /// Spans dropped for `reason` so far.
    pub fn dropped(&self, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&DropLabels { reason }).get()
    }
}

static STATS: LazyLock<Stats> = LazyLock::new(Stats::default);

/// The process's exporter counters (all zero while export is off).
pub fn stats() -> &'static Stats {
    &STATS
}

/// The exporter's counters as Prometheus text under `prefix` (`PREFIX_otel_*`), for a role whose own
/// metrics are not a prometheus-client registry (the proxy's Envoy-style statistics).
pub fn text(prefix: &str) -> String {
    let mut registry = Registry::with_prefix(prefix);
    register(&mut registry);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    // The exposition's end marker belongs at the end of the whole page, not after this part.
    match out.strip_suffix("# EOF\n") {
        Some(body) => body.to_string(),
        None => out,
    }
}

/// Registers the exporter's counters in a role's `registry` as `otel_*` (under the role's prefix):
/// `otel_spans_exported_total`, `otel_spans_dropped_total{reason}`, `otel_span_queue`,
/// `otel_export_failures_total`, `otel_metric_export_failures_total`.
pub fn register(registry: &mut Registry) {
    let s = stats();
    registry.register(
        "otel_spans_exported",
        "Spans the OTLP collector accepted",
        s.exported.clone(),
    );
    registry.register(
        "otel_spans_dropped",
        "Spans dropped before reaching the OTLP collector, by reason (queue_full, export_failed, shutdown)",
        s.dropped.clone(),
    );
    registry.register(
        "otel_span_queue",
        "Spans waiting for export",
        s.queued.clone(),
    );
    registry.register(
        "otel_export_failures",
        "Span exports (batches) that failed",
        s.export_failures.clone(),
    );
    registry.register(
        "otel_metric_export_failures",
        "Metric exports over OTLP that failed",
        s.metric_export_failures.clone(),
    );
}
