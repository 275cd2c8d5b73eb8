//! Metric families turned into one OTLP export request, named so a Prometheus user of the collector sees
//! the role's own names: a counter becomes a monotonic cumulative Sum named without `_total` (the
//! OTLP-to-Prometheus translation appends it again), a gauge, an untyped sample or an info a Gauge, a
//! histogram a cumulative Histogram (bounds from `le`, per-bucket counts from the cumulative ones).
//! Summaries and the rarer OpenMetrics types are left out.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::parse::{Family, Kind, Sample};

/// The scope every exported metric carries.
pub(super) const SCOPE: &str = "sextant";

/// When the points are from: the export's start (every point is cumulative from it) and now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Times {
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `time_unix_nano`.
    pub now: u64,
}

/// The resource of every request: `service.name` and the further attributes, in order.
pub(super) fn resource(service_name: &str, attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: std::iter::once(attribute("service.name", service_name))
            .chain(attributes.iter().map(|(k, v)| attribute(k, v)))
            .collect(),
        ..Default::default()
    }
}

/// One request holding `families` as OTLP metrics.
pub(super) fn request(
    resource: Resource,
    families: Vec<Family>,
    times: Times,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics: families
                    .into_iter()
                    .filter_map(|f| metric(f, times))
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One family as a metric; `None` when it has no points or its type is not exported.
pub(super) fn metric(family: Family, times: Times) -> Option<Metric> {
    let (name, data) = match family.kind {
        Kind::Counter => {
            let name = family
                .name
                .strip_suffix("_total")
                .unwrap_or(&family.name)
                .to_string();
            let sum = Sum {
                data_points: numbers(&family.samples, &["", "_total"], times),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            };
            (name, metric::Data::Sum(sum))
        }
        Kind::Gauge | Kind::Unknown => {
            let gauge = Gauge {
                data_points: numbers(&family.samples, &[""], times),
            };
            (family.name.clone(), metric::Data::Gauge(gauge))
        }
        Kind::Info => {
            let suffix = family.samples.first().map_or("", |s| s.suffix);
            let gauge = Gauge {
                data_points: numbers(&family.samples, &[suffix], times),
            };
            (
                format!("{}{suffix}", family.name),
                metric::Data::Gauge(gauge),
            )
        }
        Kind::Histogram => {
            let histogram = Histogram {
                data_points: histogram_points(&family.samples, times),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            };
            (family.name.clone(), metric::Data::Histogram(histogram))
        }
        Kind::Summary | Kind::Other => return None,
    };
    let empty = match &data {
        metric::Data::Sum(s) => s.data_points.is_empty(),
        metric::Data::Gauge(g) => g.data_points.is_empty(),
        metric::Data::Histogram(h) => h.data_points.is_empty(),
        _ => true,
    };
    if empty {
        return None;
    }
    Some(Metric {
        name,
        description: family.help,
        unit: family.unit,
        metadata: Vec::new(),
        data: Some(data),
    })
}

/// The samples with one of `suffixes` as number points.
fn numbers(samples: &[Sample], suffixes: &[&str], times: Times) -> Vec<NumberDataPoint> {
    samples
        .iter()
        .filter(|s| suffixes.contains(&s.suffix))
        .map(|s| NumberDataPoint {
            attributes: s.labels.iter().map(|(k, v)| attribute(k, v)).collect(),
            start_time_unix_nano: times.start,
            time_unix_nano: times.now,
            value: Some(number_data_point::Value::AsDouble(s.value)),
            ..Default::default()
        })
        .collect()
}

/// One histogram series (a label set without `le`) as read.
#[derive(Default)]
struct Series {
    labels: Vec<(String, String)>,
    /// `(le, cumulative count)`.
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

/// A histogram's samples grouped by series, in the order each series first appeared.
fn histogram_points(samples: &[Sample], times: Times) -> Vec<HistogramDataPoint> {
    let mut series: Vec<Series> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for s in samples {
        let mut le = None;
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(k, v)| {
                if k == "le" {
                    le = Some(v.as_str());
                    false
                } else {
                    true
                }
            })
            .cloned()
            .collect();
        labels.sort();
        let i = *index.entry(labels.clone()).or_insert_with(|| {
            series.push(Series {
                labels,
                ..Default::default()
            });
            series.len() - 1
        });
        let one = &mut series[i];
        match s.suffix {
            "_bucket" => {
                if let Some(le) = le.and_then(bound) {
                    one.buckets.push((le, s.value));
                }
            }
            "_sum" => one.sum = Some(s.value),
            "_count" => one.count = Some(s.value),
            _ => {}
        }
    }
    series
        .into_iter()
        .map(|s| histogram_point(s, times))
        .collect()
}

/// An `le` value: a number or `+Inf`; NaN is no bound.
fn bound(le: &str) -> Option<f64> {
    let v = match le.trim() {
        "+Inf" | "Inf" => f64::INFINITY,
        other => other.parse::<f64>().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// One series as an OTLP point: the finite bounds, the count in each bucket (the last one above every
/// bound), the sum, and the count (the `+Inf` bucket's, else `_count`).
fn histogram_point(mut s: Series, times: Times) -> HistogramDataPoint {
    s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    s.buckets.dedup_by(|later, earlier| later.0 == earlier.0);
    let total = s
        .buckets
        .last()
        .filter(|(le, _)| le.is_infinite() && *le > 0.0)
        .map(|(_, c)| *c)
        .or(s.count);
    let finite: Vec<(f64, f64)> = s
        .buckets
        .into_iter()
        .filter(|(le, _)| le.is_finite())
        .collect();
    let mut bucket_counts = Vec::with_capacity(finite.len() + 1);
    let mut below = 0;
    for (_, cumulative) in &finite {
        let c = whole(*cumulative);
        bucket_counts.push(c.saturating_sub(below));
        below = below.max(c);
    }
    bucket_counts.push(total.map_or(0, |t| whole(t).saturating_sub(below)));
    HistogramDataPoint {
        attributes: s.labels.iter().map(|(k, v)| attribute(k, v)).collect(),
        start_time_unix_nano: times.start,
        time_unix_nano: times.now,
        count: bucket_counts.iter().sum(),
        sum: s.sum,
        bucket_counts,
        explicit_bounds: finite.into_iter().map(|(le, _)| le).collect(),
        ..Default::default()
    }
}

/// A count written as a float, as a whole number (negative and NaN as 0).
fn whole(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 {
        0
    } else {
        // Saturates at u64::MAX by the semantics of `as` on floats.
        v.round() as u64
    }
}

fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}
