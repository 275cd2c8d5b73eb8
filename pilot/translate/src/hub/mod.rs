//! The hub, as sidecars call it (Istio's `mixerCheckServer`/`mixerReportServer`): `--hub-service HOST:PORT`
//! names a service port of the registry ([`service`]), and every sidecar gets its cluster and, in each HTTP
//! connection manager, what calls it.
//!
//! - The cluster `outbound|PORT||HOST` (with its EDS), whatever the sidecar's `Sidecar` imports, speaking
//!   HTTP/2 upstream whatever the port's declared protocol ([`crate::cluster::add_hub`]).
//! - Sextant proxies: the hub filter `sextant.filters.http.mixer` ([`attributes`]), after the RBAC filters:
//!   on inbound connection managers Check and Report with the `destination.*` attributes of the workload
//!   (and of the service serving the port, when exactly one does), on outbound ones Report only with the
//!   `source.*` attributes.
//! - Envoy sidecars: the hub's Envoy front doors ([`envoy`]): on inbound connection managers
//!   `envoy.filters.http.ext_authz` after the RBAC filters, the same `destination.*` string attributes as
//!   the route configuration's `context_extensions`; on inbound and outbound ones a gRPC access log
//!   (`inbound` / `outbound`) to the hub's access-log service.
//!
//! Until the registry has the service port, nothing of this is emitted; it starts with the first
//! translation that finds it. Routers and proxyless gRPC clients never get it.

pub mod attributes;
pub mod envoy;
pub mod service;

use std::collections::BTreeMap;

use pilot_config::RegistrySnapshot;
use pilot_xds::build;
use prost::Message;
use sextant_proto::envoy::config::core::v3::TrafficDirection;
use sextant_proto::envoy::config::listener::v3::{FilterChain, filter};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager,
};

use crate::filters::Listeners;
use crate::hub::service::Hub;
use crate::names::{HTTP_RBAC_FILTER, TCP_PROXY_FILTER, port_of_cluster};
use crate::{DataPlane, ProxyInfo};

/// Which way a connection manager's requests go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    /// To the workload, on its port (when known).
    Inbound(Option<u16>),
    /// From the workload.
    Outbound,
}

/// Adds the hub's filters to every HTTP connection manager of a sidecar's `listeners` (inbound: by
/// `traffic_direction`), and for Envoy the `context_extensions` to its inbound route configurations.
pub fn place(
    listeners: &mut Listeners,
    hub: &Hub<'_>,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    trust_domain: &str,
) {
    let facts = attributes::Facts::of(proxy, registry, trust_domain);
    let mut placed = Placed::default();
    for l in &mut listeners.listeners {
        let inbound = l.traffic_direction == TrafficDirection::Inbound as i32;
        for c in (l.filter_chains.iter_mut()).chain(l.default_filter_chain.as_mut()) {
            place_in_chain(c, inbound, hub, &facts, &mut placed);
        }
    }
    if proxy.data_plane == DataPlane::Envoy {
        for rc in &mut listeners.routes {
            let Some(port) = port_of_cluster(&rc.name) else {
                continue;
            };
            let config = envoy::per_route(&facts.inbound(Some(port)));
            for vh in &mut rc.virtual_hosts {
                (vh.typed_per_filter_config).insert(envoy::EXT_AUTHZ_FILTER.into(), config.clone());
            }
        }
    }
}

/// The filters built so far, by direction: one per inbound port, one for outbound.
#[derive(Default)]
struct Placed {
    filters: BTreeMap<Direction, Option<HttpFilter>>,
}

