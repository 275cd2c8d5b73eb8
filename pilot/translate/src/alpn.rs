//! Telling a mesh-mTLS server that a connection carries HTTP, as Istio's sidecars do with their `istio.alpn`
//! filter: an HTTP request routed to mesh-mTLS (`ISTIO_MUTUAL`) clusters offers `istio-http/1.1` (or
//! `istio-h2` for clusters speaking HTTP/2 upstream) first in the TLS handshake's ALPN, then Istio's
//! fallbacks (`istio`, and the HTTP version's own name), instead of the clusters' `istio-peer-exchange,
//! istio`; the server's sidecar then takes the connection to its HTTP chain even on a port of undeclared
//! protocol ([`crate::inbound`]). TCP keeps `istio-peer-exchange,istio`; clusters of other TLS (a
//! DestinationRule's SIMPLE or MUTUAL, e.g. towards an external HTTPS server) keep their own ALPN.
//!
//! Stock Envoy has no `istio.alpn` filter. The same comes from its well-known filter state key
//! `envoy.network.application_protocols` (a comma-separated list overriding the cluster's ALPN on the
//! upstream handshake), set by `envoy.filters.http.set_filter_state` with `shared_with_upstream: ONCE`
//! (so the upstream connection pool is keyed by it: a connection opened with one list never serves a request
//! of another). The filter sits in the connection manager with an empty configuration, which sets nothing;
//! only routes whose destinations are all mesh-mTLS clusters of one HTTP version carry the value, as the
//! filter's per-route configuration (`typed_per_filter_config`), which Envoy applies after the listener's.
//! A route splitting traffic between mesh and other clusters (or HTTP versions) keeps the clusters' ALPN:
//! its requests reach a sniffing server as TCP, as before. `sextant proxy` implements the same filter and
//! key from the same resources.
//!
//! Istio's filter chooses by the upstream HTTP version of the request, which for pilot's clusters is fixed
//! by the port's protocol (HTTP/2 for `http2` and `grpc` ports, HTTP/1.1 for any other), so one value per
//! route says the same; `istio-http/1.0` (HTTP/1.0 upstream) never arises here.

use std::collections::{BTreeMap, BTreeSet};

use pilot_xds::build;
use prost::Message;
use sextant_proto::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use sextant_proto::envoy::config::listener::v3::filter;
use sextant_proto::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use sextant_proto::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use sextant_proto::envoy::extensions::filters::http::set_filter_state::v3::Config;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};

use crate::filters::Listeners;
use crate::names::port_of_cluster;
use crate::tls::Upstream;

/// The name Envoy knows the set-filter-state HTTP filter by (and its per-route configuration's key).
pub const SET_FILTER_STATE_FILTER: &str = "envoy.filters.http.set_filter_state";
/// Envoy's well-known filter state key overriding the upstream TLS handshake's ALPN list.
pub const APPLICATION_PROTOCOLS: &str = "envoy.network.application_protocols";

/// Gives every route of `listeners`' outbound route configurations whose destinations are all mesh-mTLS
/// clusters (`istio_mutual`, with their HTTP versions) of one HTTP version the ALPN override, and the
/// connection managers routing with such a configuration the set-filter-state filter (before the router).
/// Inbound route configurations (`inbound|PORT||`) go to the workload, never over mesh mTLS.
pub fn place(listeners: &mut Listeners, istio_mutual: &BTreeMap<String, Upstream>) {
    let mut with_override = BTreeSet::new();
    for rc in &mut listeners.routes {
        if port_of_cluster(&rc.name).is_some() {
            continue;
        }
        if set_routes(rc, istio_mutual) {
            with_override.insert(rc.name.clone());
        }
    }
    if with_override.is_empty() {
        return;
    }
    for l in &mut listeners.listeners {
        let chains = (l.filter_chains.iter_mut()).chain(l.default_filter_chain.as_mut());
        for f in chains.flat_map(|c| c.filters.iter_mut()) {
            if f.name != build::HCM_FILTER {
                continue;
            }
            let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                continue;
            };
            let Ok(mut manager) = HttpConnectionManager::decode(any.value.as_slice()) else {
                continue;
            };
            let routes = match &manager.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
                    rds.route_config_name.as_str()
                }
                _ => "",
            };
            if !with_override.contains(routes)
                || (manager.http_filters.iter()).any(|h| h.name == SET_FILTER_STATE_FILTER)
            {
                continue;
            }
            let router = (manager.http_filters.iter())
                .position(|h| h.name == build::ROUTER_FILTER)
                .unwrap_or(manager.http_filters.len());
            let filter =
                build::http_filter(SET_FILTER_STATE_FILTER, build::any(&Config::default()));
            manager.http_filters.insert(router, filter);
            any.value = manager.encode_to_vec();
        }
    }
}

/// Puts the override on the routes of `rc` going only to mesh-mTLS clusters of one HTTP version; whether
/// any route got it.
fn set_routes(rc: &mut RouteConfiguration, istio_mutual: &BTreeMap<String, Upstream>) -> bool {
    let mut any = false;
    for r in rc
        .virtual_hosts
        .iter_mut()
        .flat_map(|v| v.routes.iter_mut())
    {
        let Some(route::Action::Route(action)) = &r.action else {
            continue;
        };
        let clusters: Vec<&str> = match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => vec![c.as_str()],
            Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                w.clusters.iter().map(|c| c.name.as_str()).collect()
            }
            _ => Vec::new(),
        };
        let mut versions = clusters.iter().map(|c| istio_mutual.get(*c).copied());
        let Some(Some(first)) = versions.next() else {
            continue;
        };
        if versions.all(|v| v == Some(first)) {
            (r.typed_per_filter_config).insert(SET_FILTER_STATE_FILTER.into(), per_route(first));
            any = true;
        }
    }
    any
}

/// The set-filter-state configuration putting `upstream`'s ALPN list in the filter state, shared with the
/// upstream connection.
pub fn per_route(upstream: Upstream) -> sextant_proto::google::protobuf::Any {
    let value = FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(
            APPLICATION_PROTOCOLS.into(),
        )),
        value: Some(filter_state_value::Value::FormatString(
            SubstitutionFormatString {
                format: Some(substitution_format_string::Format::TextFormatSource(
                    DataSource {
                        specifier: Some(data_source::Specifier::InlineString(
                            upstream.alpn().into(),
                        )),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
        )),
        shared_with_upstream: filter_state_value::SharedWithUpstream::Once as i32,
        ..Default::default()
    };
    build::any(&Config {
        on_request_headers: vec![value],
        ..Default::default()
    })
}
