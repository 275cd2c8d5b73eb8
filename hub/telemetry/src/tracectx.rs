//! Trace context from request headers: W3C `traceparent`, else B3 (multi-header or the single `b3` header).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

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

/// Reads trace context from `headers` (lower-case names). With W3C, `parent-id` is the caller's span: the
/// report's span is its child, with an id derived from the trace, the parent and `salt` (the request id), so
/// the same report always yields the same span. With B3, the proxy already assigned this hop's span id.
pub fn from_headers(headers: &HashMap<String, String>, salt: &str) -> Option<TraceIds> {
    if let Some(tp) = headers.get("traceparent") {
        return traceparent(tp, salt);
    }
    if let Some(single) = headers.get("b3") {
        return b3_single(single);
    }
    let trace_id = trace_id(headers.get("x-b3-traceid")?)?;
    let span_id = span_id(headers.get("x-b3-spanid")?)?;
    let parent_id = match headers.get("x-b3-parentspanid") {
        Some(p) => span_id_of(p)?,
        None => [0; 8],
    };
    let sampled = !matches!(
        headers.get("x-b3-sampled").map(String::as_str),
        Some("0" | "false")
    );
    Some(TraceIds {
        trace_id,
        span_id,
        parent_id,
        sampled,
    })
}

fn traceparent(v: &str, salt: &str) -> Option<TraceIds> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    if version.len() != 2 || version == "ff" {
        return None;
    }
    let trace = parts.next().filter(|t| t.len() == 32)?;
    let parent = parts.next().filter(|p| p.len() == 16)?;
    let flags = u8::from_str_radix(parts.next().filter(|f| f.len() == 2)?, 16).ok()?;
    let trace_id = trace_id(trace)?;
    let parent_id = span_id(parent)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    let mut h = std::hash::DefaultHasher::new();
    (trace, parent, salt).hash(&mut h);
    let mut span = h.finish().to_be_bytes();
    if span == [0; 8] {
        span[7] = 1;
    }
    Some(TraceIds {
        trace_id,
        span_id: span,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

fn b3_single(v: &str) -> Option<TraceIds> {
    // {TraceId}-{SpanId}-{SamplingState}-{ParentSpanId}, the last two optional; "0"/"1"/"d" alone is only a
    // sampling decision, which makes no span.
    let mut parts = v.trim().split('-');
    let trace_id = trace_id(parts.next()?)?;
    let span_id = span_id(parts.next()?)?;
    let sampled = !matches!(parts.next(), Some("0"));
    let parent_id = match parts.next() {
        Some(p) => span_id_of(p)?,
        None => [0; 8],
    };
    Some(TraceIds {
        trace_id,
        span_id,
        parent_id,
        sampled,
    })
}

fn trace_id(hex: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    match hex.len() {
        32 => decode(hex, &mut out)?,
        16 => decode(hex, &mut out[8..])?,
        _ => return None,
    }
    (out != [0; 16]).then_some(out)
}

fn span_id(hex: &str) -> Option<[u8; 8]> {
    span_id_of(hex).filter(|s| *s != [0; 8])
}

fn span_id_of(hex: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    (hex.len() == 16).then_some(())?;
    decode(hex, &mut out)?;
    Some(out)
}

fn decode(hex: &str, out: &mut [u8]) -> Option<()> {
    let b = hex.as_bytes();
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(())
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
