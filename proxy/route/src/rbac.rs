//! The RBAC policy engine both of Envoy's RBAC filters share: the network filter decides once per connection
//! from a [`Context`] without a request, the HTTP filter per request from one carrying it ([`HttpRequest`]).
//!
//! Semantics as Envoy 1.40's: a policy matches when one of its permissions and one of its principals match;
//! ALLOW lets through only what some policy matches (no policies: nothing), DENY refuses what some policy
//! matches. HTTP rules (`header`, `url_path`) see the request as Envoy's header map holds it: `:authority`,
//! `:method`, `:path` (with its query) and `:scheme` besides the headers, several values of one header joined
//! by commas. Without a request (a connection) they never match; the network filter's configuration refuses
//! them anyway.

use std::net::SocketAddr;

use http::HeaderMap;
use proxy_config::matcher::StringMatcher;
use proxy_config::rbac::{Action, PeerIdentity, Permission, Policy, Principal, Rules};
use proxy_config::route::{HeaderMatch, ValueMatch};

/// What RBAC reads of a connection, and of a request on it when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The peer's address (`direct_remote_ip`, `remote_ip` and `source_ip` alike: no forwarding header or
    /// proxy protocol re-addresses it).
    pub peer: SocketAddr,
    /// The original destination of a redirected connection, else the address it arrived on.
    pub destination: Option<SocketAddr>,
    /// The SNI the TLS inspector read; empty when none.
    pub server_name: &'a str,
    /// The peer of a TLS connection the chain terminated; `None` for plain text.
    pub tls: Option<&'a PeerIdentity>,
    /// The request, for the HTTP filter.
    pub http: Option<HttpRequest<'a>>,
}

/// The request an HTTP RBAC filter decides on.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `:authority` (or HTTP/1's `Host`), as sent.
    pub authority: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// `:path`: the path with its query, as sent.
    pub path_and_query: &'a str,
    /// `:scheme`.
    pub scheme: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
}

impl HttpRequest<'_> {
    /// The path without its query (or fragment), which `url_path` matches.
    fn path(&self) -> &str {
        let end = self
            .path_and_query
            .find(['?', '#'])
            .unwrap_or(self.path_and_query.len());
        &self.path_and_query[..end]
    }
}

/// Whether `rules` let the connection or request through.
pub fn decide(rules: &Rules, cx: &Context<'_>) -> bool {
    let matched = rules.policies.iter().any(|p| policy_matches(p, cx));
    match rules.action {
        Action::Allow => matched,
        Action::Deny => !matched,
    }
}

/// Whether some principal of `rules` matches the names in a peer certificate (so they must be read).
pub fn reads_certificates(rules: &Rules) -> bool {
    rules
        .policies
        .iter()
        .flat_map(|p| &p.principals)
        .any(reads_certificate)
}

fn reads_certificate(p: &Principal) -> bool {
    match p {
        Principal::Authenticated(m) => m.is_some(),
        Principal::And(v) | Principal::Or(v) => v.iter().any(reads_certificate),
        Principal::Not(p) => reads_certificate(p),
        Principal::Any | Principal::RemoteIp(_) | Principal::Header(_) | Principal::UrlPath(_) => {
            false
        }
    }
}

fn policy_matches(p: &Policy, cx: &Context<'_>) -> bool {
    p.permissions.iter().any(|x| permission_matches(x, cx))
        && p.principals.iter().any(|x| principal_matches(x, cx))
}

fn permission_matches(p: &Permission, cx: &Context<'_>) -> bool {
    let port = cx.destination.map(|d| u32::from(d.port()));
    match p {
        Permission::Any => true,
        Permission::DestinationPort(want) => port == Some(u32::from(*want)),
        Permission::DestinationPortRange { start, end } => {
            port.is_some_and(|p| *start <= p && p < *end)
        }
        Permission::DestinationIp(range) => cx.destination.is_some_and(|d| range.contains(d.ip())),
        Permission::RequestedServerName(m) => m.matches(cx.server_name),
        Permission::Header(h) => cx.http.is_some_and(|r| header_matches(h, &r)),
        Permission::UrlPath(m) => url_path_matches(m, cx),
        Permission::And(v) => v.iter().all(|x| permission_matches(x, cx)),
        Permission::Or(v) => v.iter().any(|x| permission_matches(x, cx)),
        Permission::Not(x) => !permission_matches(x, cx),
    }
}

fn principal_matches(p: &Principal, cx: &Context<'_>) -> bool {
    match p {
        Principal::Any => true,
        Principal::Authenticated(m) => match (cx.tls, m) {
            (None, _) => false,
            (Some(_), None) => true,
            // Envoy's order: any URI SAN, any DNS SAN, else the subject (empty without a certificate).
            (Some(id), Some(m)) => {
                id.uri_sans.iter().any(|u| m.matches(u))
                    || id.dns_sans.iter().any(|d| m.matches(d))
                    || m.matches(&id.subject)
            }
        },
        Principal::RemoteIp(range) => range.contains(cx.peer.ip()),
        Principal::Header(h) => cx.http.is_some_and(|r| header_matches(h, &r)),
        Principal::UrlPath(m) => url_path_matches(m, cx),
        Principal::And(v) => v.iter().all(|x| principal_matches(x, cx)),
        Principal::Or(v) => v.iter().any(|x| principal_matches(x, cx)),
        Principal::Not(x) => !principal_matches(x, cx),
    }
}

fn url_path_matches(m: &StringMatcher, cx: &Context<'_>) -> bool {
    cx.http.is_some_and(|r| m.matches(r.path()))
}

/// Envoy's `HeaderMatcher` on a request: an absent header never matches a value (inverted or not), and an
/// inverted `present_match` holds when it is absent.
pub fn header_matches(h: &HeaderMatch, request: &HttpRequest<'_>) -> bool {
    use std::borrow::Cow;
    let value: Option<Cow<'_, str>> = match h.name.as_str() {
        ":authority" => Some(Cow::Borrowed(request.authority)),
        ":method" => Some(Cow::Borrowed(request.method)),
        ":path" => Some(Cow::Borrowed(request.path_and_query)),
        ":scheme" => Some(Cow::Borrowed(request.scheme)),
        name => crate::header_value(request.headers, name),
    };
    let value = value.as_deref();
    match (&h.value, value) {
        (ValueMatch::Present, v) => v.is_some() != h.invert,
        (ValueMatch::String(_), None) => false,
        (ValueMatch::String(s), Some(v)) => s.matches(v) != h.invert,
    }
}

#[cfg(test)]
mod tests;
