//! The host facade: what an adapter may do outside itself. On wasm32 each call is a WIT import of the
//! `sextant:adapter` world; natively it goes to the thread's in-memory test host ([`crate::testing`]).

use std::fmt;

use sextant_batch::{MetricKind, SampleWriter};

use crate::error::AdapterError;

#[cfg(not(target_arch = "wasm32"))]
#[path = "native.rs"]
mod backend;
#[cfg(target_arch = "wasm32")]
#[path = "wasm.rs"]
mod backend;

/// The hub, as seen from inside an adapter. Handed to [`crate::Adapter::init`] and every handler.
#[derive(Debug)]
pub struct Host {
    _private: (),
}

impl Host {
    pub(crate) fn new() -> Self {
        Self { _private: () }
    }

    /// Writes one line into the hub's log, tagged with the adapter's name.
    pub fn log(&self, level: Level, message: &str) {
        backend::log(level, message);
    }

    /// Wall-clock time in nanoseconds since the Unix epoch, as the hub sees it.
    pub fn now_unix_nanos(&self) -> u64 {
        backend::now_unix_nanos()
    }

    /// Monotonic time in nanoseconds, for measuring durations.
    pub fn monotonic_nanos(&self) -> u64 {
        backend::monotonic_nanos()
    }

    /// The hub's Prometheus registry.
    pub fn metrics(&self) -> MetricsRegistry<'_> {
        MetricsRegistry { _host: self }
    }

    /// Outbound HTTP, restricted to the `Adapter`'s `spec.allowedHosts`.
    pub fn http(&self) -> HttpClient<'_> {
        HttpClient { _host: self }
    }
}

/// Severity of a line in the hub's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Finest detail.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected.
    Warn,
    /// A failure.
    Error,
}

/// A metric family to define in the hub's registry: one name, one type, fixed label names.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); counters get `_total` in exposition if missing.
    pub name: String,
    /// Description.
    pub help: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names, in the order sample label values are given.
    pub label_names: Vec<String>,
    /// Histogram bucket upper bounds, ascending (empty = the hub's default buckets); ignored for other kinds.
    pub buckets: Vec<f64>,
}

impl MetricFamily {
    /// A family of `kind` without buckets.
    pub fn new<'s>(
        name: impl Into<String>,
        help: impl Into<String>,
        kind: MetricKind,
        label_names: impl IntoIterator<Item = &'s str>,
    ) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            label_names: label_names.into_iter().map(str::to_owned).collect(),
            buckets: Vec::new(),
        }
    }

    /// The same family with histogram bucket bounds.
    pub fn with_buckets(mut self, buckets: impl Into<Vec<f64>>) -> Self {
        self.buckets = buckets.into();
        self
    }
}

/// A family defined in the hub's registry; samples name it in [`SampleWriter::sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FamilyHandle(pub u32);

/// The hub's Prometheus registry (its `:42422/metrics`).
#[derive(Debug)]
pub struct MetricsRegistry<'h> {
    _host: &'h Host,
}

impl MetricsRegistry<'_> {
    /// Defines a family, or returns the existing one when an identical family exists. Fails when the name is
    /// taken by a different family or the registry is full. Cache the handle: defining costs a host call.
    pub fn define(&self, family: &MetricFamily) -> Result<FamilyHandle, String> {
        backend::define(family).map(FamilyHandle)
    }

    /// Records samples (counters add, gauges set, histograms observe) in one host call. Returns the number of
    /// samples applied; samples naming unknown handles or a wrong label count are skipped and counted by the hub.
    pub fn record(&self, samples: &SampleWriter) -> Result<u32, String> {
        if samples.is_empty() {
            return Ok(0);
        }
        backend::record(samples.as_bytes())
    }
}

/// An outbound HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET, POST, PUT, ...
    pub method: String,
    /// Absolute `http://` URL; its host:port must be in the allowlist.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// 0 = the hub's default (5 s); capped by the adapter's time limit.
    pub timeout_ms: u32,
}

impl Request {
    /// A request without headers, body or timeout.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: 0,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the timeout in milliseconds (0 = the hub's default).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// An HTTP response, with the whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and no headers or body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Maps the status to a handler result the way backends mean it: 2xx is success; 5xx, 408 and 429 are
    /// retryable; any other status is permanent (the backend rejected the data). `what` names the backend in
    /// the message, which also carries the start of the response body.
    pub fn error_for_status(&self, what: &str) -> Result<(), AdapterError> {
        if (200..300).contains(&self.status) {
            return Ok(());
        }
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(256)]).into_owned();
        let message = format!("{what} answered HTTP {}: {}", self.status, body.trim());
        if self.status >= 500 || self.status == 408 || self.status == 429 {
            Err(AdapterError::retryable(message))
        } else {
            Err(AdapterError::permanent(message))
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why a request did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL's host:port is not in the allowlist, or the URL is invalid.
    Denied(String),
    /// No connection could be made.
    Connect(String),
    /// The timeout passed.
    Timeout,
    /// Anything else (protocol error, response too large).
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(m) => write!(f, "request denied: {m}"),
            Self::Connect(m) => write!(f, "connect failed: {m}"),
            Self::Timeout => f.write_str("request timed out"),
            Self::Other(m) => write!(f, "request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for AdapterError {
    /// A denied request is permanent (the allowlist or the URL must change); the others are retryable.
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied(_) => AdapterError::permanent(e.to_string()),
            _ => AdapterError::retryable(e.to_string()),
        }
    }
}

/// Outbound HTTP through the hub.
#[derive(Debug)]
pub struct HttpClient<'h> {
    _host: &'h Host,
}

impl HttpClient<'_> {
    /// Sends `request` and waits for the whole response.
    pub fn send(&self, request: Request) -> Result<Response, HttpError> {
        backend::send(request)
    }

    /// POSTs `body` with a `content-type` header.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        self.send(
            Request::new("POST", url)
                .header("content-type", content_type)
                .body(body),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(Response::status(202).error_for_status("x").is_ok());
        assert!(
            Response::status(503)
                .error_for_status("x")
                .unwrap_err()
                .is_retryable()
        );
        assert!(
            Response::status(429)
                .error_for_status("x")
                .unwrap_err()
                .is_retryable()
        );
        let e = Response {
            status: 400,
            headers: vec![],
            body: b"bad span".to_vec(),
        }
        .error_for_status("zipkin")
        .unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(e.message, "zipkin answered HTTP 400: bad span");
    }

    #[test]
    fn http_errors_map_to_kinds() {
        assert!(!AdapterError::from(HttpError::Denied("h".into())).is_retryable());
        assert!(AdapterError::from(HttpError::Timeout).is_retryable());
        assert!(AdapterError::from(HttpError::Connect("refused".into())).is_retryable());
    }
}
