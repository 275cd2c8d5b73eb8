//! The text exposition of both dialects read and turned into OTLP metrics.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, metric, number_data_point,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::convert::{self, Times};
use super::parse::{self, Kind};

const TIMES: Times = Times {
    start: 1_000,
    now: 2_000,
};

fn metrics(text: &str) -> Vec<Metric> {
    let read = parse::parse(text);
    let request = convert::request(convert::resource("svc", &[]), read.families, TIMES);
    request.resource_metrics[0].scope_metrics[0].metrics.clone()
}

fn named<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name} in {metrics:#?}"))
}

fn attrs(a: &[KeyValue]) -> Vec<(String, String)> {
    a.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("not a string: {other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("not a double: {other:?}"),
    }
}

fn sum(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic, "{m:?}");
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            &s.data_points
        }
        other => panic!("{} is not a sum: {other:?}", m.name),
    }
}

fn gauge(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(metric::Data::Gauge(g)) => &g.data_points,
        other => panic!("{} is not a gauge: {other:?}", m.name),
    }
}

fn histogram(m: &Metric) -> &[HistogramDataPoint] {
    match &m.data {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(
                h.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            &h.data_points
        }
        other => panic!("{} is not a histogram: {other:?}", m.name),
    }
}

/// What a role's registry renders (prometheus-client's OpenMetrics), read back as OTLP.
#[test]
fn prometheus_client_openmetrics() {
    let mut registry = Registry::with_prefix("sextant_hub");
    let requests = Family::<Vec<(String, String)>, Counter>::default();
    requests
        .get_or_create(&vec![
            ("code".into(), "200".into()),
            ("path".into(), "a\\b \"q\"\nz".into()),
        ])
        .inc_by(7);
    registry.register("requests", "Requests \\ served", requests);
    let inflight = Gauge::<i64>::default();
    inflight.set(-3);
    registry.register("inflight", "Requests in flight", inflight);
    let latency = Histogram::new([0.1, 0.5, 1.0]);
    for v in [0.05, 0.2, 0.3, 0.7, 2.0] {
        latency.observe(v);
    }
    registry.register_with_unit("latency", "Check latency", Unit::Seconds, latency);
    registry.register(
        "build",
        "The build",
        Info::new(vec![("version".to_string(), "1.2".to_string())]),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(text.contains("sextant_hub_requests_total{"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    let read = parse::parse(&text);
    assert_eq!((read.malformed, read.over_cap), (0, 0), "{text}");
    let m = metrics(&text);

    let requests = named(&m, "sextant_hub_requests");
    // prometheus-client ends every help with a full stop; it is the text Prometheus shows too.
    assert_eq!(requests.description, "Requests \\ served.");
    let points = sum(requests);
    assert_eq!(points.len(), 1);
    assert_eq!(value(&points[0]), 7.0);
    assert_eq!(
        attrs(&points[0].attributes),
        pairs(&[("code", "200"), ("path", "a\\b \"q\"\nz")])
    );
    assert_eq!(
        (points[0].start_time_unix_nano, points[0].time_unix_nano),
        (1_000, 2_000)
    );

    assert_eq!(value(&gauge(named(&m, "sextant_hub_inflight"))[0]), -3.0);

    let latency = named(&m, "sextant_hub_latency_seconds");
    assert_eq!(latency.unit, "seconds");
    let h = &histogram(latency)[0];
    assert_eq!(h.explicit_bounds, vec![0.1, 0.5, 1.0]);
    assert_eq!(h.bucket_counts, vec![1, 2, 1, 1]);
    assert_eq!(h.count, 5);
    let total = h.sum.expect("a sum");
    assert!((total - 3.25).abs() < 1e-9, "{total}");

    let build = named(&m, "sextant_hub_build_info");
    assert_eq!(
        attrs(&gauge(build)[0].attributes),
        pairs(&[("version", "1.2")])
    );
    assert_eq!(value(&gauge(build)[0]), 1.0);
}

/// What the proxy's `/stats/prometheus` renders (Envoy's 0.0.4 text): counters keep `_total` in the family
/// name, samples may have no labels or `{}`.
#[test]
fn envoy_text() {
    let text = "\
# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"reviews\"} 7
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"ratings\"} 0
# TYPE envoy_server_live gauge
envoy_server_live{} 1
# TYPE envoy_server_uptime gauge
envoy_server_uptime 12
# TYPE envoy_cluster_upstream_rq_time histogram
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"0.5\"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"1\"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"5\"} 3
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"+Inf\"} 5
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"web\"} 70000013.2
envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"web\"} 5
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"db\",le=\"0.5\"} 0
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"db\",le=\"1\"} 0
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"db\",le=\"5\"} 0
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"db\",le=\"+Inf\"} 0
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"db\"} 0
envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"db\"} 0
";
    let read = parse::parse(text);
    assert_eq!((read.malformed, read.over_cap), (0, 0));
    let m = metrics(text);
    assert_eq!(m.len(), 4, "{m:#?}");

    let rq = sum(named(&m, "envoy_cluster_upstream_rq"));
    assert_eq!(rq.len(), 2);
    assert_eq!(value(&rq[0]), 7.0);
    assert_eq!(
        attrs(&rq[0].attributes),
        pairs(&[("envoy_cluster_name", "reviews")])
    );
    let live = gauge(named(&m, "envoy_server_live"));
    assert_eq!((value(&live[0]), live[0].attributes.len()), (1.0, 0));
    assert_eq!(value(&gauge(named(&m, "envoy_server_uptime"))[0]), 12.0);

    let points = histogram(named(&m, "envoy_cluster_upstream_rq_time"));
    assert_eq!(points.len(), 2);
    let web = &points[0];
    assert_eq!(
        attrs(&web.attributes),
        pairs(&[("envoy_cluster_name", "web")])
    );
    assert_eq!(web.explicit_bounds, vec![0.5, 1.0, 5.0]);
    assert_eq!(web.bucket_counts, vec![1, 0, 2, 2]);
    assert_eq!((web.count, web.sum), (5, Some(70000013.2)));
    assert_eq!(points[1].bucket_counts, vec![0, 0, 0, 0]);
}

#[test]
fn samples_without_type_are_gauges_and_summaries_are_left_out() {
    let text = "\
# HELP loose A value without TYPE
loose{a=\"1\"} 3.5 1700000000000
other_thing 2
# TYPE rpc_seconds summary
rpc_seconds{quantile=\"0.5\"} 0.1
rpc_seconds_sum 10
rpc_seconds_count 20
# TYPE states stateset
states{states=\"a\"} 1
";
    let read = parse::parse(text);
    assert_eq!(read.malformed, 0);
    let kinds: Vec<(&str, Kind)> = read
        .families
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("loose", Kind::Unknown),
            ("other_thing", Kind::Unknown),
            ("rpc_seconds", Kind::Summary),
            ("states", Kind::Other)
        ]
    );
    let m = metrics(text);
    let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["loose", "other_thing"]);
    assert_eq!(m[0].description, "A value without TYPE");
    assert_eq!(value(&gauge(&m[0])[0]), 3.5);
}

#[test]
fn malformed_lines_are_skipped_and_counted() {
    let text = "\
# TYPE good counter
good_total 1
bad-name 1
good_total{a=\"unterminated} 1
good_total{a=\"x\" b=\"y\"} 1
good_total{1a=\"x\"} 1
good_total
good_total 1 2 3
good_total abc
good_total{a=\"x\"}1
# TYPE weird flavour
good_total{a=\"ok\",} 2 # {trace_id=\"abc\"} 1.0 1.5
{\"utf8.name\"} 4
";
    let read = parse::parse(text);
    assert_eq!(read.malformed, 10);
    let m = metrics(text);
    let points = sum(named(&m, "good"));
    assert_eq!(points.iter().map(value).collect::<Vec<_>>(), vec![1.0, 2.0]);
    assert_eq!(attrs(&points[1].attributes), pairs(&[("a", "ok")]));
}

#[test]
fn special_values_and_escapes() {
    let text = "\
# TYPE g gauge
g{v=\"back\\\\slash\"} +Inf
g{v=\"quote\\\"\"} -Inf
g{v=\"new\\nline\"} NaN
g{v=\"odd\\q\"} 1.5e3
";
    let m = metrics(text);
    let points = gauge(named(&m, "g"));
    let values: Vec<(String, f64)> = points
        .iter()
        .map(|p| (attrs(&p.attributes)[0].1.clone(), value(p)))
        .collect();
    assert_eq!(values[0], ("back\\slash".to_string(), f64::INFINITY));
    assert_eq!(values[1], ("quote\"".to_string(), f64::NEG_INFINITY));
    assert_eq!(values[2].0, "new\nline");
    assert!(values[2].1.is_nan());
    assert_eq!(values[3], ("odd\\q".to_string(), 1500.0));
}

#[test]
fn histograms_without_inf_or_out_of_order() {
    let text = "\
# TYPE h histogram
h_bucket{le=\"10\"} 4
h_bucket{le=\"1\"} 1
h_count 6
h_sum 30
";
    let m = metrics(text);
    let p = &histogram(named(&m, "h"))[0];
    assert_eq!(p.explicit_bounds, vec![1.0, 10.0]);
    assert_eq!(p.bucket_counts, vec![1, 3, 2]);
    assert_eq!((p.count, p.sum), (6, Some(30.0)));
}

#[test]
fn caps_bound_what_one_export_holds() {
    let mut text = String::from("# TYPE many gauge\n");
    for i in 0..parse::MAX_SAMPLES + 10 {
        text.push_str(&format!("many{{i=\"{i}\"}} 1\n"));
    }
    let read = parse::parse(&text);
    assert_eq!(read.over_cap, 10);
    assert_eq!(read.families[0].samples.len(), parse::MAX_SAMPLES);

    let mut text = String::new();
    for i in 0..parse::MAX_FAMILIES + 3 {
        text.push_str(&format!("# TYPE f{i} gauge\n"));
    }
    let read = parse::parse(&text);
    assert_eq!(
        (read.families.len(), read.over_cap),
        (parse::MAX_FAMILIES, 3)
    );
}

#[test]
fn the_resource_names_the_service_and_empty_families_are_left_out() {
    let r = convert::resource("sextant-hub", &pairs(&[("k8s.pod.name", "p-1")]));
    assert_eq!(
        attrs(&r.attributes),
        pairs(&[("service.name", "sextant-hub"), ("k8s.pod.name", "p-1")])
    );
    assert!(metrics("# TYPE nothing counter\n# HELP nothing yet\n").is_empty());
}
