//! The xDS resource types pilot serves, by type URL, and the order a push sends them in.

/// `envoy.config.cluster.v3.Cluster` (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `envoy.config.listener.v3.Listener` (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `envoy.config.route.v3.RouteConfiguration` (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// `envoy.extensions.transport_sockets.tls.v3.Secret` (SDS over ADS): workload certificates and trust roots.
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every type, in push order: secrets before the clusters and listeners whose TLS uses them, clusters before
/// their endpoints, listeners before their routes, and clusters before the listeners that route to them, so
/// a proxy never points at something it does not have yet.
pub const PUSH_ORDER: [&str; 5] = [SECRET, CLUSTER, ENDPOINT, LISTENER, ROUTE];

/// The short name used in metrics and debug output (`cds`, `eds`, `lds`, `rds`, `sds`), or `other` for a type
/// pilot does not serve: a client chooses its type URLs, so they never become label values of their own.
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "cds",
        ENDPOINT => "eds",
        LISTENER => "lds",
        ROUTE => "rds",
        SECRET => "sds",
        _ => "other",
    }
}

/// Whether pilot serves `type_url` (one of [`PUSH_ORDER`]). Requests for any other type are ignored and
/// counted; a stream keeps no state for them.
pub fn is_served(type_url: &str) -> bool {
    PUSH_ORDER.contains(&type_url)
}

/// Whether a client that names no resource of this type wants all of them (LDS and CDS), rather than none.
pub fn wildcard_by_default(type_url: &str) -> bool {
    matches!(type_url, CLUSTER | LISTENER)
}

/// The position of `type_url` in [`PUSH_ORDER`] (unknown types last).
pub fn push_rank(type_url: &str) -> usize {
    PUSH_ORDER
        .iter()
        .position(|t| *t == type_url)
        .unwrap_or(PUSH_ORDER.len())
}
