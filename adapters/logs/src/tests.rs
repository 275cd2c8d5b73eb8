use sextant_adapter_sdk::testing::{self, Harness};
use sextant_adapter_sdk::{Batch, BatchKind, BatchWriter, Severity, Value};

use super::{Logs, json_line, rfc3339};

#[test]
fn compliance() {
    testing::compliance::<Logs>("{}");
    testing::compliance::<Logs>(r#"{"name": "access"}"#);
}

#[test]
fn rfc3339_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(
        rfc3339(testing::T0 as i64 + 1_500),
        "2026-01-01T00:00:00.000001500Z"
    );
    assert_eq!(
        rfc3339(951_782_400_000_000_000),
        "2000-02-29T00:00:00.000000000Z"
    );
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
}

fn lines(bytes: &[u8], adapter: &str) -> Vec<serde_json::Value> {
    let batch = Batch::parse(bytes).unwrap();
    let mut out = Vec::new();
    for entry in batch.logs() {
        json_line(&mut out, adapter, &entry);
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_json_object_per_entry() {
    let got = lines(&testing::logs_batch(), "access");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        serde_json::json!({
            "adapter": "access",
            "name": "accesslog",
            "severity": "INFO",
            "time": "2026-01-01T00:00:00.000000000Z",
            "method": "GET",
            "path": "/reviews/1",
            "response_code": 200,
            "ratio": 0.5,
            "tls": true,
            "peer_cert": "0102",
            "request_time": "2026-01-01T00:00:00.000000000Z",
            "latency": "0.001500000s",
            "trace": null
        })
    );
    assert_eq!(got[1]["severity"], "ERROR");
}

#[test]
fn fixed_keys_are_not_overwritten_and_text_is_escaped() {
    let mut w = BatchWriter::new(BatchKind::Logs);
    w.log(
        "x",
        Severity::Warn,
        0,
        [
            ("time", Value::Str("noon")),
            ("msg", Value::Str("a \"quoted\"\nline")),
            ("nan", Value::Double(f64::NAN)),
        ],
    );
    let got = lines(&w.finish(), "logs");
    assert_eq!(got[0]["time"], "1970-01-01T00:00:00.000000000Z");
    assert_eq!(got[0]["field.time"], "noon");
    assert_eq!(got[0]["msg"], "a \"quoted\"\nline");
    assert!(got[0]["nan"].is_null());
}

#[test]
fn default_adapter_name() {
    let mut h = Harness::<Logs>::new("").unwrap();
    h.handle_logs(&testing::logs_batch()).unwrap();
    assert!(h.requests().is_empty());
}
