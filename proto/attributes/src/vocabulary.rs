//! The attribute vocabulary: every attribute name the hub understands, with its type and meaning.
//!
//! This table is the only definition of the vocabulary. Its order is part of the compressed wire format (the
//! global dictionary lists these names after a frozen block of common words), so new attributes are appended
//! at the end and existing ones are never reordered or removed.

use std::collections::HashMap;
use std::sync::LazyLock;

/// The type of an attribute's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrType {
    /// UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Int64,
    /// A 64-bit float.
    Double,
    /// true or false.
    Bool,
    /// Raw bytes.
    Bytes,
    /// A point in time.
    Timestamp,
    /// A span of time.
    Duration,
    /// A map from string to string (headers, labels, claims).
    StringMap,
    /// An IPv4 or IPv6 address; CEL sees its canonical text form.
    IpAddress,
}

impl AttrType {
    /// The name used in docs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Int64 => "int64",
            AttrType::Double => "double",
            AttrType::Bool => "bool",
            AttrType::Bytes => "bytes",
            AttrType::Timestamp => "timestamp",
            AttrType::Duration => "duration",
            AttrType::StringMap => "string map",
            AttrType::IpAddress => "IP address",
        }
    }
}

/// One attribute of the vocabulary.
#[derive(Debug)]
pub struct AttributeDef {
    /// Dotted name, e.g. `request.headers`.
    pub name: &'static str,
    /// Value type.
    pub ty: AttrType,
    /// Whether the value differs on every request (time, ids): a decision that reads it cannot be cached.
    pub volatile: bool,
    /// What the attribute means, for docs/attributes.md.
    pub description: &'static str,
}

/// Index of an attribute in [`VOCABULARY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrId(pub u16);

impl AttrId {
    /// The attribute's definition.
    pub fn def(self) -> &'static AttributeDef {
        &VOCABULARY[usize::from(self.0)]
    }

    /// The attribute's name.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The attribute's type.
    pub fn ty(self) -> AttrType {
        self.def().ty
    }

    /// Position in [`VOCABULARY`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

const fn a(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        volatile: false,
        description,
    }
}

const fn volatile(name: &'static str, ty: AttrType, description: &'static str) -> AttributeDef {
    AttributeDef {
        name,
        ty,
        volatile: true,
        description,
    }
}

use AttrType::{Bool, Duration, Int64, IpAddress, String as Str, StringMap, Timestamp};

