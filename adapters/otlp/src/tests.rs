use prost::Message;
use sextant_adapter_sdk::testing::{self, Harness};
use sextant_adapter_sdk::{HttpError, Response};

use super::*;
use crate::proto::collector::logs::v1::ExportLogsServiceRequest;
use crate::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::collector::trace::v1::ExportTraceServiceRequest;
use crate::proto::common::v1::any_value;
use crate::proto::logs::v1::SeverityNumber;
use crate::proto::metrics::v1::{AggregationTemporality, metric, number_data_point};
use crate::proto::trace::v1::span::SpanKind;
use crate::proto::trace::v1::status::StatusCode;

const CONFIG: &str = r#"{"endpoint": "http://collector:4318/", "service_name": "mesh", "headers": {"x-tenant": "a"}}"#;

#[test]
fn compliance() {
    testing::compliance::<Otlp>(CONFIG);
}

fn harness() -> Harness<Otlp> {
    Harness::<Otlp>::builder()
        .allow_host("collector:4318")
        .build::<Otlp>(CONFIG)
        .unwrap()
}

#[test]
fn metrics_become_sums_gauges_and_histograms() {
    let mut h = harness();
    h.handle_metrics(&testing::metrics_batch()).unwrap();
    let reqs = h.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].url, "http://collector:4318/v1/metrics");
    assert_eq!(
        reqs[0].header_value("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(reqs[0].header_value("x-tenant"), Some("a"));
    let req = ExportMetricsServiceRequest::decode(&reqs[0].body[..]).unwrap();
    let rm = &req.resource_metrics[0];
    assert_eq!(
        rm.resource.as_ref().unwrap().attributes[0].key,
        "service.name"
    );
    let metrics = &rm.scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 3);
    // The family's help is the metric's description (field 2), not its unit (field 3).
    assert_eq!(metrics[0].description, "Requests by response code");
    assert!(metrics[0].unit.is_empty());

    let Some(metric::Data::Sum(sum)) = &metrics[0].data else {
        panic!("requests is not a sum")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality(), AggregationTemporality::Delta);
    assert_eq!(sum.data_points.len(), 2);
    assert_eq!(
        sum.data_points[0].value,
        Some(number_data_point::Value::AsDouble(3.0))
    );
    assert_eq!(sum.data_points[1].attributes[1].key, "response_code");

    assert!(matches!(&metrics[1].data, Some(metric::Data::Gauge(g)) if g.data_points.len() == 1));

    let Some(metric::Data::Histogram(hist)) = &metrics[2].data else {
        panic!("latency is not a histogram")
    };
    assert_eq!(
        hist.aggregation_temporality(),
        AggregationTemporality::Delta
    );
    let p = &hist.data_points[0];
    assert_eq!(p.count, 2);
    assert_eq!(p.explicit_bounds, vec![0.005, 0.05, 0.5, 5.0]);
    // 0.012 falls in (0.005, 0.05], 0.7 in (0.5, 5].
    assert_eq!(p.bucket_counts, vec![0, 1, 0, 1, 0]);
    assert_eq!((p.min, p.max), (Some(0.012), Some(0.7)));
    assert!((p.sum.unwrap() - 0.712).abs() < 1e-9);
}

#[test]
fn spans_are_grouped_by_service_with_status_and_parents() {
    let mut h = harness();
    h.handle_spans(&testing::spans_batch()).unwrap();
    let reqs = h.take_requests();
    assert_eq!(reqs[0].url, "http://collector:4318/v1/traces");
    let req = ExportTraceServiceRequest::decode(&reqs[0].body[..]).unwrap();
    assert_eq!(req.resource_spans.len(), 1);
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].kind(), SpanKind::Server);
    assert_eq!(spans[0].trace_id.len(), 16);
    assert!(spans[0].parent_span_id.is_empty());
    assert_eq!(
        spans[0].status.as_ref().map(|s| s.code()),
        Some(StatusCode::Error)
    );
    assert_eq!(spans[1].kind(), SpanKind::Client);
    assert_eq!(spans[1].parent_span_id, spans[0].span_id);
    assert!(spans[1].attributes.iter().any(|a| a.key == "peer.service"));
    assert_eq!(
        spans[1].end_time_unix_nano - spans[1].start_time_unix_nano,
        20_000_000
    );
}

#[test]
fn logs_carry_severity_and_typed_attributes() {
    let mut h = harness();
    h.handle_logs(&testing::logs_batch()).unwrap();
    let reqs = h.take_requests();
    assert_eq!(reqs[0].url, "http://collector:4318/v1/logs");
    let req = ExportLogsServiceRequest::decode(&reqs[0].body[..]).unwrap();
    let records = &req.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].severity_number(), records[1].severity_number()),
        (SeverityNumber::Info, SeverityNumber::Error)
    );
    assert_eq!(records[0].event_name, "accesslog");
    let code = records[0]
        .attributes
        .iter()
        .find(|a| a.key == "response_code")
        .unwrap();
    assert_eq!(
        code.value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(200))
    );
}

#[test]
fn failures_are_classified() {
    let mut h = harness();
    h.respond(Ok(Response::status(502)));
    assert!(
        h.handle_spans(&testing::spans_batch())
            .unwrap_err()
            .is_retryable()
    );
    h.respond(Err(HttpError::Connect("refused".into())));
    assert!(
        h.handle_logs(&testing::logs_batch())
            .unwrap_err()
            .is_retryable()
    );
    h.respond(Ok(Response::status(400)));
    assert!(
        !h.handle_metrics(&testing::metrics_batch())
            .unwrap_err()
            .is_retryable()
    );
}

#[test]
fn config_is_checked() {
    assert!(Harness::<Otlp>::new("{}").unwrap_err().contains("endpoint"));
    assert!(Harness::<Otlp>::new(r#"{"endpoint": "collector:4318"}"#).is_err());
}
