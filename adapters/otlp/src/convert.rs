//! Batches → OTLP export requests.

use std::collections::HashMap;

use sextant_adapter_sdk::{
    Batch, Field, MetricKind, SPAN_ERROR, SPAN_SAMPLED, Severity, SpanKind, Value,
};

use crate::proto::collector::logs::v1::ExportLogsServiceRequest;
use crate::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::collector::trace::v1::ExportTraceServiceRequest;
use crate::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use crate::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use crate::proto::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use crate::proto::resource::v1::Resource;
use crate::proto::trace::v1::span::SpanKind as OtlpSpanKind;
use crate::proto::trace::v1::status::StatusCode;
use crate::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Prometheus' default histogram buckets, for families that declare none.
const DEFAULT_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "sextant".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    })
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv(
            "service.name",
            any_value::Value::StringValue(service.to_owned()),
        )],
        ..Resource::default()
    })
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn attribute(f: Field<'_>) -> KeyValue {
    use any_value::Value as V;
    let value = match f.value {
        Value::Null => None,
        Value::Str(s) => Some(V::StringValue(s.to_owned())),
        Value::Int(i) => Some(V::IntValue(i)),
        Value::Double(d) => Some(V::DoubleValue(d)),
        Value::Bool(b) => Some(V::BoolValue(b)),
        Value::Bytes(b) => Some(V::BytesValue(b.to_vec())),
        // OTLP has no time types: nanoseconds, as the semantic conventions' *_unix_nano and duration fields.
        Value::Timestamp(ns) | Value::Duration(ns) => Some(V::IntValue(ns)),
    };
    KeyValue {
        key: f.key.to_owned(),
        value: Some(AnyValue { value }),
        ..KeyValue::default()
    }
}

/// The traces request of `batch` (`None` when it holds no span). Spans are grouped by service.
pub fn traces_request(
    batch: &Batch<'_>,
    default_service: &str,
) -> Option<ExportTraceServiceRequest> {
    let mut by_service: Vec<(String, Vec<Span>)> = Vec::new();
    for s in batch.spans() {
        let span = s.span();
        let mut attributes: Vec<KeyValue> = s.tags().map(attribute).collect();
        if !span.peer_service.is_empty() {
            attributes.push(kv(
                "peer.service",
                any_value::Value::StringValue(span.peer_service.to_owned()),
            ));
        }
        let otlp = Span {
            trace_id: span.trace_id.to_vec(),
            span_id: span.span_id.to_vec(),
            parent_span_id: if span.parent_id == [0; 8] {
                Vec::new()
            } else {
                span.parent_id.to_vec()
            },
            flags: u32::from(span.flags & SPAN_SAMPLED != 0),
            name: span.name.to_owned(),
            kind: match span.kind {
                SpanKind::Unspecified => OtlpSpanKind::Unspecified,
                SpanKind::Server => OtlpSpanKind::Server,
                SpanKind::Client => OtlpSpanKind::Client,
                SpanKind::Producer => OtlpSpanKind::Producer,
                SpanKind::Consumer => OtlpSpanKind::Consumer,
            }
            .into(),
            start_time_unix_nano: span.start_nanos,
            end_time_unix_nano: span.end_nanos,
            attributes,
            status: (span.flags & SPAN_ERROR != 0).then(|| Status {
                message: String::new(),
                code: StatusCode::Error.into(),
            }),
            ..Span::default()
        };
        let service = if span.service.is_empty() {
            default_service
        } else {
            span.service
        };
        match by_service.iter_mut().find(|(s, _)| s == service) {
            Some((_, spans)) => spans.push(otlp),
            None => by_service.push((service.to_owned(), vec![otlp])),
        }
    }
    if by_service.is_empty() {
        return None;
    }
    Some(ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: resource(&service),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
            .collect(),
    })
}

/// One series of a batch, aggregated.
struct Series {
    attributes: Vec<KeyValue>,
    start: u64,
    end: u64,
    /// Counter: the sum of increments; gauge: the last value; histogram: the sum of observations.
    value: f64,
    count: u64,
    min: f64,
    max: f64,
    buckets: Vec<u64>,
}

/// A family of a batch: (name, kind, help, bucket bounds, series by label values), in first-seen order.
type FamilyAgg = (
    String,
    MetricKind,
    String,
    Vec<f64>,
    Vec<(Vec<String>, Series)>,
);