/// Every attribute the hub understands. Append only (see the module docs).
pub static VOCABULARY: &[AttributeDef] = &[
    a(
        "source.uid",
        Str,
        "Platform-specific unique id of the client workload instance, e.g. `kubernetes://pod.ns`.",
    ),
    a("source.ip", IpAddress, "Client IP address."),
    a("source.port", Int64, "Client port."),
    a(
        "source.labels",
        StringMap,
        "Labels of the client workload instance, e.g. `app`, `version`.",
    ),
    a(
        "source.name",
        Str,
        "Name of the client workload instance (pod name).",
    ),
    a(
        "source.namespace",
        Str,
        "Namespace of the client workload instance.",
    ),
    a(
        "source.principal",
        Str,
        "Authenticated identity of the client (e.g. its SPIFFE id from mTLS).",
    ),
    a(
        "source.workload.name",
        Str,
        "Name of the client workload (deployment).",
    ),
    a(
        "source.workload.namespace",
        Str,
        "Namespace of the client workload.",
    ),
    a(
        "source.service.host",
        Str,
        "Fully qualified host of the client's service.",
    ),
    a(
        "source.service.name",
        Str,
        "Short name of the client's service.",
    ),
    a(
        "source.service.namespace",
        Str,
        "Namespace of the client's service.",
    ),
    a(
        "destination.uid",
        Str,
        "Platform-specific unique id of the server workload instance.",
    ),
    a("destination.ip", IpAddress, "Server IP address."),
    a("destination.port", Int64, "Server port."),
    a(
        "destination.labels",
        StringMap,
        "Labels of the server workload instance, e.g. `app`, `version`.",
    ),
    a(
        "destination.name",
        Str,
        "Name of the server workload instance (pod name).",
    ),
    a(
        "destination.namespace",
        Str,
        "Namespace of the server workload instance.",
    ),
    a(
        "destination.principal",
        Str,
        "Authenticated identity of the server.",
    ),
    a(
        "destination.workload.name",
        Str,
        "Name of the server workload (deployment).",
    ),
    a(
        "destination.workload.namespace",
        Str,
        "Namespace of the server workload.",
    ),
    a(
        "destination.service.host",
        Str,
        "Fully qualified host of the destination service, e.g. `reviews.default.svc.cluster.local`.",
    ),
    a(
        "destination.service.name",
        Str,
        "Short name of the destination service, e.g. `reviews`.",
    ),
    a(
        "destination.service.namespace",
        Str,
        "Namespace of the destination service.",
    ),
    a(
        "request.headers",
        StringMap,
        "HTTP request headers; names in lower case, pseudo-headers such as `:authority` included.",
    ),
    volatile(
        "request.id",
        Str,
        "Unique id of the request (`x-request-id`).",
    ),
    a("request.path", Str, "HTTP path including the query string."),
    a(
        "request.url_path",
        Str,
        "HTTP path without the query string.",
    ),
    a(
        "request.query_params",
        StringMap,
        "Query parameters decoded from the path (the first value of each name).",
    ),
    a("request.host", Str, "HTTP host (`:authority`)."),
    a("request.method", Str, "HTTP method."),
    a("request.scheme", Str, "URI scheme, `http` or `https`."),
    a("request.size", Int64, "Size of the request body in bytes."),
    a(
        "request.total_size",
        Int64,
        "Size of the whole request (headers and body) in bytes.",
    ),
    volatile(
        "request.time",
        Timestamp,
        "When the proxy received the request.",
    ),
    a("request.useragent", Str, "The `user-agent` header."),
    a(
        "request.protocol",
        Str,
        "Request protocol: `http`, `http2`, `grpc`.",
    ),
    a(
        "request.auth.principal",
        Str,
        "Authenticated principal of the request (JWT `iss/sub`).",
    ),
    a(
        "request.auth.claims",
        StringMap,
        "Claims of the request's verified JWT.",
    ),
    a(
        "request.api_key",
        Str,
        "API key of the request (from a header or query parameter).",
    ),
    a("response.code", Int64, "HTTP response status code."),
    a(
        "response.size",
        Int64,
        "Size of the response body in bytes.",
    ),
    a(
        "response.total_size",
        Int64,
        "Size of the whole response (headers and body) in bytes.",
    ),
    a(
        "response.duration",
        Duration,
        "Time from the request's arrival to the response's last byte.",
    ),
    a(
        "response.headers",
        StringMap,
        "HTTP response headers; names in lower case.",
    ),
    a(
        "response.time",
        Timestamp,
        "When the proxy sent the response.",
    ),
    a(
        "response.grpc_status",
        Str,
        "gRPC status code of the response, as a decimal string.",
    ),
    a("connection.id", Str, "Unique id of a TCP connection."),
    a(
        "connection.event",
        Str,
        "TCP connection event: `open`, `continue` or `close`.",
    ),
    a(
        "connection.received.bytes",
        Int64,
        "Bytes received on the connection since the last report.",
    ),
    a(
        "connection.sent.bytes",
        Int64,
        "Bytes sent on the connection since the last report.",
    ),
    a(
        "connection.duration",
        Duration,
        "How long the connection has been open.",
    ),
    a(
        "connection.mtls",
        Bool,
        "Whether the connection is mutual TLS.",
    ),
    a(
        "connection.requested_server_name",
        Str,
        "SNI the client asked for.",
    ),
    a(
        "context.protocol",
        Str,
        "Protocol of the connection: `http`, `grpc`, `tcp`.",
    ),
    volatile(
        "context.time",
        Timestamp,
        "When the attribute bag was made.",
    ),
    a(
        "context.reporter.kind",
        Str,
        "Which side made the bag: `inbound` (server proxy) or `outbound` (client proxy).",
    ),
    a(
        "context.reporter.uid",
        Str,
        "Id of the proxy that made the bag.",
    ),
    a(
        "ratelimit.domain",
        Str,
        "Envoy rate-limit service front door only: the `domain` of a ShouldRateLimit call.",
    ),
    a(
        "ratelimit.descriptor",
        StringMap,
        "Envoy rate-limit service front door only: the entries of one descriptor (key to value).",
    ),
    a(
        "connection.received.bytes_total",
        Int64,
        "Bytes received on the connection since it opened.",
    ),
    a(
        "connection.sent.bytes_total",
        Int64,
        "Bytes sent on the connection since it opened.",
    ),
    a(
        "context.proxy_error_code",
        Str,
        "The proxy's response flags for the request (Envoy's `%RESPONSE_FLAGS%`, e.g. `UH`, `UF`, `-` for none).",
    ),
];

