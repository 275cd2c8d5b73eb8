//! Listeners and the route configurations they name ([`crate::filters::Listeners`]), assembled: the top of
//! the listener side, built from the pieces of [`crate::filters`], the workload's own ports
//! ([`crate::inbound`]), their security ([`crate::authz`]) and, for routers, the gateways'
//! ([`crate::gateway`]).
//!
//! Sidecars with iptables (`REDIRECT`) get Istio's shape: `virtualOutbound` on 0.0.0.0:15001 hands each
//! captured connection to the listener of its original destination port (`0.0.0.0_PORT`, not bound itself)
//! or passes it through; `virtualInbound` on 15006 forwards inbound connections to the workload, ending
//! mesh mTLS first when the proxy has a certificate (PERMISSIVE: plain text and other TLS pass as they
//! came, told apart by the TLS inspector and Istio's ALPN values; the workload's ports of undeclared
//! protocol are sniffed there too, the HTTP inspector running for those ports only, [`crate::inbound`]).
//! Without
//! interception (`NONE`) each port's listener binds `127.0.0.1:PORT` and applications call it. HTTP ports
//! get a connection manager taking routes `PORT` over RDS (fault, CORS, router); TCP ports a TCP proxy to
//! the service's cluster, split as its VirtualService's TCP route says. Proxyless gRPC clients get an
//! `api_listener` per `HOST:PORT` instead. Routers (gateways) get only their gateway listeners
//! ([`crate::gateway`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pilot_config::{MeshConfig, Protocol, RegistrySnapshot, Service};
use pilot_xds::build;
use sextant_proto::envoy::config::core::v3::TrafficDirection;
use sextant_proto::envoy::config::listener::v3::{
    ApiListener, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    ListenerFilterChainMatchPredicate, listener_filter,
};
use sextant_proto::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use sextant_proto::google::protobuf::BoolValue;

use crate::filters::{
    Listeners, hcm_named, http_inspector, is_http, sni_chain, tcp_clusters, tcp_forward,
    tls_inspector,
};
use crate::inbound::Inbound;
use crate::names::{BLACK_HOLE, INBOUND_PASSTHROUGH, PASSTHROUGH, SNIFFED_HTTP};
use crate::route::{RouteContext, route_configuration};
use crate::scope::Scope;
use crate::{Interception, MeshTls, ProxyInfo, ProxyKind, cluster_name, route_name};
use pilot_config::sidecar::Egress;
use pilot_config::types::{CaptureMode, OutboundMode};

/// The port iptables sends outbound connections to.
pub const OUTBOUND_CAPTURE_PORT: u16 = 15001;
/// The port iptables sends inbound connections to.
pub const INBOUND_CAPTURE_PORT: u16 = 15006;

/// The listeners (and their routes) `proxy` needs, for what `scope` imports.
pub fn listeners(
    mesh: &MeshConfig,
    registry: &RegistrySnapshot,
    scope: &Scope<'_>,
    inbound: &Inbound,
    security: &crate::authz::InboundSecurity,
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
) -> Listeners {
    if proxy.kind == ProxyKind::Router {
        return crate::gateway::listeners(mesh, registry, proxy);
    }
    let cx = RouteContext {
        mesh,
        registry,
        proxy,
        gateway: pilot_config::MESH_GATEWAY,
    };
    // Port → the services routed there as HTTP, and proxied there as TCP; a service of undeclared
    // protocol is both, and a port with both is sniffed per connection.
    let ports = scope.ports();
    let mut http: BTreeMap<u16, Vec<&Service>> = BTreeMap::new();
    let mut tcp: BTreeMap<u16, Vec<&Service>> = BTreeMap::new();
    for (port, on) in &ports {
        for (s, protocol) in &on.services {
            if is_http(*protocol) || *protocol == Protocol::Auto {
                http.entry(*port).or_default().push(s);
            }
            if !is_http(*protocol) {
                tcp.entry(*port).or_default().push(s);
            }
        }
    }
    let mut out = Listeners::default();
    for (port, services) in &http {
        out.routes
            .push(route_configuration(cx, scope, *port, services));
    }
    if proxy.kind == ProxyKind::ProxylessGrpc {
        for (port, services) in &http {
            for s in services {
                let name = format!("{}:{port}", s.hostname);
                let hcm = hcm(&name, *port, false);
                let l = Listener {
                    name,
                    api_listener: Some(ApiListener {
                        api_listener: Some(build::any(&hcm)),
                    }),
                    ..Default::default()
                };
                out.listeners.push(l);
            }
        }
        return out;
    }
    let redirect = proxy.interception == Interception::Redirect;
    let place = |port: &u16| Placement::of(proxy, ports.get(port).and_then(|p| p.egress), *port);
    for port in http.keys().filter(|p| !tcp.contains_key(p)) {
        let at = place(port);
        let chain =
            build::network_filter(build::HCM_FILTER, build::any(&hcm(&at.name, *port, true)));
        out.listeners.push(at.listener(chain));
    }
    for (port, services) in &tcp {
        let at = place(port);
        let proxy_filter = tcp_proxy(cx, scope, &at.name, services[0], *port);
        let mut listener = at.listener(proxy_filter);
        let by_sni = sni_chains(cx, scope, &at.name, *port);
        if !by_sni.is_empty() {
            listener.listener_filters.push(tls_inspector());
            // Server-first protocols send nothing for the inspector to read: they take the default chain.
            listener.continue_on_listener_filters_timeout = true;
            listener.filter_chains.splice(0..0, by_sni);
        }
        if http.contains_key(port) {
            sniff(&mut listener, &at.name, *port);
        }
        out.listeners.push(listener);
    }
    out.routes.extend(inbound.routes.iter().cloned());
    out.listeners.extend(inbound.listeners.iter().cloned());
    if redirect || !inbound.captured.is_empty() {
        let unknown = match scope.outbound {
            OutboundMode::AllowAny => PASSTHROUGH,
            OutboundMode::RegistryOnly => BLACK_HOLE,
        };
        out.listeners.push(capture(
            "virtualOutbound",
            OUTBOUND_CAPTURE_PORT,
            TrafficDirection::Outbound,
            unknown,
        ));
        let mut virtual_inbound = capture(
            "virtualInbound",
            INBOUND_CAPTURE_PORT,
            TrafficDirection::Inbound,
            INBOUND_PASSTHROUGH,
        );
        if mtls.holds_certificate(proxy) {
            terminate_mesh_tls(&mut virtual_inbound, crate::tls::SecretSource::of(proxy));
        }
        // The workload's own ports, by destination port: more specific than any other chain.
        (virtual_inbound.filter_chains).splice(0..0, inbound.captured.iter().cloned());
        if !inbound.sniffed.is_empty() {
            // The HTTP inspector for the sniffed ports only: others are read as before. Server-first
            // protocols on them send nothing to read: they go on as TCP once the filters' timeout passes.
            (virtual_inbound.listener_filters)
                .push(http_inspector(Some(other_ports(&inbound.sniffed))));
            virtual_inbound.continue_on_listener_filters_timeout = true;
        }
        crate::authz::secure_capture(&mut virtual_inbound, security);
        out.listeners.push(virtual_inbound);
    }
    out
}

