//! The batch encoding shared by the Sextant hub and its Wasm adapters.
//!
//! Records cross the component boundary as one `list<u8>` per batch instead of typed WIT records, because a
//! typed record costs the guest one allocation per string (~600 ns per metric measured) while a byte buffer is
//! one copy (~2 ns per metric). Strings are interned per segment, so the label values that repeat across a
//! batch (workload names, response codes) are sent once.
//!
//! A buffer is a sequence of self-contained **segments**, so a worker can concatenate segments produced by
//! different Report calls without re-encoding. Every number is little-endian; `varint` is unsigned LEB128.
//!
//! ```text
//! segment  := "SXB" version:u8 kind:u8 body_len:u32 body
//! body     := strings families records
//! strings  := varint n, n × (varint len, utf-8 bytes)        string 0 is always ""
//! families := varint n, n × family                           (metrics segments only; n = 0 otherwise)
//! family   := name:str kind:u8 help:str varint n, n × label_name:str, varint m, m × bucket:f64
//! records  := varint n, n × record
//! metric   := head:varint value:f64 time:varint [labels]
//!             head = 2 × family + repeat; repeat = 0: n_labels × value:str follow (label values, in family
//!             order); repeat = 1: none follow, the record has the previous metric record's label values
//!             (which has as many labels)
//! log      := name:str severity:u8 time:varint varint n, n × (key:str value)
//! span     := trace:[16] span:[8] parent:[8] name:str kind:u8 start:varint end:varint flags:u8
//!             service:str peer:str varint n, n × (key:str value)
//! attrs    := varint n, n × (key:str value)                  (kind attributes: one record, for check)
//! value    := tag:u8 payload   0 null, 1 str, 2 int (zigzag varint), 3 double f64, 4 bool u8,
//!             5 bytes (varint len, bytes), 6 timestamp ns (zigzag), 7 duration ns (zigzag)
//! str      := varint index into the segment's strings
//! ```
//! Times are nanoseconds since the Unix epoch. Decoding validates a whole buffer once ([`Batch::parse`]);
//! the views it hands out cannot fail afterwards.

mod read;
mod samples;
mod write;

pub use read::{
    Batch, DecodeError, FamilyId, FamilyRef, Field, LogRef, MetricRef, SeriesKey, SpanRef,
};
pub use samples::{LabelSet, RawSample, Sample, SampleReader, SampleWriter};
pub use write::BatchWriter;

/// The first bytes of every segment.
pub const MAGIC: [u8; 3] = *b"SXB";
/// The encoding version this crate reads and writes (2: a metric record may repeat the previous one's labels).
pub const VERSION: u8 = 2;
/// Bytes before a segment's body: magic, version, kind, body length.
pub const SEGMENT_HEADER_LEN: usize = 9;

/// What the records of a segment are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BatchKind {
    /// Metric records (values of a family with label values).
    Metrics = 1,
    /// Log entries.
    Logs = 2,
    /// Trace spans.
    Spans = 3,
    /// One request's attributes, for a policy adapter's check.
    Attributes = 4,
}

impl BatchKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Metrics,
            2 => Self::Logs,
            3 => Self::Spans,
            4 => Self::Attributes,
            _ => return None,
        })
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MetricKind {
    /// Monotonic sum: each record adds its value.
    Counter = 0,
    /// Last value wins.
    Gauge = 1,
    /// Each record is one observation.
    Histogram = 2,
}

impl MetricKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Counter,
            1 => Self::Gauge,
            2 => Self::Histogram,
            _ => return None,
        })
    }
}

/// A log entry's severity (OpenTelemetry's coarse levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Severity {
    /// Finest detail.
    Trace = 0,
    /// Debugging detail.
    Debug = 1,
    /// Normal operation (the default).
    Info = 2,
    /// Something unexpected.
    Warn = 3,
    /// A failure.
    Error = 4,
    /// The process cannot go on.
    Fatal = 5,
}

impl Severity {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Fatal,
            _ => return None,
        })
    }

    /// The upper-case name (`INFO`, `ERROR`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }

    /// Parses a severity name, case-insensitively (`warning` is `WARN`, `critical` is `FATAL`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" | "default" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "error" => Self::Error,
            "fatal" | "critical" => Self::Fatal,
            _ => return None,
        })
    }
}

/// A span's role (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SpanKind {
    /// Not said.
    Unspecified = 0,
    /// The server side of a request.
    Server = 1,
    /// The client side of a request.
    Client = 2,
    /// The sender of a message.
    Producer = 3,
    /// The receiver of a message.
    Consumer = 4,
}

impl SpanKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Unspecified,
            1 => Self::Server,
            2 => Self::Client,
            3 => Self::Producer,
            4 => Self::Consumer,
            _ => return None,
        })
    }
}

/// Span flag: the request failed.
pub const SPAN_ERROR: u8 = 1;
/// Span flag: the trace is sampled.
pub const SPAN_SAMPLED: u8 = 2;

/// A typed value of a log field, span tag or attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// No value.
    Null,
    /// Text.
    Str(&'a str),
    /// A signed integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// Nanoseconds since the Unix epoch.
    Timestamp(i64),
    /// Nanoseconds.
    Duration(i64),
}

/// A metric family as the hub declares it in a metrics segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Type.
    pub kind: MetricKind,
    /// Description.
    pub help: &'a str,
    /// Label names; every record of the family gives values in this order.
    pub label_names: &'a [&'a str],
    /// Histogram bucket upper bounds (empty: the adapter's default).
    pub buckets: &'a [f64],
}

/// One span as the hub writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span<'a> {
    /// 128-bit trace id (big-endian bytes, as in W3C trace context).
    pub trace_id: [u8; 16],
    /// 64-bit span id.
    pub span_id: [u8; 8],
    /// Parent span id; all zero for a root span.
    pub parent_id: [u8; 8],
    /// Operation name.
    pub name: &'a str,
    /// Role.
    pub kind: SpanKind,
    /// Start, ns since the epoch.
    pub start_nanos: u64,
    /// End, ns since the epoch.
    pub end_nanos: u64,
    /// [`SPAN_ERROR`] | [`SPAN_SAMPLED`].
    pub flags: u8,
    /// The service that recorded the span.
    pub service: &'a str,
    /// The other side's service ("" when unknown).
    pub peer_service: &'a str,
}

#[cfg(test)]
mod tests;
