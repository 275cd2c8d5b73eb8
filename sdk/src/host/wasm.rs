//! The host facade on wasm32: each call is one WIT import.

use sextant_batch::MetricKind;

use super::{HttpError, Level, MetricFamily, Request, Response};
use crate::guest::bindings::sextant::adapter::{clock, http, log, metrics};

pub(super) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => log::Level::Trace,
        Level::Debug => log::Level::Debug,
        Level::Info => log::Level::Info,
        Level::Warn => log::Level::Warn,
        Level::Error => log::Level::Error,
    };
    log::write(level, message);
}

pub(super) fn now_unix_nanos() -> u64 {
    clock::now_unix_nanos()
}

pub(super) fn monotonic_nanos() -> u64 {
    clock::monotonic_nanos()
}

pub(super) fn define(family: &MetricFamily) -> Result<u32, String> {
    let kind = match family.kind {
        MetricKind::Counter => metrics::Kind::Counter,
        MetricKind::Gauge => metrics::Kind::Gauge,
        MetricKind::Histogram => metrics::Kind::Histogram,
    };
    metrics::define(&metrics::Family {
        name: family.name.clone(),
        help: family.help.clone(),
        kind,
        label_names: family.label_names.clone(),
        buckets: family.buckets.clone(),
    })
}

pub(super) fn record(samples: &[u8]) -> Result<u32, String> {
    metrics::record(samples)
}

pub(super) fn send(request: Request) -> Result<Response, HttpError> {
    let req = http::Request {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
        timeout_ms: request.timeout_ms,
    };
    match http::send(&req) {
        Ok(r) => Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }),
        Err(http::Error::Denied(m)) => Err(HttpError::Denied(m)),
        Err(http::Error::Connect(m)) => Err(HttpError::Connect(m)),
        Err(http::Error::Timeout) => Err(HttpError::Timeout),
        Err(http::Error::Other(m)) => Err(HttpError::Other(m)),
    }
}
