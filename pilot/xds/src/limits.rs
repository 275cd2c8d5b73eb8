//! What one ADS stream may make pilot hold, and the refusals of requests that ask for more. A client chooses
//! its type URLs and resource names, so neither becomes state or a metric label without a bound: only the
//! types pilot serves are watched (others are ignored and counted), each type's names are bounded in number
//! and in bytes, and the requests a stream reads ahead are bounded in bytes.

use crate::types;

/// The most names a stream may subscribe to for one type, of its own (names that are exactly a snapshot's
/// resources of the type are shared with it and cost nothing: see `names.rs`). Envoy names every cluster in
/// its EDS requests; a mesh of 100 000 clusters is far beyond what pilot serves to one proxy.
pub const MAX_NAMES: usize = 100_000;

/// The most bytes of names (summed lengths) a stream may subscribe to for one type, of its own: 100 000 names
/// of 80 bytes, longer than Istio's `outbound|PORT|SUBSET|HOST` cluster names. With the per-name cost
/// ([`NAME_OVERHEAD`]), a stream's subscriptions hold at most about 13 MiB per type, five types at most.
pub const MAX_NAME_BYTES: usize = 8 << 20;

/// Heap bytes a name costs beyond its own bytes (its `String`, its share of a tree node, the allocator's
/// rounding): what the read-ahead backlog counts per name.
pub const NAME_OVERHEAD: usize = 48;

/// The largest request a stream reads, on the wire.
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// How many bytes of requests (as kept: names counted with [`NAME_OVERHEAD`]) a stream reads ahead while it
/// waits for the push budget: once it holds this much it reads no further until it has handled some, so it
/// holds at most this plus one request (at most [`MAX_REQUEST_BYTES`] on the wire and [`MAX_NAMES`] names).
/// Twice the largest request: room for Envoy's largest EDS request plus the small ACKs around it. (It was 64
/// requests of up to 4 MiB each: 256 MiB per stream.)
pub const MAX_BACKLOG_BYTES: usize = 2 * MAX_REQUEST_BYTES;

/// How many characters of a client's type URL an error message or a log line repeats.
const SHOWN_TYPE_URL: usize = 120;

/// Why a request is not handled as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A request that names no type URL; the stream is closed with `INVALID_ARGUMENT`.
    #[error("an ADS {protocol} request must name its type_url")]
    NoType {
        /// `sotw` or `delta`.
        protocol: &'static str,
    },
    /// A type pilot does not serve. The request is ignored: no response, no state, as a server that lacks a
    /// type does for Envoy (which then waits for it up to its initial fetch timeout and goes on with the
    /// other types), rather than closing the stream, which would make Envoy reconnect and ask again forever.
    #[error("pilot serves no resources of type {type_url:?}")]
    UnknownType {
        /// The type URL, cut to its first 120 characters.
        type_url: String,
    },
    /// More names of one type than [`MAX_NAMES`]; the stream is closed with `RESOURCE_EXHAUSTED`.
    #[error(
        "{count} {short} names are over the bound of {MAX_NAMES} names per type an ADS stream may subscribe to"
    )]
    TooManyNames {
        /// The type's short name (`cds`, `eds`, ...).
        short: &'static str,
        /// How many names the stream asked for (at least).
        count: usize,
    },
    /// More bytes of names of one type than [`MAX_NAME_BYTES`]; the stream is closed with
    /// `RESOURCE_EXHAUSTED`.
    #[error(
        "{bytes} bytes of {short} names are over the bound of {MAX_NAME_BYTES} bytes of names per type an ADS stream may subscribe to"
    )]
    NamesTooLarge {
        /// The type's short name.
        short: &'static str,
        /// How many bytes of names the stream asked for (at least).
        bytes: usize,
    },
}

impl Refusal {
    /// An unknown type, its URL cut to a length fit for messages and logs.
    pub(crate) fn unknown_type(type_url: &str) -> Refusal {
        Refusal::UnknownType {
            type_url: type_url.chars().take(SHOWN_TYPE_URL).collect(),
        }
    }

    /// The refusal of `count` names of `bytes` bytes of `type_url`, if they are over a bound.
    pub(crate) fn check_names(type_url: &str, count: usize, bytes: usize) -> Result<(), Refusal> {
        let short = types::short_name(type_url);
        if count > MAX_NAMES {
            return Err(Refusal::TooManyNames { short, count });
        }
        if bytes > MAX_NAME_BYTES {
            return Err(Refusal::NamesTooLarge { short, bytes });
        }
        Ok(())
    }

    /// The value of the `reason` label of `pilot_xds_rejected_requests_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoType { .. } => "no_type",
            Refusal::UnknownType { .. } => "unknown_type",
            Refusal::TooManyNames { .. } => "too_many_names",
            Refusal::NamesTooLarge { .. } => "names_too_large",
        }
    }

    /// The status that closes the stream, or `None` when the request is only ignored.
    pub fn status(&self) -> Option<tonic::Status> {
        match self {
            Refusal::NoType { .. } => Some(tonic::Status::invalid_argument(self.to_string())),
            Refusal::UnknownType { .. } => None,
            Refusal::TooManyNames { .. } | Refusal::NamesTooLarge { .. } => {
                Some(tonic::Status::resource_exhausted(self.to_string()))
            }
        }
    }
}

/// The heap bytes `count` names of `bytes` bytes cost, about.
pub(crate) fn names_cost(count: usize, bytes: usize) -> usize {
    count.saturating_mul(NAME_OVERHEAD).saturating_add(bytes)
}

/// How many names a list holds and their bytes.
pub(crate) fn measure<'a>(names: impl IntoIterator<Item = &'a String>) -> (usize, usize) {
    names
        .into_iter()
        .fold((0, 0), |(n, b), name| (n + 1, b + name.len()))
}
