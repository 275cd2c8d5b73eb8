//! Builders for the Envoy resources pilot emits: an EDS cluster fed over ADS and its assignment, and an HTTP
//! listener whose connection manager takes its routes over RDS and ends with the router filter (the shape
//! both Envoy and gRPC's proxyless client accept).

use std::net::SocketAddr;

use prost::{Message, Name};
use sextant_proto::envoy::config::cluster::v3::{Cluster, cluster};
use sextant_proto::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address,
    config_source, socket_address,
};
use sextant_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use sextant_proto::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, Listener, filter,
};
use sextant_proto::envoy::extensions::filters::http::router::v3::Router;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use sextant_proto::google::protobuf::{Any, Duration, UInt32Value};

/// The name Envoy knows the HTTP connection manager by.
pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
/// The name Envoy knows the router filter by.
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// Packs a message.
pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// "Over the ADS stream, v3".
pub fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A TCP socket address.
pub fn address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// A cluster whose endpoints come over ADS (EDS), under its own name.
pub fn eds_cluster(name: &str, connect_timeout_ms: u32) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        connect_timeout: Some(Duration {
            seconds: i64::from(connect_timeout_ms / 1000),
            nanos: i32::try_from((connect_timeout_ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        ..Default::default()
    }
}

/// The assignment of `cluster`: each endpoint with its weight.
pub fn assignment(cluster: &str, endpoints: &[(SocketAddr, u32)]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: endpoints
                .iter()
                .map(|(addr, weight)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(address(*addr)),
                        ..Default::default()
                    })),
                    load_balancing_weight: Some(UInt32Value {
                        value: (*weight).max(1),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An HTTP connection manager taking route configuration `route` over RDS, ending with the router.
pub fn http_connection_manager(stat_prefix: &str, route: &str) -> HttpConnectionManager {
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: route.to_string(),
        })),
        http_filters: vec![HttpFilter {
            name: ROUTER_FILTER.to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener on `addr` serving HTTP with routes `route` from RDS.
pub fn http_listener(name: &str, addr: SocketAddr, route: &str) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(address(addr)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM_FILTER.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(
                    &http_connection_manager(name, route),
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The `api_listener` form gRPC's proxyless client resolves `xds:///NAME` with.
pub fn api_listener(name: &str, route: &str) -> Listener {
    Listener {
        name: name.to_string(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(&http_connection_manager(name, route))),
        }),
        ..Default::default()
    }
}

/// An HTTP filter named `name` configured by `config`.
pub fn http_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// Like [`http_connection_manager`], with `filters` before the router (which stays last).
pub fn http_connection_manager_with(
    stat_prefix: &str,
    route: &str,
    filters: Vec<HttpFilter>,
) -> HttpConnectionManager {
    let mut hcm = http_connection_manager(stat_prefix, route);
    let router = std::mem::take(&mut hcm.http_filters);
    hcm.http_filters = filters;
    hcm.http_filters.extend(router);
    hcm
}

/// A network filter named `name` configured by `config`.
pub fn network_filter(name: &str, config: Any) -> Filter {
    Filter {
        name: name.to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(config)),
    }
}
