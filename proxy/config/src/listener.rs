//! Listeners: where the proxy accepts connections and what it runs on them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use prost::Name;
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::listener::v3 as pb;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use sextant_proto::google::protobuf::Any;

use crate::error::{Partial, at, within};
use crate::{decode_payload, duration};

/// `envoy.filters.network.http_connection_manager`.
pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
/// `envoy.filters.network.tcp_proxy`.
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// `envoy.filters.listener.original_dst`.
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
/// `envoy.filters.listener.tls_inspector`.
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
/// `envoy.filters.listener.http_inspector`.
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";

/// Envoy's default wait for listener filters (reading a TLS ClientHello, an HTTP request line).
const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

/// Which way a listener's traffic goes (for stats and, later, policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Not stated.
    Unspecified,
    /// To the workload.
    Inbound,
    /// From the workload.
    Outbound,
}

/// A listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its name (`127.0.0.1_9080`, `virtualOutbound`, …).
    pub name: String,
    /// The address it listens on (or, when not bound, the destination it stands for).
    pub address: SocketAddr,
    /// Whether the proxy binds the address itself (false: connections are handed over from a capture listener).
    pub bind: bool,
    /// Hand accepted connections to the listener of their original destination (`virtualOutbound`).
    pub use_original_dst: bool,
    /// Read the original destination of a redirected connection (`SO_ORIGINAL_DST`).
    pub original_dst: bool,
    /// Read the TLS ClientHello to choose a filter chain by SNI, ALPN and transport protocol.
    pub tls_inspector: bool,
    /// On a connection that is not TLS, peek at its first bytes for an HTTP/1 request line or HTTP/2's
    /// preface, whose protocol (`http/1.0`, `http/1.1`, `h2c`) chains then match as an application protocol.
    pub http_inspector: bool,
    /// The connections the TLS inspector is left out for (`filter_disabled`).
    pub tls_inspector_disabled: Option<Predicate>,
    /// The connections the HTTP inspector is left out for (`filter_disabled`): pilot runs it on
    /// `virtualInbound` only for the workload's ports of undeclared protocol.
    pub http_inspector_disabled: Option<Predicate>,
    /// How long listener filters may take together (`None`: no limit, Envoy's 0); what happens after depends
    /// on `continue_on_timeout`.
    pub listener_filters_timeout: Option<Duration>,
    /// Whether a connection whose listener filters time out still goes on (to the default chain).
    pub continue_on_timeout: bool,
    /// Its traffic direction.
    pub direction: Direction,
    /// Filter chains, chosen by their match.
    pub filter_chains: Vec<FilterChain>,
    /// The chain for connections no other chain matches.
    pub default_chain: Option<FilterChain>,
}

/// Which connections a listener filter is left out for (Envoy's `ListenerFilterChainMatchPredicate`), by the
/// connection's destination port (a redirected connection's original one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicate {
    /// Every connection.
    Any,
    /// A destination port in `start..end`.
    DestinationPorts {
        /// The first port of the range.
        start: i32,
        /// The port after the last.
        end: i32,
    },
    /// Any of these.
    Or(Vec<Predicate>),
    /// All of these.
    And(Vec<Predicate>),
    /// Not this.
    Not(Box<Predicate>),
}

impl Predicate {
    /// Whether a connection to `destination_port` matches.
    pub fn matches(&self, destination_port: u16) -> bool {
        match self {
            Predicate::Any => true,
            Predicate::DestinationPorts { start, end } => {
                (*start..*end).contains(&i32::from(destination_port))
            }
            Predicate::Or(all) => all.iter().any(|p| p.matches(destination_port)),
            Predicate::And(all) => all.iter().all(|p| p.matches(destination_port)),
            Predicate::Not(p) => !p.matches(destination_port),
        }
    }
}

