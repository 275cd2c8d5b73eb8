//! Envoy resources the tests build on: a sidecar's port listener and its HTTP connection manager.

use prost::{Message, Name};
use proxy_config::listener;
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::listener::v3 as lds;
use sextant_proto::envoy::extensions::filters::http::router::v3::Router;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::google::protobuf::Any;

/// `m` packed as an `Any`.
pub fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// An HTTP connection manager routing by RDS `9080` with the router filter.
pub fn manager() -> hcm::HttpConnectionManager {
    hcm::HttpConnectionManager {
        stat_prefix: "127.0.0.1_9080".into(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(core::ConfigSource {
                    config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                        core::AggregatedConfigSource {},
                    )),
                    resource_api_version: core::ApiVersion::V3 as i32,
                    ..Default::default()
                }),
                route_config_name: "9080".into(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                &Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The sidecar listener `127.0.0.1_9080` with one chain running `manager`.
pub fn listener_with(manager: &hcm::HttpConnectionManager) -> lds::Listener {
    lds::Listener {
        name: "127.0.0.1_9080".into(),
        address: Some(core::Address {
            address: Some(core::address::Address::SocketAddress(core::SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(core::socket_address::PortSpecifier::PortValue(9080)),
                ..Default::default()
            })),
        }),
        filter_chains: vec![lds::FilterChain {
            filters: vec![lds::Filter {
                name: listener::HTTP_CONNECTION_MANAGER.into(),
                config_type: Some(lds::filter::ConfigType::TypedConfig(any(manager))),
            }],
            ..Default::default()
        }],
        traffic_direction: core::TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}