/// Where a port's outbound listener is: its address, whether the proxy binds it, its name (`IP_PORT`).
struct Placement {
    name: String,
    address: SocketAddr,
    bound: bool,
}

impl Placement {
    /// With iptables the listener stands for `0.0.0.0:PORT` and is not bound (virtualOutbound hands it
    /// connections); without, it binds `127.0.0.1:PORT`. A Sidecar's egress listener can say otherwise
    /// (`captureMode`, `bind`).
    fn of(proxy: &ProxyInfo, egress: Option<&Egress>, port: u16) -> Placement {
        let captured = match egress.map_or(CaptureMode::Default, |e| e.capture) {
            CaptureMode::Default => proxy.interception == Interception::Redirect,
            CaptureMode::Iptables => true,
            CaptureMode::None => false,
        };
        let ip = egress.and_then(|e| e.bind).unwrap_or(if captured {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
        Placement {
            name: format!("{ip}_{port}"),
            address: SocketAddr::new(ip, port),
            bound: !captured,
        }
    }

    fn listener(&self, filter: Filter) -> Listener {
        Listener {
            name: self.name.clone(),
            address: Some(build::address(self.address)),
            filter_chains: vec![FilterChain {
                filters: vec![filter],
                ..Default::default()
            }],
            // Captured: virtualOutbound hands connections over; the port itself is never bound.
            bind_to_port: (!self.bound).then_some(BoolValue { value: false }),
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        }
    }
}

/// Makes a TCP port's listener sniff, as Istio's listeners for ports of undeclared protocol do: the HTTP
/// inspector reads the first bytes, plain-text HTTP/1.x and prior-knowledge HTTP/2 take a chain routing
/// with routes `PORT`, everything else the TCP chain (now the default). As Istio (protocol detection
/// timeout 0), the inspector waits for the client's first bytes however long they take: a server-first
/// protocol must be declared (`tcp-…` port name or `protocol`).
fn sniff(l: &mut Listener, stat_prefix: &str, port: u16) {
    l.default_filter_chain = l.filter_chains.pop();
    l.listener_filters.push(http_inspector(None));
    l.listener_filters_timeout = Some(Default::default());
    l.continue_on_listener_filters_timeout = true;
    l.filter_chains.push(FilterChain {
        name: format!("{stat_prefix}-http"),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: "raw_buffer".into(),
            application_protocols: SNIFFED_HTTP.map(String::from).to_vec(),
            ..Default::default()
        }),
        filters: vec![build::network_filter(
            build::HCM_FILTER,
            build::any(&hcm(stat_prefix, port, true)),
        )],
        ..Default::default()
    });
}