fn predicate(p: &pb::ListenerFilterChainMatchPredicate) -> Partial<Predicate> {
    use pb::listener_filter_chain_match_predicate::Rule;
    let set = |field: &str, rules: &[pb::ListenerFilterChainMatchPredicate]| {
        if rules.len() < 2 {
            // Envoy's rule (`repeated.min_items = 2`).
            return at(
                format!("{field}.rules"),
                "a match set needs at least two rules",
            );
        }
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| within(&format!("{field}.rules[{i}]"), predicate(r)))
            .collect::<Partial<Vec<_>>>()
    };
    Ok(match &p.rule {
        Some(Rule::AnyMatch(true)) => Predicate::Any,
        Some(Rule::DestinationPortRange(r)) => Predicate::DestinationPorts {
            start: r.start,
            end: r.end,
        },
        Some(Rule::OrMatch(m)) => Predicate::Or(set("or_match", &m.rules)?),
        Some(Rule::AndMatch(m)) => Predicate::And(set("and_match", &m.rules)?),
        Some(Rule::NotMatch(inner)) => {
            Predicate::Not(Box::new(within("not_match", predicate(inner))?))
        }
        Some(Rule::AnyMatch(false)) | None => {
            return at("", "a predicate needs a rule (any_match must be true)");
        }
    })
}

/// A filter chain: which connections it takes and what it runs.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// Its name.
    pub name: String,
    /// Which connections it takes.
    pub matcher: ChainMatch,
    /// The network RBAC filters before its terminal filter, in order: each decides on the connection before
    /// the next, and one denying closes it.
    pub rbac: Vec<crate::rbac::Rbac>,
    /// The hub filter of a TCP chain (after RBAC): the connection checked when it opens, reported when it
    /// opens and closes.
    pub hub: Option<crate::mixer::HubFilter>,
    /// The terminal network filter it runs.
    pub network: Network,
    /// TLS it terminates.
    pub tls: Option<crate::tls::DownstreamTls>,
}

/// The connection properties a filter chain requires (empty: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    /// The destination port: the original destination's of a redirected connection, else the port the
    /// connection arrived on.
    pub destination_port: Option<u16>,
    /// TLS SNI names (`*.example.com` wildcards allowed), lower case.
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: String,
    /// Application protocols, any of which matches: ALPN offered in a ClientHello, or the protocol the HTTP
    /// inspector found on a plain connection.
    pub application_protocols: Vec<String>,
}

/// The network filter of a chain.
#[derive(Debug, Clone)]
pub enum Network {
    /// HTTP, routed by a route configuration.
    Http(HttpManager),
    /// Bytes, to a cluster.
    Tcp(TcpProxy),
}

/// `HttpConnectionManager`: HTTP/1.1 and HTTP/2 served, each request routed by the route configuration named.
#[derive(Debug, Clone)]
pub struct HttpManager {
    /// Prefix of its stats (`http.PREFIX.…`).
    pub stat_prefix: String,
    /// The RouteConfiguration (RDS) it routes by.
    pub route_config: String,
    /// The HTTP RBAC filters, in order; they run first, before the fault and CORS filters and the router,
    /// and the first denying answers 403.
    pub rbac: Vec<crate::rbac::HttpRbac>,
    /// The hub filter, after the RBAC filters: Check before forwarding, Report after.
    pub hub: Option<crate::mixer::HubFilter>,
    /// Whether the fault filter runs (routes' fault settings apply only then).
    pub fault: bool,
    /// Whether the CORS filter runs.
    pub cors: bool,
    /// The set-filter-state filter's own values, when it runs (routes' per-route values apply after them).
    pub filter_state: Option<crate::filter_state::SetFilterState>,
    /// Trust the connection's address as the client's, appending it to `x-forwarded-for`.
    pub use_remote_address: bool,
    /// Strip any `:port` from the host before matching virtual hosts.
    pub strip_any_host_port: bool,
}

/// `TcpProxy`: the connection's bytes to a cluster.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// Prefix of its stats (`tcp.PREFIX.…`).
    pub stat_prefix: String,
    /// The clusters and their weights (one with any weight when unweighted).
    pub clusters: Vec<(String, u32)>,
}

/// Decodes and validates a Listener resource.
pub fn decode(any: &Any) -> Result<Listener, crate::Error> {
    crate::resource::<pb::Listener, _>("Listener", any, |l| l.name.clone(), listener)
}

