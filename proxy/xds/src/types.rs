//! The type URLs the proxy subscribes to, in the order pilot pushes them.

/// Secrets (SDS).
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// Clusters (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Endpoints (EDS).
pub const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Listeners (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// Routes (RDS).
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// Types subscribed as wildcards, requested when a stream opens.
pub const WILDCARD: [&str; 2] = [CLUSTER, LISTENER];
/// Types subscribed by name, the names coming from the configuration applied.
pub const NAMED: [&str; 3] = [SECRET, ENDPOINTS, ROUTE];

/// Whether the client knows `type_url`.
pub fn known(type_url: &str) -> bool {
    WILDCARD.contains(&type_url) || NAMED.contains(&type_url)
}
