//! `DestinationRule`: subsets of a service and the policies traffic to it follows.

use schemars::JsonSchema;
use serde::Deserialize;

use super::common::PortSelector;
use super::labels::Labels;
use crate::duration::Duration;

/// The spec of a `DestinationRule`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    /// The service (a short name resolves in the resource's namespace).
    pub host: String,
    /// Policies for all the service's traffic.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of the service's endpoints, selected by labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Namespaces this resource is visible to (`.` for its own, `*` for all, the default).
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// A named group of endpoints (`v1`: the endpoints labelled `version: v1`).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// The name routes refer to.
    pub name: String,
    /// The labels an endpoint must all carry to be in the subset.
    #[serde(default)]
    pub labels: Labels,
    /// Policies for this subset, overriding the rule's.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// How traffic to a service is balanced, pooled, ejected and secured.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits (circuit breaking).
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing endpoints.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS towards the service.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    /// Overrides for single ports.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// Policies for one port, overriding the rule's.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The port.
    #[serde(default)]
    pub port: Option<PortSelector>,
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing endpoints.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS towards the port.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
}

/// Load balancing: one simple algorithm or consistent hashing.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// A simple algorithm.
    #[serde(default)]
    pub simple: Option<SimpleLb>,
    /// Consistent hashing (session affinity).
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHash>,
}

/// Simple load-balancing algorithms.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    /// The proxy's default (least request).
    Unspecified,
    /// Least connections (Istio's older name for least request).
    LeastConn,
    /// Random.
    Random,
    /// Forward to the address the caller asked for.
    Passthrough,
    /// Round robin.
    RoundRobin,
    /// Least outstanding requests.
    LeastRequest,
}

/// Consistent hashing on one property of the request.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    /// Hash a header.
    #[serde(default)]
    pub http_header_name: Option<String>,
    /// Hash a cookie (generated when absent and `ttl` is set).
    #[serde(default)]
    pub http_cookie: Option<HttpCookie>,
    /// Hash the source IP.
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    /// Hash a query parameter.
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    /// Minimum size of the hash ring.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// The cookie consistent hashing uses.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie path.
    #[serde(default)]
    pub path: Option<String>,
    /// Lifetime of a generated cookie.
    #[serde(default)]
    pub ttl: Option<Duration>,
}

/// Connection limits.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

/// TCP connection limits.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Connections to the service at most.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Timeout of connection establishment.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// Lifetime of a connection.
    #[serde(default)]
    pub max_connection_duration: Option<Duration>,
}

/// HTTP request limits.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Requests waiting for a connection at most.
    #[serde(default, rename = "http1MaxPendingRequests")]
    pub http1_max_pending_requests: Option<u32>,
    /// Concurrent requests at most.
    #[serde(default, rename = "http2MaxRequests")]
    pub http2_max_requests: Option<u32>,
    /// Requests per connection at most (1 disables keep-alive).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// Concurrent retries at most.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Close a connection idle this long.
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
}

/// Ejection of endpoints that keep failing.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Consecutive 5xx answers that eject an endpoint.
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Consecutive 502/503/504 answers or connection failures that eject an endpoint.
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    /// Time between ejection sweeps.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Minimum ejection time, multiplied by the number of ejections.
    #[serde(default)]
    pub base_ejection_time: Option<Duration>,
    /// Share of the endpoints that may be ejected, in percent.
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
    /// Below this share of healthy endpoints, ejection stops, in percent.
    #[serde(default)]
    pub min_health_percent: Option<u32>,
}

/// TLS modes towards a service.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Plain text.
    Disable,
    /// TLS, server certificate checked.
    Simple,
    /// TLS with a client certificate.
    Mutual,
    /// Mutual TLS with the mesh's own certificates.
    IstioMutual,
}

/// TLS towards a service.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// The mode.
    pub mode: TlsMode,
    /// Client certificate file (MUTUAL).
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// Client private key file (MUTUAL).
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA certificates file to check the server.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// Name of a secret holding the certificates.
    #[serde(default)]
    pub credential_name: Option<String>,
    /// Names the server certificate must carry.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// SNI sent.
    #[serde(default)]
    pub sni: Option<String>,
    /// Do not check the server certificate.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
}