fn listener(l: &pb::Listener) -> Partial<Listener> {
    let address = within("address", socket_address(l.address.as_ref()))?;
    let mut original_dst = false;
    let mut tls_inspector = false;
    let mut http_inspector = false;
    let mut tls_inspector_disabled = None;
    let mut http_inspector_disabled = None;
    for (i, f) in l.listener_filters.iter().enumerate() {
        let Some(pb::listener_filter::ConfigType::TypedConfig(config)) = &f.config_type else {
            return at(
                format!("listener_filters[{i}]"),
                "a listener filter without typed_config",
            );
        };
        let is = |full_name: String| config.type_url.ends_with(&format!("/{full_name}"));
        use sextant_proto::envoy::extensions::filters::listener as filters;
        let disabled = match &f.filter_disabled {
            Some(p) => Some(within(
                &format!("listener_filters[{i}].filter_disabled"),
                predicate(p),
            )?),
            None => None,
        };
        if disabled.is_some() && f.name == ORIGINAL_DST {
            return at(
                format!("listener_filters[{i}].filter_disabled"),
                format!("{ORIGINAL_DST} cannot be left out for some connections"),
            );
        }
        match f.name.as_str() {
            ORIGINAL_DST if is(filters::original_dst::v3::OriginalDst::full_name()) => {
                original_dst = true
            }
            TLS_INSPECTOR if is(filters::tls_inspector::v3::TlsInspector::full_name()) => {
                tls_inspector = true;
                tls_inspector_disabled = disabled;
            }
            HTTP_INSPECTOR if is(filters::http_inspector::v3::HttpInspector::full_name()) => {
                http_inspector = true;
                http_inspector_disabled = disabled;
            }
            other => {
                return at(
                    format!("listener_filters[{i}]"),
                    format!(
                        "listener filter {other:?} ({}) is not implemented",
                        config.type_url
                    ),
                );
            }
        }
    }
    let filter_chains = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| within(&format!("filter_chains[{i}]"), filter_chain(c)))
        .collect::<Partial<Vec<_>>>()?;
    let default_chain = match &l.default_filter_chain {
        Some(c) => Some(within("default_filter_chain", filter_chain(c))?),
        None => None,
    };
    if filter_chains.is_empty()
        && default_chain.is_none()
        && !l.use_original_dst.as_ref().is_some_and(|b| b.value)
    {
        return at("filter_chains", "a listener with no filter chain");
    }
    let direction = match core::TrafficDirection::try_from(l.traffic_direction) {
        Ok(core::TrafficDirection::Inbound) => Direction::Inbound,
        Ok(core::TrafficDirection::Outbound) => Direction::Outbound,
        _ => Direction::Unspecified,
    };
    Ok(Listener {
        name: l.name.clone(),
        address,
        bind: l.bind_to_port.as_ref().is_none_or(|b| b.value),
        use_original_dst: l.use_original_dst.as_ref().is_some_and(|b| b.value),
        original_dst,
        tls_inspector,
        http_inspector,
        tls_inspector_disabled,
        http_inspector_disabled,
        listener_filters_timeout: match &l.listener_filters_timeout {
            // Envoy: 0 disables the timeout.
            Some(d) => {
                Some(within("listener_filters_timeout", duration(d))?).filter(|d| !d.is_zero())
            }
            None => Some(DEFAULT_LISTENER_FILTERS_TIMEOUT),
        },
        continue_on_timeout: l.continue_on_listener_filters_timeout,
        direction,
        filter_chains,
        default_chain,
    })
}

