//! The host facade natively: every call goes to the thread's in-memory test host ([`crate::testing`]).

use super::{HttpError, Level, MetricFamily, Request, Response};
use crate::testing::with_host;

pub(super) fn log(level: Level, message: &str) {
    with_host(|h| h.log(level, message));
}

pub(super) fn now_unix_nanos() -> u64 {
    with_host(|h| h.now_unix_nanos())
}

pub(super) fn monotonic_nanos() -> u64 {
    with_host(|h| h.monotonic_nanos())
}

pub(super) fn define(family: &MetricFamily) -> Result<u32, String> {
    with_host(|h| h.define(family))
}

pub(super) fn record(samples: &[u8]) -> Result<u32, String> {
    with_host(|h| h.record(samples))
}

pub(super) fn send(request: Request) -> Result<Response, HttpError> {
    with_host(|h| h.send(request))
}