/// A predicate matching connections to any port but `ports` (by destination port: a redirected
/// connection's original one).
fn other_ports(ports: &std::collections::BTreeSet<u16>) -> ListenerFilterChainMatchPredicate {
    use sextant_proto::envoy::config::listener::v3::listener_filter_chain_match_predicate::{
        MatchSet, Rule,
    };
    let mut rules: Vec<ListenerFilterChainMatchPredicate> = (ports.iter())
        .map(|p| ListenerFilterChainMatchPredicate {
            rule: Some(Rule::DestinationPortRange(
                sextant_proto::envoy::r#type::v3::Int32Range {
                    start: i32::from(*p),
                    end: i32::from(*p) + 1,
                },
            )),
        })
        .collect();
    let any_of = if rules.len() == 1 {
        rules.pop().unwrap_or_default()
    } else {
        ListenerFilterChainMatchPredicate {
            rule: Some(Rule::OrMatch(MatchSet { rules })),
        }
    };
    ListenerFilterChainMatchPredicate {
        rule: Some(Rule::NotMatch(Box::new(any_of))),
    }
}

/// A connection manager routing with `PORT` over RDS: fault, CORS (not for gRPC clients), router.
fn hcm(stat_prefix: &str, port: u16, cors: bool) -> HttpConnectionManager {
    hcm_named(stat_prefix, &route_name(port), cors)
}

/// A TCP proxy to `service`'s cluster on `port`, weighted as the first applicable VirtualService TCP
/// route says.
fn tcp_proxy(
    cx: RouteContext<'_>,
    scope: &Scope<'_>,
    stat_prefix: &str,
    service: &Service,
    port: u16,
) -> Filter {
    let routes = scope.virtual_services_for(&service.hostname);
    let route = routes.iter().flat_map(|vs| vs.tcp.iter()).find(|r| {
        r.matches.is_empty()
            || r.matches.iter().any(|m| {
                m.port.is_none_or(|p| p == u32::from(port))
                    && cx.proxy.labels.matches(&m.source_labels)
            })
    });
    let spec = route
        .and_then(|r| tcp_clusters(&r.destinations, cx.registry, port))
        .unwrap_or_else(|| {
            tcp_proxy::ClusterSpecifier::Cluster(cluster_name(port, None, &service.hostname))
        });
    tcp_forward(stat_prefix, spec)
}

/// A sidecar's filter chains for TLS on `port` chosen by SNI: per match of a VirtualService `tls` route
/// bound to the mesh, its `sniHosts` forwarded untouched to the route's destinations (the first route to
/// claim a name keeps it). Connections naming none of them keep the port's default chain.
fn sni_chains(
    cx: RouteContext<'_>,
    scope: &Scope<'_>,
    stat_prefix: &str,
    port: u16,
) -> Vec<FilterChain> {
    let mesh_gateway = pilot_config::MESH_GATEWAY;
    let mut claimed = std::collections::BTreeSet::new();
    let mut chains = Vec::new();
    for vs in &scope.virtual_services {
        let bound = vs.gateways.iter().any(|g| g == mesh_gateway);
        for r in &vs.tls {
            let Some(clusters) = tcp_clusters(&r.destinations, cx.registry, port) else {
                continue;
            };
            let applies = |m: &&pilot_config::types::TlsMatch| {
                m.port.is_none_or(|p| p == u32::from(port))
                    && if m.gateways.is_empty() {
                        bound
                    } else {
                        m.gateways.iter().any(|g| g == mesh_gateway)
                    }
            };
            for m in r.matches.iter().filter(applies) {
                chains.extend(sni_chain(
                    &mut claimed,
                    &m.sni_hosts,
                    stat_prefix,
                    &clusters,
                ));
            }
        }
    }
    chains
}

/// Adds to an inbound capture listener a filter chain ending mesh mTLS (transport `tls` with one of
/// Istio's ALPN values) before the same forwarding; other connections keep the default chain.
fn terminate_mesh_tls(l: &mut Listener, secrets: crate::tls::SecretSource) {
    let Some(plain) = l.default_filter_chain.clone() else {
        return;
    };
    l.listener_filters.push(tls_inspector());
    // Server-first protocols send nothing for the inspector to read: let them through as plain text.
    l.continue_on_listener_filters_timeout = true;
    l.filter_chains.push(FilterChain {
        name: format!("{}-mtls", l.name),
        filter_chain_match: Some(crate::tls::mesh_match(None)),
        transport_socket: Some(crate::tls::mesh_inbound(secrets)),
        ..plain
    });
}

/// A capture listener: original destination restored, handed to the port's listener when one exists
/// (`use_original_dst`), else proxied as bytes to `fallback`.
fn capture(name: &str, port: u16, direction: TrafficDirection, fallback: &str) -> Listener {
    let to_fallback = tcp_forward(
        fallback,
        tcp_proxy::ClusterSpecifier::Cluster(fallback.to_string()),
    );
    Listener {
        name: name.to_string(),
        address: Some(build::address(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        ))),
        use_original_dst: (direction == TrafficDirection::Outbound)
            .then_some(BoolValue { value: true }),
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.original_dst".into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(build::any(
                &OriginalDst::default(),
            ))),
            ..Default::default()
        }],
        default_filter_chain: Some(FilterChain {
            filters: vec![to_fallback],
            ..Default::default()
        }),
        traffic_direction: direction as i32,
        ..Default::default()
    }
}
