//! Attribute values as the hub's vocabulary writes them, shared by the hub filters (`hub`, `hub_tcp`) and
//! the response body that reports when it ends (`body`): setting a vocabulary attribute on a bag, the time
//! now, and a response's gRPC status.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use sextant_attributes::{AttrId, Bag, Time, Value};

/// A vocabulary attribute set on a bag; the `attr!` ids are checked against their types at compile time,
/// so the set cannot fail.
pub(crate) fn put(bag: &mut Bag, id: AttrId, value: Value) {
    let _ = bag.set(id, value);
}

/// The time now, as the vocabulary's timestamps hold it.
pub(crate) fn now() -> Time {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// The gRPC status of a response's headers or trailers, when they carry one.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<String> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
