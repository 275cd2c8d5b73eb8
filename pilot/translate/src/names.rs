//! The names modules share, so that none reaches into another for one: Istio's names of the clusters
//! pilot makes besides the services' (`BlackHoleCluster`, `PassthroughCluster`, `InboundPassthroughCluster`,
//! the workload's `inbound|PORT||`), the names Envoy knows the filters pilot places by, and the application
//! protocols the HTTP inspector reports.

/// Where traffic nobody routes goes to die (a cluster without endpoints).
pub const BLACK_HOLE: &str = "BlackHoleCluster";
/// Traffic to destinations outside the registry, forwarded to the original destination.
pub const PASSTHROUGH: &str = "PassthroughCluster";
/// Inbound traffic forwarded to the workload at its original destination.
pub const INBOUND_PASSTHROUGH: &str = "InboundPassthroughCluster";

/// The cluster of the workload's `port`: `inbound|PORT||`.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The workload's port of an inbound cluster (and route configuration) name `inbound|PORT||`.
pub fn port_of_cluster(name: &str) -> Option<u16> {
    name.strip_prefix("inbound|")?
        .strip_suffix("||")?
        .parse()
        .ok()
}

/// The name Envoy knows the TCP proxy by.
pub const TCP_PROXY_FILTER: &str = "envoy.filters.network.tcp_proxy";
/// The name Envoy knows the HTTP inspector (which tells HTTP from other bytes) by.
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// The name Envoy knows the TLS inspector (which reads SNI) by.
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// The name Envoy knows the network RBAC filter by.
pub const RBAC_FILTER: &str = "envoy.filters.network.rbac";
/// The name Envoy knows the HTTP RBAC filter by.
pub const HTTP_RBAC_FILTER: &str = "envoy.filters.http.rbac";
/// The name Envoy knows the fault filter by.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The name Envoy knows the CORS filter by.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// The application protocols the HTTP inspector reports for plain-text HTTP, which sniffed HTTP chains
/// match.
pub const SNIFFED_HTTP: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];