/// The metrics request of `batch` (`None` when it holds no record).
pub fn metrics_request(batch: &Batch<'_>, service: &str) -> Option<ExportMetricsServiceRequest> {
    let mut families: Vec<FamilyAgg> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for m in batch.metrics() {
        let f = m.family();
        let fi = *index.entry(f.name().to_owned()).or_insert_with(|| {
            let bounds = if f.buckets().is_empty() {
                DEFAULT_BOUNDS.to_vec()
            } else {
                f.buckets().to_vec()
            };
            families.push((
                f.name().to_owned(),
                f.kind(),
                f.help().to_owned(),
                bounds,
                Vec::new(),
            ));
            families.len() - 1
        });
        let (_, kind, _, bounds, series) = &mut families[fi];
        let labels: Vec<String> = m.label_values().map(str::to_owned).collect();
        let t = m.time_nanos();
        let v = m.value();
        let s = match series.iter_mut().position(|(l, _)| *l == labels) {
            Some(i) => &mut series[i].1,
            None => {
                let attributes = m
                    .labels()
                    .map(|(k, v)| kv(k, any_value::Value::StringValue(v.to_owned())))
                    .collect();
                series.push((
                    labels,
                    Series {
                        attributes,
                        start: t,
                        end: t,
                        value: 0.0,
                        count: 0,
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        buckets: vec![0; bounds.len() + 1],
                    },
                ));
                let last = series.len() - 1;
                &mut series[last].1
            }
        };
        s.start = s.start.min(t);
        s.end = s.end.max(t);
        s.count += 1;
        match kind {
            MetricKind::Counter => s.value += v,
            MetricKind::Gauge => s.value = v,
            MetricKind::Histogram => {
                s.value += v;
                s.min = s.min.min(v);
                s.max = s.max.max(v);
                // Bucket i holds (bounds[i-1], bounds[i]]; the last one everything above.
                let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
                s.buckets[i] += 1;
            }
        }
    }
    if families.is_empty() {
        return None;
    }
    let metrics = families
        .into_iter()
        .map(|(name, kind, help, bounds, series)| {
            let number = |s: &Series| NumberDataPoint {
                attributes: s.attributes.clone(),
                start_time_unix_nano: s.start,
                time_unix_nano: s.end,
                value: Some(number_data_point::Value::AsDouble(s.value)),
                ..NumberDataPoint::default()
            };
            let data = match kind {
                MetricKind::Counter => metric::Data::Sum(Sum {
                    data_points: series.iter().map(|(_, s)| number(s)).collect(),
                    aggregation_temporality: AggregationTemporality::Delta.into(),
                    is_monotonic: true,
                }),
                MetricKind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: series.iter().map(|(_, s)| number(s)).collect(),
                }),
                MetricKind::Histogram => metric::Data::Histogram(Histogram {
                    data_points: series
                        .into_iter()
                        .map(|(_, s)| HistogramDataPoint {
                            attributes: s.attributes,
                            start_time_unix_nano: s.start,
                            time_unix_nano: s.end,
                            count: s.count,
                            sum: Some(s.value),
                            bucket_counts: s.buckets,
                            explicit_bounds: bounds.clone(),
                            min: Some(s.min),
                            max: Some(s.max),
                            ..HistogramDataPoint::default()
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Delta.into(),
                }),
            };
            Metric {
                name,
                description: help,
                data: Some(data),
                ..Metric::default()
            }
        })
        .collect();
    Some(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    })
}

/// The logs request of `batch` (`None` when it holds no entry). A `message` or `msg` field becomes the body;
/// the entry's name is the event name.
pub fn logs_request(
    batch: &Batch<'_>,
    service: &str,
    now: u64,
) -> Option<ExportLogsServiceRequest> {
    let log_records: Vec<LogRecord> = batch
        .logs()
        .map(|l| {
            let mut body = None;
            let mut attributes = Vec::new();
            for f in l.fields() {
                match (f.key, f.value) {
                    ("message" | "msg", Value::Str(s)) if body.is_none() => {
                        body = Some(AnyValue {
                            value: Some(any_value::Value::StringValue(s.to_owned())),
                        });
                    }
                    _ => attributes.push(attribute(f)),
                }
            }
            LogRecord {
                time_unix_nano: l.time_nanos(),
                observed_time_unix_nano: now,
                severity_number: match l.severity() {
                    Severity::Trace => SeverityNumber::Trace,
                    Severity::Debug => SeverityNumber::Debug,
                    Severity::Info => SeverityNumber::Info,
                    Severity::Warn => SeverityNumber::Warn,
                    Severity::Error => SeverityNumber::Error,
                    Severity::Fatal => SeverityNumber::Fatal,
                }
                .into(),
                severity_text: l.severity().as_str().to_owned(),
                body,
                attributes,
                event_name: l.name().to_owned(),
                ..LogRecord::default()
            }
        })
        .collect();
    if log_records.is_empty() {
        return None;
    }
    Some(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    })
}
