//! Trace context from request headers: W3C `traceparent`, else B3 (multi-header or the single `b3` header).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use sextant_tracectx::Format;

/// The ids of the span a report describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// 128-bit trace id (a 64-bit B3 id is zero-extended on the left).
    pub trace_id: [u8; 16],
    /// This span's id.
    pub span_id: [u8; 8],
    /// The parent's id; zero for a root.
    pub parent_id: [u8; 8],
    /// Whether the trace is sampled.
    pub sampled: bool,
}

/// Reads trace context from `headers` (lower-case names; the forms `sextant_tracectx` reads). With W3C,
/// `parent-id` is the caller's span: the report's span is its child, with an id derived from the trace, the
/// parent and `salt` (the request id), so the same report always yields the same span. With B3, the proxy
/// already assigned this hop's span id.
pub fn from_headers(headers: &HashMap<String, String>, salt: &str) -> Option<TraceIds> {
    let c = sextant_tracectx::read(|name| headers.get(name).map(String::as_str))?;
    if c.format != Format::W3c {
        return Some(TraceIds {
            trace_id: c.trace_id,
            span_id: c.span_id,
            parent_id: c.parent_id.unwrap_or([0; 8]),
            sampled: c.sampled,
        });
    }
    let mut h = std::hash::DefaultHasher::new();
    (c.trace_id, c.span_id, salt).hash(&mut h);
    let mut span = h.finish().to_be_bytes();
    if span == [0; 8] {
        span[7] = 1;
    }
    Some(TraceIds {
        trace_id: c.trace_id,
        span_id: span,
        parent_id: c.span_id,
        sampled: c.sampled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn w3c_makes_a_child_of_the_callers_span() {
        let t = from_headers(
            &h(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )]),
            "r1",
        )
        .unwrap();
        assert_eq!(t.trace_id[0], 0x4b);
        assert_eq!(
            t.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(t.sampled);
        assert_ne!(t.span_id, t.parent_id);
        let again = from_headers(
            &h(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )]),
            "r1",
        );
        assert_eq!(again, Some(t), "deterministic");
        assert!(
            from_headers(
                &h(&[(
                    "traceparent",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
                )]),
                ""
            )
            .is_none()
        );
        assert!(from_headers(&h(&[("traceparent", "garbage")]), "").is_none());
    }

    #[test]
    fn b3_multi_and_single() {
        let t = from_headers(
            &h(&[
                ("x-b3-traceid", "463ac35c9f6413ad"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-sampled", "1"),
            ]),
            "",
        )
        .unwrap();
        assert_eq!(&t.trace_id[..8], &[0; 8], "64-bit ids are zero-extended");
        assert_eq!(t.span_id[0], 0xa2);
        assert_eq!(t.parent_id, [0; 8]);
        let s = from_headers(
            &h(&[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
            )]),
            "",
        )
        .unwrap();
        assert!(!s.sampled);
        assert_eq!(s.parent_id[0], 0x05);
        assert!(from_headers(&h(&[]), "").is_none());
    }
}