static BY_NAME: LazyLock<HashMap<&'static str, AttrId>> = LazyLock::new(|| {
    VOCABULARY
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name, AttrId(u16::try_from(i).unwrap_or(u16::MAX))))
        .collect()
});

/// The id of attribute `name`, which must have type `ty`, computed at compile time when used in a `const` item:
/// a name missing from the vocabulary, or of another type, fails the build instead of being dropped at run
/// time. [`attr!`](crate::attr) is the way to call it.
pub const fn id_of(name: &str, ty: AttrType) -> AttrId {
    let mut i = 0;
    while i < VOCABULARY.len() {
        let d = &VOCABULARY[i];
        if bytes_eq(d.name.as_bytes(), name.as_bytes()) {
            assert!(
                d.ty as u8 == ty as u8,
                "the attribute has another type in the vocabulary"
            );
            assert!(i <= u16::MAX as usize, "the vocabulary outgrew AttrId");
            return AttrId(i as u16);
        }
        i += 1;
    }
    panic!("no attribute of that name in the vocabulary")
}

const fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The attributes of one side of a connection, `source.*` or `destination.*`.
#[derive(Clone, Copy, Debug)]
pub struct PeerAttrs {
    /// `*.ip`
    pub ip: AttrId,
    /// `*.port`
    pub port: AttrId,
    /// `*.principal`
    pub principal: AttrId,
    /// `*.labels`
    pub labels: AttrId,
    /// `*.workload.name`
    pub workload_name: AttrId,
    /// `*.workload.namespace`
    pub workload_namespace: AttrId,
}

/// The client's side.
pub const SOURCE: PeerAttrs = PeerAttrs {
    ip: crate::attr!("source.ip", IpAddress),
    port: crate::attr!("source.port", Int64),
    principal: crate::attr!("source.principal", String),
    labels: crate::attr!("source.labels", StringMap),
    workload_name: crate::attr!("source.workload.name", String),
    workload_namespace: crate::attr!("source.workload.namespace", String),
};

/// The server's side.
pub const DESTINATION: PeerAttrs = PeerAttrs {
    ip: crate::attr!("destination.ip", IpAddress),
    port: crate::attr!("destination.port", Int64),
    principal: crate::attr!("destination.principal", String),
    labels: crate::attr!("destination.labels", StringMap),
    workload_name: crate::attr!("destination.workload.name", String),
    workload_namespace: crate::attr!("destination.workload.namespace", String),
};

/// The [`AttrId`] of a vocabulary attribute, checked at compile time. A misspelt or renamed name, or a type
/// that is not the attribute's, is a build error instead of an attribute silently never set:
///
/// ```
/// let path = sextant_attributes::attr!("request.path", String);
/// assert_eq!(path.name(), "request.path");
/// ```
///
/// ```compile_fail
/// let headers = sextant_attributes::attr!("request.hedaers", StringMap);
/// ```
///
/// ```compile_fail
/// let size = sextant_attributes::attr!("request.size", String);
/// ```
#[macro_export]
macro_rules! attr {
    ($name:literal, $ty:ident) => {{
        const ID: $crate::AttrId = $crate::id_of($name, $crate::AttrType::$ty);
        ID
    }};
}

/// Looks an attribute up by name.
pub fn lookup(name: &str) -> Option<AttrId> {
    BY_NAME.get(name).copied()
}

/// The closest known attribute name to `name`, if one is close enough to be a likely typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    VOCABULARY
        .iter()
        .map(|d| (strsim::damerau_levenshtein(name, d.name), d.name))
        .filter(|(dist, candidate)| *dist <= 3.max(candidate.len() / 5))
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, n)| n)
}

/// The names of all attributes under `prefix.` (e.g. `request` gives `request.headers`, …), for hints.
pub fn names_under(prefix: &str) -> impl Iterator<Item = &'static str> + '_ {
    VOCABULARY.iter().map(|d| d.name).filter(move |n| {
        n.len() > prefix.len() && n.starts_with(prefix) && n.as_bytes()[prefix.len()] == b'.'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        assert_eq!(BY_NAME.len(), VOCABULARY.len());
    }

    #[test]
    fn typo_gets_a_suggestion() {
        assert_eq!(suggest("request.hedaers"), Some("request.headers"));
        assert_eq!(
            suggest("destination.service.nmae"),
            Some("destination.service.name")
        );
        assert_eq!(suggest("completely.unrelated.thing"), None);
    }
}
