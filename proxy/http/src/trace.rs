//! Trace context through the sidecar, as Envoy's tracer handles it: each request through a reporting hub
//! filter is a span of its own — a child of the caller's span (W3C `traceparent`, else B3), or the root of a
//! new trace, sampled at [`NEW_TRACE_PERCENT`] percent as Istio's default — and the request goes on with
//! this span as its parent, in the form(s) it came in (both for a new trace). The hub reads the span from the
//! report's `request.headers`, in B3 form: `x-b3-spanid` is this hop's span, `x-b3-parentspanid` its parent.

use std::collections::HashMap;

use http::{HeaderMap, HeaderValue};
use sextant_tracectx::{B3, B3_PARENT, B3_SAMPLED, B3_SPAN, B3_TRACE, Format, TRACEPARENT, hex};

/// The share of requests without trace context that start a sampled trace (Istio's default: 1 %).
pub const NEW_TRACE_PERCENT: u32 = 1;

/// This hop's span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    trace: String,
    span: String,
    parent: Option<String>,
    sampled: bool,
    w3c: bool,
    b3: bool,
}

impl Span {
    /// This hop's span for a request with `headers`: a child of their context, or a new trace.
    pub fn of(headers: &HeaderMap) -> Span {
        let span = format!("{:016x}", fastrand::u64(1..));
        let caller = sextant_tracectx::read(|n| headers.get(n).and_then(|v| v.to_str().ok()));
        match caller {
            Some(c) => Span {
                trace: hex(&c.trace_id),
                span,
                parent: Some(hex(&c.span_id)),
                sampled: c.sampled,
                w3c: c.format == Format::W3c,
                b3: c.format != Format::W3c,
            },
            None => Span {
                trace: format!("{:032x}", fastrand::u128(1..)),
                span,
                parent: None,
                sampled: fastrand::u32(..100) < NEW_TRACE_PERCENT,
                w3c: true,
                b3: true,
            },
        }
    }

    /// This span as the parent of a call made for the request (the hub's Check).
    pub fn context(&self) -> Option<sextant_tracectx::Context> {
        let flags = if self.sampled { "01" } else { "00" };
        let traceparent = format!("00-{}-{}-{flags}", self.trace, self.span);
        sextant_tracectx::read(|h| (h == TRACEPARENT).then_some(traceparent.as_str()))
    }

    /// Makes this span the parent of the request as it goes on.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        }
        if self.w3c {
            let flags = if self.sampled { "01" } else { "00" };
            let value = format!("00-{}-{}-{flags}", self.trace, self.span);
            set(headers, TRACEPARENT, &value);
        }
        if self.b3 {
            headers.remove(B3);
            set(headers, B3_TRACE, &self.trace);
            set(headers, B3_SPAN, &self.span);
            match &self.parent {
                Some(p) => set(headers, B3_PARENT, p),
                None => drop(headers.remove(B3_PARENT)),
            }
            set(headers, B3_SAMPLED, if self.sampled { "1" } else { "0" });
        }
    }

    /// The span in a report's `request.headers`, in B3 form (what the hub reads as this hop's span).
    pub fn report(&self, headers: &mut HashMap<String, String>) {
        headers.remove(TRACEPARENT);
        headers.remove(B3);
        headers.insert(B3_TRACE.into(), self.trace.clone());
        headers.insert(B3_SPAN.into(), self.span.clone());
        match &self.parent {
            Some(p) => headers.insert(B3_PARENT.into(), p.clone()),
            None => headers.remove(B3_PARENT),
        };
        headers.insert(
            B3_SAMPLED.into(),
            if self.sampled { "1" } else { "0" }.into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_w3c_caller_is_the_parent_and_this_span_goes_on() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = Span::of(&headers(&[("traceparent", incoming)]));
        let mut out = headers(&[("traceparent", incoming)]);
        span.propagate(&mut out);
        let tp = out["traceparent"].to_str().unwrap();
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(tp.ends_with("-01"));
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "the parent is this span now"
        );
        assert!(!out.contains_key("x-b3-spanid"), "W3C in, W3C out");
        let mut reported = HashMap::from([("traceparent".to_string(), incoming.to_string())]);
        span.report(&mut reported);
        assert_eq!(reported["x-b3-parentspanid"], "00f067aa0ba902b7");
        assert_eq!(reported["x-b3-traceid"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.contains(&reported["x-b3-spanid"]));
        assert!(!reported.contains_key("traceparent"));
    }

    #[test]
    fn b3_callers_get_b3_with_this_span_and_their_parent() {
        let span = Span::of(&headers(&[
            ("x-b3-traceid", "80f198ee56343ba8"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "0"),
        ]));
        let mut out = HeaderMap::new();
        span.propagate(&mut out);
        assert_eq!(out["x-b3-traceid"], "000000000000000080f198ee56343ba8");
        assert_eq!(out["x-b3-parentspanid"], "e457b5a2e4d86bd1");
        assert_ne!(out["x-b3-spanid"], "e457b5a2e4d86bd1");
        assert_eq!(out["x-b3-sampled"], "0");
        assert!(!out.contains_key("traceparent"));
        let single = Span::of(&headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        )]));
        assert_eq!(single.parent.as_deref(), Some("e457b5a2e4d86bd1"));
        assert!(single.sampled);
    }

    #[test]
    fn malformed_or_absent_context_starts_a_new_trace_in_both_forms() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zz-x-y-z",
        ] {
            let span = Span::of(&headers(&[("traceparent", bad)]));
            assert!(span.parent.is_none(), "{bad:?}");
            let mut out = HeaderMap::new();
            span.propagate(&mut out);
            assert!(out.contains_key("traceparent") && out.contains_key("x-b3-spanid"));
            assert!(!out.contains_key("x-b3-parentspanid"));
        }
    }
}