/// A socket address given as an IP and a port.
pub(crate) fn socket_address(address: Option<&core::Address>) -> Partial<SocketAddr> {
    let Some(core::Address {
        address: Some(core::address::Address::SocketAddress(s)),
    }) = address
    else {
        return at("", "an address must be a socket address");
    };
    let ip: IpAddr = s.address.parse().or_else(|_| {
        at(
            "socket_address.address",
            format!("{:?} is not an IP address", s.address),
        )
    })?;
    let Some(core::socket_address::PortSpecifier::PortValue(port)) = s.port_specifier else {
        return at("socket_address.port_value", "a port number is required");
    };
    let port = u16::try_from(port).or_else(|_| {
        at(
            "socket_address.port_value",
            format!("port {port} is out of range"),
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}

fn filter_chain(c: &pb::FilterChain) -> Partial<FilterChain> {
    let matcher = match &c.filter_chain_match {
        Some(m) => within("filter_chain_match", chain_match(m))?,
        None => ChainMatch::default(),
    };
    // Any number of RBAC filters, then one terminal filter.
    let Some((terminal, first)) = c.filters.split_last() else {
        return at("filters", "a filter chain needs a network filter");
    };
    let mut rbac = Vec::with_capacity(first.len());
    let mut hub = None;
    for (i, filter) in first.iter().enumerate() {
        let path = format!("filters[{i}]");
        let Some(pb::filter::ConfigType::TypedConfig(config)) = &filter.config_type else {
            return at(path, "a network filter without typed_config");
        };
        match filter.name.as_str() {
            crate::rbac::NETWORK_RBAC if hub.is_some() => {
                return at(
                    format!("{path}.name"),
                    "RBAC filters come before the hub filter",
                );
            }
            sextant_proto::MIXER_NETWORK_FILTER_NAME
                if config.type_url == sextant_proto::MIXER_FILTER_TYPE_URL && hub.is_none() =>
            {
                hub = Some(within(
                    &format!("{path}.typed_config"),
                    crate::mixer::hub_filter(config),
                )?);
            }
            crate::rbac::NETWORK_RBAC => rbac.push(within(
                &format!("{path}.typed_config"),
                crate::rbac::network_rbac(config),
            )?),
            HTTP_CONNECTION_MANAGER | TCP_PROXY => {
                return at(
                    format!("{path}.name"),
                    format!("{} is a terminal filter and must come last", filter.name),
                );
            }
            other => {
                return at(
                    format!("{path}.name"),
                    format!(
                        "network filter {other:?} is not implemented before the terminal filter"
                    ),
                );
            }
        }
    }
    let last = first.len();
    let Some(pb::filter::ConfigType::TypedConfig(config)) = &terminal.config_type else {
        return at(
            format!("filters[{last}]"),
            "a network filter without typed_config",
        );
    };
    let typed = format!("filters[{last}].typed_config");
    let network = match terminal.name.as_str() {
        HTTP_CONNECTION_MANAGER => Network::Http(within(&typed, http_manager(config))?),
        TCP_PROXY => Network::Tcp(within(&typed, tcp_proxy(config))?),
        crate::rbac::NETWORK_RBAC => {
            return at(
                format!("filters[{last}].name"),
                format!("a filter chain must end in {TCP_PROXY} or {HTTP_CONNECTION_MANAGER}"),
            );
        }
        other => {
            return at(
                format!("filters[{last}].name"),
                format!("network filter {other:?} is not implemented"),
            );
        }
    };
    if hub.is_some() && !matches!(network, Network::Tcp(_)) {
        return at(
            "filters",
            format!(
                "{} is for {TCP_PROXY} chains; HTTP takes {}",
                sextant_proto::MIXER_NETWORK_FILTER_NAME,
                sextant_proto::MIXER_FILTER_NAME
            ),
        );
    }
    let tls = match &c.transport_socket {
        Some(t) => Some(within("transport_socket", crate::tls::downstream(t))?),
        None => None,
    };
    Ok(FilterChain {
        name: c.name.clone(),
        matcher,
        rbac,
        hub,
        network,
        tls,
    })
}

fn chain_match(m: &pb::FilterChainMatch) -> Partial<ChainMatch> {
    let destination_port = match &m.destination_port {
        // Envoy's rule (`uint32 = {gte: 1, lte: 65535}`).
        Some(p) => match u16::try_from(p.value) {
            Ok(port) if port != 0 => Some(port),
            _ => {
                return at(
                    "destination_port",
                    format!("destination port {} is not in 1..=65535", p.value),
                );
            }
        },
        None => None,
    };
    Ok(ChainMatch {
        destination_port,
        server_names: m
            .server_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        transport_protocol: m.transport_protocol.clone(),
        application_protocols: m.application_protocols.clone(),
    })
}

fn http_manager(config: &Any) -> Partial<HttpManager> {
    let m: hcm::HttpConnectionManager = decode_payload(config)?;
    let Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) = &m.route_specifier else {
        return at("rds", "routes must come over RDS");
    };
    let (mut fault, mut cors, mut router) = (false, false, false);
    let mut rbac = Vec::new();
    let mut hub = None;
    let mut filter_state = None;
    for (i, f) in m.http_filters.iter().enumerate() {
        let path = format!("http_filters[{i}]");
        if router {
            return at(path, "the router filter must be the last HTTP filter");
        }
        let Some(hcm::http_filter::ConfigType::TypedConfig(config)) = &f.config_type else {
            return at(path, "an HTTP filter without typed_config");
        };
        let is = |full_name: String| config.type_url.ends_with(&format!("/{full_name}"));
        use sextant_proto::envoy::extensions::filters::http as filters;
        match f.name.as_str() {
            // RBAC runs before the fault and CORS filters here, so it must come before them in the list.
            crate::rbac::HTTP_RBAC if fault || cors || hub.is_some() => {
                return at(
                    path,
                    format!(
                        "{} must come before the hub, fault and CORS filters",
                        f.name
                    ),
                );
            }
            crate::rbac::HTTP_RBAC => rbac.push(within(
                &format!("{path}.typed_config"),
                crate::rbac::http_rbac(config),
            )?),
            sextant_proto::MIXER_FILTER_NAME
                if config.type_url == sextant_proto::MIXER_FILTER_TYPE_URL =>
            {
                // The hub filter runs after RBAC and before the fault and CORS filters.
                if fault || cors || hub.is_some() {
                    return at(
                        path,
                        "the hub filter comes once, before the fault and CORS filters",
                    );
                }
                hub = Some(within(
                    &format!("{path}.typed_config"),
                    crate::mixer::hub_filter(config),
                )?);
            }
            // Order does not matter before the router: what it sets is read when the request is forwarded.
            crate::filter_state::SET_FILTER_STATE if filter_state.is_some() => {
                return at(path, format!("{} comes once", f.name));
            }
            crate::filter_state::SET_FILTER_STATE => {
                filter_state = Some(within(
                    &format!("{path}.typed_config"),
                    crate::filter_state::set_filter_state(config),
                )?)
            }
            "envoy.filters.http.fault" if is(filters::fault::v3::HttpFault::full_name()) => {
                fault = true
            }
            "envoy.filters.http.cors" if is(filters::cors::v3::Cors::full_name()) => cors = true,
            "envoy.filters.http.router" if is(filters::router::v3::Router::full_name()) => {
                router = true
            }
            other => {
                return at(
                    path,
                    format!(
                        "HTTP filter {other:?} ({}) is not implemented",
                        config.type_url
                    ),
                );
            }
        }
    }
    if !router {
        return at("http_filters", "the router filter is missing");
    }
    Ok(HttpManager {
        stat_prefix: m.stat_prefix.clone(),
        route_config: rds.route_config_name.clone(),
        rbac,
        hub,
        fault,
        cors,
        filter_state,
        use_remote_address: m.use_remote_address.as_ref().is_some_and(|b| b.value),
        strip_any_host_port: matches!(
            m.strip_port_mode,
            Some(hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true))
        ),
    })
}

fn tcp_proxy(config: &Any) -> Partial<TcpProxy> {
    let t: tcp::TcpProxy = decode_payload(config)?;
    let clusters = match &t.cluster_specifier {
        Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 1)],
        Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
            // Envoy's rule (`uint32.gte = 1`): a TCP proxy's cluster weight is at least 1.
            if let Some(i) = w.clusters.iter().position(|c| c.weight == 0) {
                return at(
                    format!("weighted_clusters.clusters[{i}].weight"),
                    "a TCP proxy's cluster weight must be at least 1",
                );
            }
            w.clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight))
                .collect()
        }
        None => return at("cluster", "a TCP proxy needs a cluster"),
    };
    if clusters.is_empty() {
        return at("weighted_clusters", "a TCP proxy needs a cluster");
    }
    Ok(TcpProxy {
        stat_prefix: t.stat_prefix.clone(),
        clusters,
    })
}

impl Listener {
    /// The name of its stats (`listener.NAME.…`): Envoy's `IP_PORT` form of its address.
    pub fn stat_name(&self) -> String {
        format!("{}_{}", self.address.ip(), self.address.port())
    }

    /// The SDS secrets its chains refer to.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.filter_chains
            .iter()
            .chain(self.default_chain.as_ref())
            .filter_map(|c| c.tls.as_ref())
            .flat_map(|t| t.context.secrets())
    }

    /// The route configurations its HTTP chains route by.
    pub fn route_configs(&self) -> impl Iterator<Item = &str> {
        self.filter_chains
            .iter()
            .chain(self.default_chain.as_ref())
            .filter_map(|c| match &c.network {
                Network::Http(h) => Some(h.route_config.as_str()),
                Network::Tcp(_) => None,
            })
    }
}
