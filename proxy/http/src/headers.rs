//! Header handling between the two sides: hop-by-hop headers dropped, configured changes applied.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proxy_config::route::HeaderOps;

/// Headers that belong to one connection (RFC 9110 §7.6.1), never forwarded. `te: trailers` is kept (gRPC).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Drops hop-by-hop headers, and those the `connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    if headers
        .get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// Applies removals then additions of `ops` to request (`request: true`) or response headers.
pub(crate) fn apply(ops: &HeaderOps, headers: &mut HeaderMap, request: bool) {
    let (add, remove) = if request {
        (&ops.request_add, &ops.request_remove)
    } else {
        (&ops.response_add, &ops.response_remove)
    };
    for name in remove {
        headers.remove(name.as_str());
    }
    for h in add {
        // Names and values were validated as the configuration was decoded; a value that is still not a
        // valid header value (control characters) is skipped rather than sent malformed.
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) else {
            continue;
        };
        if h.overwrite {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
}
