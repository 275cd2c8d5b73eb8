//! Representative batches, for adapter tests and the compliance check.

use sextant_batch::{
    BatchKind, BatchWriter, Family, MetricKind, SPAN_ERROR, SPAN_SAMPLED, Severity, Span, SpanKind,
    Value,
};

/// 2026-01-01T00:00:00Z in nanoseconds: the time of every record in these batches.
pub const T0: u64 = 1_767_225_600_000_000_000;

/// A counter (two series), a gauge and a histogram (two observations, with buckets).
pub fn metrics_batch() -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let requests = w.family(&Family {
        name: "requests",
        kind: MetricKind::Counter,
        help: "Requests by response code",
        label_names: &["destination", "response_code"],
        buckets: &[],
    });
    let inflight = w.family(&Family {
        name: "inflight_requests",
        kind: MetricKind::Gauge,
        help: "Requests in flight",
        label_names: &["destination"],
        buckets: &[],
    });
    let latency = w.family(&Family {
        name: "request_duration_seconds",
        kind: MetricKind::Histogram,
        help: "Request latency",
        label_names: &["destination"],
        buckets: &[0.005, 0.05, 0.5, 5.0],
    });
    w.metric(requests, 3.0, T0, ["reviews", "200"]);
    w.metric(requests, 1.0, T0, ["reviews", "503"]);
    w.metric(inflight, 7.0, T0, ["reviews"]);
    w.metric(latency, 0.012, T0, ["reviews"]);
    w.metric(latency, 0.7, T0, ["reviews"]);
    w.finish()
}

/// Two access-log entries with fields of every value type.
pub fn logs_batch() -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Logs);
    w.log(
        "accesslog",
        Severity::Info,
        T0,
        [
            ("method", Value::Str("GET")),
            ("path", Value::Str("/reviews/1")),
            ("response_code", Value::Int(200)),
            ("ratio", Value::Double(0.5)),
            ("tls", Value::Bool(true)),
            ("peer_cert", Value::Bytes(b"\x01\x02")),
            ("request_time", Value::Timestamp(T0 as i64)),
            ("latency", Value::Duration(1_500_000)),
            ("trace", Value::Null),
        ],
    );
    w.log(
        "accesslog",
        Severity::Error,
        T0 + 1_000_000,
        [
            ("method", Value::Str("POST")),
            ("response_code", Value::Int(503)),
        ],
    );
    w.finish()
}

/// A root server span with an error and a child client span calling a peer.
pub fn spans_batch() -> Vec<u8> {
    let trace_id = [
        0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
        0x36,
    ];
    let mut w = BatchWriter::new(BatchKind::Spans);
    w.span(
        &Span {
            trace_id,
            span_id: [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
            parent_id: [0; 8],
            name: "GET /reviews",
            kind: SpanKind::Server,
            start_nanos: T0,
            end_nanos: T0 + 25_000_000,
            flags: SPAN_ERROR | SPAN_SAMPLED,
            service: "reviews",
            peer_service: "",
        },
        [
            ("http.status_code", Value::Int(503)),
            ("http.method", Value::Str("GET")),
        ],
    );
    w.span(
        &Span {
            trace_id,
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_id: [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
            name: "GET /ratings",
            kind: SpanKind::Client,
            start_nanos: T0 + 1_000_000,
            end_nanos: T0 + 21_000_000,
            flags: SPAN_SAMPLED,
            service: "reviews",
            peer_service: "ratings",
        },
        [
            ("retry", Value::Bool(false)),
            ("upstream_latency", Value::Duration(20_000_000)),
        ],
    );
    w.finish()
}

/// One request's attributes, for `check`.
pub fn attributes_batch() -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Attributes);
    w.attributes([
        (
            "source.principal",
            Value::Str("spiffe://cluster.local/ns/default/sa/web"),
        ),
        ("request.method", Value::Str("GET")),
        ("request.path", Value::Str("/reviews/1")),
        ("request.size", Value::Int(0)),
    ]);
    w.finish()
}

/// Buffers that are not valid batches: garbage, a truncated batch, a bad version.
pub fn malformed_batches() -> Vec<Vec<u8>> {
    let good = metrics_batch();
    let mut bad_version = good.clone();
    bad_version[3] = 0xee;
    vec![
        b"definitely not a batch".to_vec(),
        good[..good.len() / 2].to_vec(),
        bad_version,
        vec![0xff; 64],
    ]
}