/// The hub's filters in `c`'s connection manager, when it ends with one.
fn place_in_chain(
    c: &mut FilterChain,
    inbound: bool,
    hub: &Hub<'_>,
    facts: &attributes::Facts<'_>,
    placed: &mut Placed,
) {
    if c.filters.last().is_some_and(|f| f.name == TCP_PROXY_FILTER) {
        place_in_tcp_chain(c, inbound, hub, facts);
        return;
    }
    let Some(f) = c.filters.last_mut().filter(|f| f.name == build::HCM_FILTER) else {
        return;
    };
    let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
        return;
    };
    // Pilot's own connection manager: it always decodes; one that did not would be left as it is.
    let Ok(mut manager) = HttpConnectionManager::decode(any.value.as_slice()) else {
        return;
    };
    let direction = if inbound {
        let route = match &manager.route_specifier {
            Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
                rds.route_config_name.as_str()
            }
            _ => "",
        };
        Direction::Inbound(port_of_cluster(route))
    } else {
        Direction::Outbound
    };
    let filter = placed
        .filters
        .entry(direction)
        .or_insert_with(|| http_filter(direction, hub, facts))
        .clone();
    if let Some(filter) = filter {
        // After the RBAC filters (a denied request never reaches the hub), before fault, CORS and router.
        let at = (manager.http_filters.iter())
            .position(|f| f.name != HTTP_RBAC_FILTER)
            .unwrap_or(manager.http_filters.len());
        manager.http_filters.insert(at, filter);
    }
    if facts.proxy.data_plane == DataPlane::Envoy {
        let log_name = match direction {
            Direction::Inbound(_) => "inbound",
            Direction::Outbound => "outbound",
        };
        manager.access_log.push(envoy::access_log(log_name, hub));
    }
    any.value = manager.encode_to_vec();
}

/// The hub's filters in a TCP chain: for Sextant proxies the network hub filter right before `tcp_proxy`
/// (after the network RBAC filters), checking inbound connections; for Envoy a TCP gRPC access log.
fn place_in_tcp_chain(
    c: &mut FilterChain,
    inbound: bool,
    hub: &Hub<'_>,
    facts: &attributes::Facts<'_>,
) {
    let port = (c.filter_chain_match.as_ref())
        .and_then(|m| m.destination_port)
        .and_then(|p| u16::try_from(p.value).ok());
    match facts.proxy.data_plane {
        DataPlane::Sextant => {
            let (attributes, check) = if inbound {
                (facts.inbound(port), true)
            } else {
                (facts.outbound(), false)
            };
            let filter = attributes::mixer_network_filter(&hub.cluster, &attributes, check);
            let at = c.filters.len() - 1;
            c.filters.insert(at, filter);
        }
        DataPlane::Envoy => {
            let Some(last) = c.filters.last_mut() else {
                return;
            };
            let Some(filter::ConfigType::TypedConfig(any)) = &mut last.config_type else {
                return;
            };
            use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
            let Ok(mut tcp) = TcpProxy::decode(any.value.as_slice()) else {
                return;
            };
            let log_name = if inbound { "inbound" } else { "outbound" };
            tcp.access_log.push(envoy::tcp_access_log(log_name, hub));
            any.value = tcp.encode_to_vec();
        }
    }
}

/// The HTTP filter calling the hub for `direction`: the Sextant proxy's hub filter, or Envoy's ext_authz
/// (inbound only: Envoy's outbound requests are only reported, through the access log).
fn http_filter(
    direction: Direction,
    hub: &Hub<'_>,
    facts: &attributes::Facts<'_>,
) -> Option<HttpFilter> {
    match (facts.proxy.data_plane, direction) {
        (DataPlane::Sextant, Direction::Inbound(port)) => Some(attributes::mixer_filter(
            &hub.cluster,
            &facts.inbound(port),
            true,
        )),
        (DataPlane::Sextant, Direction::Outbound) => Some(attributes::mixer_filter(
            &hub.cluster,
            &facts.outbound(),
            false,
        )),
        (DataPlane::Envoy, Direction::Inbound(_)) => Some(envoy::ext_authz(hub)),
        (DataPlane::Envoy, Direction::Outbound) => None,
    }
}
