//! The proxy's configuration: Envoy v3 resources, as pilot sends them, checked against the subset the proxy
//! implements (listed in `docs/proxy.md`) and turned into the proxy's own types.
//!
//! Each resource is first checked field by field against the supported subset ([`allow`]): a field set
//! anywhere in it, packed payloads included, that the proxy does not implement refuses the whole resource
//! with an [`Error`] naming the field and where it is. Then it is converted, and values the proxy cannot
//! honour (an unknown enum value, a regex that does not compile, an address that is not an IP) are refused
//! the same way. Nothing is half applied: a caller gets every resource of an update or an error.

mod allow;
pub mod cluster;
pub mod endpoint;
mod error;
pub mod filter_state;
pub mod listener;
pub mod matcher;
pub mod mixer;
pub mod rbac;
pub mod route;
pub mod secret;
pub mod tls;

use std::time::Duration;

use prost::{Message, Name};
use sextant_proto::google::protobuf::{Any, Duration as PbDuration};

pub use error::Error;
use error::{Partial, at};

/// Decodes one resource of type `M` (refusing a wrong type URL, undecodable bytes and unsupported fields) and
/// converts it with `convert`, naming it with `name` in any error.
fn resource<M: Message + Name + Default, T>(
    kind: &'static str,
    any: &Any,
    name: impl Fn(&M) -> String,
    convert: impl Fn(&M) -> Partial<T>,
) -> Result<T, Error> {
    let fail = |name: String, (path, reason): (String, String)| Error {
        kind,
        name,
        path,
        reason,
    };
    if any.type_url != M::type_url() {
        return Err(fail(
            String::new(),
            (
                String::new(),
                format!("expected {}, got {}", M::type_url(), any.type_url),
            ),
        ));
    }
    let message = M::decode(any.value.as_slice()).map_err(|e| {
        fail(
            String::new(),
            (String::new(), format!("does not decode: {e}")),
        )
    })?;
    let name = name(&message);
    allow::check(any).map_err(|u| fail(name.clone(), (u.path, u.reason)))?;
    convert(&message).map_err(|e| fail(name, e))
}

/// Decodes a packed payload as `M` (its type URL checked by the caller).
pub(crate) fn decode_payload<M: Message + Default>(any: &Any) -> Partial<M> {
    M::decode(any.value.as_slice())
        .or_else(|e| at("", format!("{} does not decode: {e}", any.type_url)))
}

/// A protobuf duration, refusing negative ones.
pub(crate) fn duration(d: &PbDuration) -> Partial<Duration> {
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => Ok(Duration::new(s, n)),
        _ => at(
            "",
            format!(
                "{}s {}ns is not a valid non-negative duration",
                d.seconds, d.nanos
            ),
        ),
    }
}
