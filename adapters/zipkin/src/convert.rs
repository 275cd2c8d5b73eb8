//! Spans → Zipkin v2 JSON (`zipkin2/zipkin-api.yaml`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sextant_adapter_sdk::{Batch, SPAN_ERROR, SpanKind, Value};

/// One Zipkin v2 span.
#[derive(Debug, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    /// 32 lower-hex characters.
    pub trace_id: String,
    /// 16 lower-hex characters.
    pub id: String,
    /// Absent for a root span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Operation name.
    pub name: String,
    /// SERVER, CLIENT, PRODUCER or CONSUMER; absent when unspecified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Start, µs since the epoch.
    pub timestamp: u64,
    /// µs, at least 1.
    pub duration: u64,
    /// The recording service.
    pub local_endpoint: Endpoint,
    /// The other side, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    /// Tags, as strings; `error` when the span failed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A Zipkin endpoint (only the service name is known to the hub).
#[derive(Debug, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Lower-case service name.
    pub service_name: String,
}

/// Converts every span of `batch`. `debug` and `shared` are never set: the hub has already sampled, and each
/// side of an RPC has its own span id.
pub fn to_zipkin(batch: &Batch<'_>) -> Vec<ZipkinSpan> {
    batch
        .spans()
        .map(|s| {
            let span = s.span();
            let mut tags = BTreeMap::new();
            for f in s.tags() {
                if let Some(v) = tag_value(f.value) {
                    tags.insert(f.key.to_owned(), v);
                }
            }
            if span.flags & SPAN_ERROR != 0 {
                tags.entry("error".to_owned())
                    .or_insert_with(|| "true".to_owned());
            }
            ZipkinSpan {
                trace_id: hex(&span.trace_id),
                id: hex(&span.span_id),
                parent_id: (span.parent_id != [0; 8]).then(|| hex(&span.parent_id)),
                name: span.name.to_owned(),
                kind: match span.kind {
                    SpanKind::Server => Some("SERVER"),
                    SpanKind::Client => Some("CLIENT"),
                    SpanKind::Producer => Some("PRODUCER"),
                    SpanKind::Consumer => Some("CONSUMER"),
                    SpanKind::Unspecified => None,
                },
                timestamp: span.start_nanos / 1000,
                duration: (span.end_nanos.saturating_sub(span.start_nanos) / 1000).max(1),
                local_endpoint: Endpoint {
                    service_name: span.service.to_lowercase(),
                },
                remote_endpoint: (!span.peer_service.is_empty()).then(|| Endpoint {
                    service_name: span.peer_service.to_lowercase(),
                }),
                tags,
            }
        })
        .collect()
}

/// Zipkin tags are strings; a null value is left out.
fn tag_value(v: Value<'_>) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Str(s) => s.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => hex(b),
        Value::Timestamp(ns) | Value::Duration(ns) => ns.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
