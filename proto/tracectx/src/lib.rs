//! Trace context as a caller sends it in request headers: W3C `traceparent`, else B3's single `b3` header,
//! else B3's `x-b3-*` headers. Both the proxy (which continues the trace) and the hub (which turns reports
//! into spans) read it here, so a context one accepts the other accepts too.
//!
//! Ids are bytes; a 64-bit B3 trace id is zero-extended on the left to 128 bits. All-zero trace or span ids
//! are invalid, as both specifications say.

/// W3C's header.
pub const TRACEPARENT: &str = "traceparent";
/// B3's single header: `TRACE-SPAN[-SAMPLED[-PARENT]]`.
pub const B3: &str = "b3";
/// B3's trace id header.
pub const B3_TRACE: &str = "x-b3-traceid";
/// B3's span id header.
pub const B3_SPAN: &str = "x-b3-spanid";
/// B3's parent span id header.
pub const B3_PARENT: &str = "x-b3-parentspanid";
/// B3's sampling header.
pub const B3_SAMPLED: &str = "x-b3-sampled";

/// The form a context came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// W3C `traceparent`.
    W3c,
    /// B3's single `b3` header.
    B3Single,
    /// B3's `x-b3-*` headers.
    B3Multi,
}

/// A caller's trace context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The caller's span (W3C's `parent-id`; B3's span id).
    pub span_id: [u8; 8],
    /// The caller's parent span, when B3 names one.
    pub parent_id: Option<[u8; 8]>,
    /// Whether the trace is sampled (W3C's flag; B3's unless `0`/`false`).
    pub sampled: bool,
    /// Which headers it came in.
    pub format: Format,
}

impl Context {
    /// This context as a W3C `traceparent` value (whatever form it came in), naming its span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// Reads the caller's context; `header` looks a header up by its lower-case name. `None` when no form is
/// present and valid.
pub fn read<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Context> {
    if let Some(v) = header(TRACEPARENT) {
        return w3c(v);
    }
    if let Some(v) = header(B3) {
        return b3_single(v);
    }
    let parent_id = match header(B3_PARENT) {
        Some(p) => Some(span_id(p)?),
        None => None,
    };
    Some(Context {
        trace_id: trace_id(header(B3_TRACE)?)?,
        span_id: span_id(header(B3_SPAN)?)?,
        parent_id,
        sampled: !matches!(header(B3_SAMPLED).map(str::trim), Some("0" | "false")),
        format: Format::B3Multi,
    })
}

/// `VERSION-TRACE-PARENT-FLAGS`, version `ff` refused.
fn w3c(v: &str) -> Option<Context> {
    let mut parts = v.trim().split('-');
    let version = parts.next().filter(|v| v.len() == 2 && *v != "ff")?;
    bytes::<1>(version)?;
    let trace = parts.next().filter(|t| t.len() == 32)?;
    let trace_id = trace_id(trace)?;
    let span_id = span_id(parts.next()?)?;
    let [flags] = bytes::<1>(parts.next()?)?;
    Some(Context {
        trace_id,
        span_id,
        parent_id: None,
        sampled: flags & 1 == 1,
        format: Format::W3c,
    })
}

/// `TRACE-SPAN[-SAMPLED[-PARENT]]`; a sampling decision alone (`0`, `1`, `d`) is no context.
fn b3_single(v: &str) -> Option<Context> {
    let mut parts = v.trim().split('-');
    let trace_id = trace_id(parts.next()?)?;
    let span_id = span_id(parts.next()?)?;
    let sampled = !matches!(parts.next(), Some("0"));
    let parent_id = match parts.next() {
        Some(p) => Some(span_id_any(p)?),
        None => None,
    };
    Some(Context {
        trace_id,
        span_id,
        parent_id,
        sampled,
        format: Format::B3Single,
    })
}

/// A 128-bit or 64-bit (zero-extended) trace id, not all zeros.
fn trace_id(hex: &str) -> Option<[u8; 16]> {
    let out = match hex.len() {
        32 => bytes::<16>(hex)?,
        16 => {
            let mut out = [0; 16];
            out[8..].copy_from_slice(&bytes::<8>(hex)?);
            out
        }
        _ => return None,
    };
    (out != [0; 16]).then_some(out)
}

/// A span id, not all zeros.
fn span_id(hex: &str) -> Option<[u8; 8]> {
    span_id_any(hex).filter(|s| *s != [0; 8])
}

/// A span id, zeros allowed (B3's parent).
fn span_id_any(hex: &str) -> Option<[u8; 8]> {
    bytes::<8>(hex)
}

/// `N` bytes from exactly `2N` hex digits.
fn bytes<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let b = hex.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_pairs(pairs: &[(&str, &str)]) -> Option<Context> {
        read(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn w3c_names_the_callers_span_and_its_flag() {
        let c = read_pairs(&[(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )])
        .expect("valid");
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&c.span_id), "00f067aa0ba902b7");
        assert_eq!(
            (c.parent_id, c.sampled, c.format),
            (None, true, Format::W3c)
        );
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(read_pairs(&[(TRACEPARENT, bad)]), None, "{bad:?}");
        }
        // W3C wins over B3 when both came.
        let both = read_pairs(&[
            (
                TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            ),
            (B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ]);
        assert_eq!(both.map(|c| c.format), Some(Format::W3c));
    }

    #[test]
    fn b3_single_and_multi() {
        let s = read_pairs(&[(
            B3,
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
        )])
        .expect("valid");
        assert_eq!(hex(&s.span_id), "e457b5a2e4d86bd1");
        assert_eq!(
            s.parent_id.map(|p| hex(&p)).as_deref(),
            Some("05e3ac9a4f6e3b90")
        );
        assert!(!s.sampled);
        assert_eq!(read_pairs(&[(B3, "1")]), None, "a sampling decision alone");
        let m = read_pairs(&[
            (B3_TRACE, "463ac35c9f6413ad"),
            (B3_SPAN, "a2fb4a1d1a96d312"),
            (B3_SAMPLED, "false"),
        ])
        .expect("valid");
        assert_eq!(hex(&m.trace_id), "0000000000000000463ac35c9f6413ad");
        assert_eq!(
            (m.parent_id, m.sampled, m.format),
            (None, false, Format::B3Multi)
        );
        assert_eq!(
            read_pairs(&[(B3_TRACE, "463ac35c9f6413ad")]),
            None,
            "no span"
        );
        assert_eq!(read_pairs(&[]), None);
    }
}
