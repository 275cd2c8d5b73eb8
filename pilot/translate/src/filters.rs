//! The pieces listeners are built from, shared by the sidecar's listeners ([`crate::listener`]), the
//! workload's own ports ([`crate::inbound`]), their inbound security ([`crate::authz`]) and routers'
//! listeners ([`crate::gateway`]): the HTTP and TLS inspectors, a connection manager taking routes over RDS,
//! a TCP proxy to a route's clusters, a filter chain chosen by SNI; and [`Listeners`], what listener
//! assembly makes and the passes after it ([`crate::alpn`], [`crate::hub`]) edit.

use pilot_config::{Protocol, RegistrySnapshot, RouteTarget};
use pilot_xds::build;
use sextant_proto::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    ListenerFilterChainMatchPredicate, listener_filter,
};
use sextant_proto::envoy::config::route::v3::RouteConfiguration;
use sextant_proto::envoy::extensions::filters::http::cors::v3::Cors;
use sextant_proto::envoy::extensions::filters::http::fault::v3::HttpFault;
use sextant_proto::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use sextant_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};

use crate::names::{CORS_FILTER, FAULT_FILTER, HTTP_INSPECTOR, TCP_PROXY_FILTER, TLS_INSPECTOR};
use crate::route::target_cluster;

/// Listeners and the route configurations they name.
#[derive(Debug, Default)]
pub struct Listeners {
    /// Every listener.
    pub listeners: Vec<Listener>,
    /// One route configuration per HTTP port a listener routes.
    pub routes: Vec<RouteConfiguration>,
}

/// Whether a port's protocol is routed by HTTP (rather than proxied as bytes).
pub fn is_http(p: Protocol) -> bool {
    matches!(
        p,
        Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
    )
}

/// The HTTP inspector, left out for the connections `disabled` matches (Envoy's `filter_disabled`).
pub(crate) fn http_inspector(
    disabled: Option<ListenerFilterChainMatchPredicate>,
) -> ListenerFilter {
    ListenerFilter {
        name: HTTP_INSPECTOR.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(build::any(
            &HttpInspector::default(),
        ))),
        filter_disabled: disabled,
    }
}

/// The listener filter that reads a connection's TLS ClientHello (SNI, ALPN) for filter chain matching.
pub(crate) fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(build::any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

/// A connection manager routing with `route` over RDS: fault, CORS (when `cors`), router.
pub(crate) fn hcm_named(stat_prefix: &str, route: &str, cors: bool) -> HttpConnectionManager {
    let mut filters = vec![build::http_filter(
        FAULT_FILTER,
        build::any(&HttpFault::default()),
    )];
    if cors {
        filters.push(build::http_filter(
            CORS_FILTER,
            build::any(&Cors::default()),
        ));
    }
    build::http_connection_manager_with(stat_prefix, route, filters)
}

/// A `tcp_proxy` filter forwarding to `clusters`.
pub(crate) fn tcp_forward(stat_prefix: &str, clusters: tcp_proxy::ClusterSpecifier) -> Filter {
    build::network_filter(
        TCP_PROXY_FILTER,
        build::any(&TcpProxy {
            stat_prefix: stat_prefix.to_string(),
            cluster_specifier: Some(clusters),
            ..Default::default()
        }),
    )
}

/// The clusters a TCP route's `destinations` name for `port` (weighted when more than one); `None` when
/// there are none. Destinations of weight 0 are left out, as Istio does (Envoy's TCP proxy refuses a
/// weight below 1).
pub(crate) fn tcp_clusters(
    destinations: &[RouteTarget],
    registry: &RegistrySnapshot,
    port: u16,
) -> Option<tcp_proxy::ClusterSpecifier> {
    let destinations: Vec<&RouteTarget> = destinations.iter().filter(|t| t.weight > 0).collect();
    match destinations.as_slice() {
        [] => None,
        [one] => Some(tcp_proxy::ClusterSpecifier::Cluster(
            target_cluster(one, registry, port).0,
        )),
        many => Some(tcp_proxy::ClusterSpecifier::WeightedClusters(
            tcp_proxy::WeightedCluster {
                clusters: many
                    .iter()
                    .map(|t| tcp_proxy::weighted_cluster::ClusterWeight {
                        name: target_cluster(t, registry, port).0,
                        weight: t.weight,
                        ..Default::default()
                    })
                    .collect(),
            },
        )),
    }
}

/// A filter chain forwarding TLS for the SNI `names` not yet `claimed` untouched to `clusters` (Envoy
/// refuses two chains matching one name: the first to claim it keeps it); `None` when all were claimed.
pub(crate) fn sni_chain(
    claimed: &mut std::collections::BTreeSet<String>,
    names: &[String],
    stat_prefix: &str,
    clusters: &tcp_proxy::ClusterSpecifier,
) -> Option<FilterChain> {
    let names: Vec<String> = (names.iter())
        .filter(|n| claimed.insert((*n).clone()))
        .cloned()
        .collect();
    (!names.is_empty()).then(|| FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            server_names: names,
            ..Default::default()
        }),
        filters: vec![tcp_forward(stat_prefix, clusters.clone())],
        ..Default::default()
    })
}
