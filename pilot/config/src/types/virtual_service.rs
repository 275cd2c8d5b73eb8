//! `VirtualService`: how requests to a set of hosts are routed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::common::{Destination, Headers, Percent, StringMatch};
use super::labels::Labels;
use crate::duration::Duration;

/// The spec of a `VirtualService`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// The hosts this routing applies to (short names resolve in the resource's namespace; `*` for any).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The gateways (`namespace/name` or a name in this namespace) the routes apply at; `mesh` means the
    /// sidecars, which is the default when the list is empty.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// HTTP routes, tried in order; the first whose match holds decides.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// TCP routes, tried in order.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Routes for TLS connections passed through untouched, chosen by SNI (at gateways with PASSTHROUGH
    /// servers).
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Namespaces this resource is visible to (`.` for its own, `*` for all, the default).
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One HTTP route: conditions and what to do with a request that meets them.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// A name, for logs and stats.
    #[serde(default)]
    pub name: Option<String>,
    /// Conditions, any of which selects this route; none means every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatch>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Answer with a redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<HttpRedirect>,
    /// Rewrite the path or authority before forwarding.
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    /// Timeout of the whole request, retries included.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// Faults injected (delays, aborts).
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Also send a copy of each request here, ignoring the answer.
    #[serde(default)]
    pub mirror: Option<Destination>,
    /// The share of requests mirrored (100 when absent and `mirror` is set).
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Cross-origin resource sharing policy.
    #[serde(default)]
    pub cors_policy: Option<CorsPolicy>,
    /// Header edits for every destination of this route.
    #[serde(default)]
    pub headers: Option<Headers>,
}

/// Conditions on an HTTP request; all the written ones must hold.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// A name, for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// The path.
    #[serde(default)]
    pub uri: Option<StringMatch>,
    /// The URI scheme (`http`, `https`).
    #[serde(default)]
    pub scheme: Option<StringMatch>,
    /// The method (`GET`, …).
    #[serde(default)]
    pub method: Option<StringMatch>,
    /// The authority (`Host`).
    #[serde(default)]
    pub authority: Option<StringMatch>,
    /// Request headers (lower-case names); `{}` checks presence.
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Query parameters.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
    /// The destination port the request was sent to.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: Labels,
    /// The namespace of the calling workload.
    #[serde(default)]
    pub source_namespace: Option<String>,
    /// Gateways this condition applies at (overrides the VirtualService's).
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Match `uri` case-insensitively.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must not match (or, with `{}`, must be absent).
    #[serde(default)]
    pub without_headers: BTreeMap<String, StringMatch>,
}

/// A destination with its share of traffic.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send.
    pub destination: Destination,
    /// Share of the route's traffic, in percent; all the weights of a route sum to 100.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Header edits for this destination only.
    #[serde(default)]
    pub headers: Option<Headers>,
}

/// An HTTP redirect answered by the proxy.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// The new path.
    #[serde(default)]
    pub uri: Option<String>,
    /// The new authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// The new port.
    #[serde(default)]
    pub port: Option<u32>,
    /// The new scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// The status code (301 when absent).
    #[serde(default)]
    pub redirect_code: Option<u32>,
}

/// Rewrites applied before forwarding.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replaces the matched part of the path (the prefix, or the whole path).
    #[serde(default)]
    pub uri: Option<String>,
    /// Replaces the authority (`Host`).
    #[serde(default)]
    pub authority: Option<String>,
}

/// Retry policy.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// How many retries at most.
    #[serde(default)]
    pub attempts: u32,
    /// Timeout of each try.
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    /// Conditions to retry on, comma-separated as Envoy spells them (`5xx,gateway-error,connect-failure`).
    #[serde(default)]
    pub retry_on: Option<String>,
}

/// Faults injected into requests, to test resilience.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Delay before forwarding.
    #[serde(default)]
    pub delay: Option<Delay>,
    /// Answer with an error instead of forwarding.
    #[serde(default)]
    pub abort: Option<Abort>,
}

/// A delay injected before forwarding.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// The share of requests delayed (all when absent).
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// How long.
    pub fixed_delay: Duration,
}

/// An error answered instead of forwarding.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// The share of requests aborted (all when absent).
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// The HTTP status answered.
    pub http_status: u32,
}

/// Cross-origin resource sharing policy.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Origins allowed.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Methods allowed (`Access-Control-Allow-Methods`).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Headers allowed (`Access-Control-Allow-Headers`).
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Headers the browser may read (`Access-Control-Expose-Headers`).
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a preflight answer may be cached.
    #[serde(default)]
    pub max_age: Option<Duration>,
    /// Whether credentials are allowed.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
}

/// A route for TLS passed through, chosen by the ClientHello's SNI.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Conditions, any of which selects this route (at least one: each names SNI hosts).
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatch>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<WeightedDestination>,
}

/// Conditions on a TLS connection.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatch {
    /// The SNI names selected (each one of the VirtualService's hosts, or within a wildcard host).
    pub sni_hosts: Vec<String>,
    /// The destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Gateways this condition applies at (overrides the VirtualService's).
    #[serde(default)]
    pub gateways: Vec<String>,
}

/// One TCP route.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Conditions, any of which selects this route; none means every connection.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4Match>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<WeightedDestination>,
}

/// Conditions on a connection.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Match {
    /// Destination addresses (IPs or CIDRs).
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// The destination port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(default)]
    pub source_labels: Labels,
    /// Gateways this condition applies at.
    #[serde(default)]
    pub gateways: Vec<String>,
}

/// A TCP destination with its share of connections.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedDestination {
    /// Where to send.
    pub destination: Destination,
    /// Share of the route's connections, in percent.
    #[serde(default)]
    pub weight: Option<u32>,
}
