use sextant_adapter_sdk::testing::{self, Harness};
use sextant_adapter_sdk::{Batch, BatchKind, BatchWriter, HttpError, Response};

use super::{Zipkin, to_zipkin};

const CONFIG: &str = r#"{"endpoint": "http://zipkin:9411/api/v2/spans", "timeout_ms": 1500}"#;

#[test]
fn compliance() {
    testing::compliance::<Zipkin>(CONFIG);
}

#[test]
fn converts_spans_to_zipkin_v2() {
    let bytes = testing::spans_batch();
    let batch = Batch::parse(&bytes).unwrap();
    let json = serde_json::to_value(to_zipkin(&batch)).unwrap();
    let expected = serde_json::json!([
        {
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "id": "00f067aa0ba902b7",
            "name": "GET /reviews",
            "kind": "SERVER",
            "timestamp": 1_767_225_600_000_000u64,
            "duration": 25_000,
            "localEndpoint": {"serviceName": "reviews"},
            "tags": {"http.method": "GET", "http.status_code": "503", "error": "true"}
        },
        {
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "id": "0102030405060708",
            "parentId": "00f067aa0ba902b7",
            "name": "GET /ratings",
            "kind": "CLIENT",
            "timestamp": 1_767_225_600_001_000u64,
            "duration": 20_000,
            "localEndpoint": {"serviceName": "reviews"},
            "remoteEndpoint": {"serviceName": "ratings"},
            "tags": {"retry": "false", "upstream_latency": "20000000"}
        }
    ]);
    assert_eq!(json, expected);
}

#[test]
fn posts_one_json_array_per_batch() {
    let mut h = Harness::<Zipkin>::builder()
        .allow_host("zipkin:9411")
        .respond(Ok(Response::status(202)))
        .build::<Zipkin>(CONFIG)
        .unwrap();
    h.handle_spans(&testing::spans_batch()).unwrap();
    let reqs = h.take_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].url, "http://zipkin:9411/api/v2/spans");
    assert_eq!(
        reqs[0].header_value("content-type"),
        Some("application/json")
    );
    assert_eq!(reqs[0].timeout_ms, 1500);
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body.as_array().map(Vec::len), Some(2));

    // Nothing to send: no request.
    h.handle_spans(&BatchWriter::new(BatchKind::Spans).finish())
        .unwrap();
    assert!(h.requests().is_empty());
}

#[test]
fn failures_are_classified() {
    let mut h = Harness::<Zipkin>::new(CONFIG).unwrap();
    let cases = [
        (Ok(Response::status(503)), true),
        (Err(HttpError::Connect("refused".into())), true),
        (Err(HttpError::Timeout), true),
        (Ok(Response::status(400)), false),
        (Err(HttpError::Denied("zipkin:9411".into())), false),
    ];
    for (answer, retryable) in cases {
        h.respond(answer.clone());
        let e = h.handle_spans(&testing::spans_batch()).unwrap_err();
        assert_eq!(e.is_retryable(), retryable, "{answer:?}: {e}");
    }
}

#[test]
fn endpoint_is_required_and_checked() {
    assert!(
        Harness::<Zipkin>::new("{}")
            .unwrap_err()
            .contains("endpoint")
    );
    assert!(Harness::<Zipkin>::new(r#"{"endpoint": "zipkin:9411"}"#).is_err());
}
