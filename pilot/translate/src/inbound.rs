//! The workload's own ports, served through its proxy: a Sidecar's `ingress` listeners, and under iptables
//! the HTTP ports and the ports of undeclared protocol of the workload's services (chains of
//! `virtualInbound` per port, by destination port, on to the original destination through
//! `InboundPassthroughCluster`, so inbound requests are HTTP — HTTP RBAC and the hub's per-request filters
//! apply per request).
//!
//! A port of undeclared protocol (a port name naming none, e.g. `web`) is sniffed as Istio's inbound
//! listeners do, by destination port: mesh mTLS whose client offered Istio's HTTP ALPN (`istio-http/1.0`,
//! `istio-http/1.1`, `istio-h2`, which clients set for HTTP only, [`crate::alpn`]) ends in the same HTTP
//! connection manager a declared HTTP port has; other mesh mTLS (`istio-peer-exchange`, `istio`) in TCP
//! proxying; plain text the HTTP inspector recognises as HTTP/1.x or prior-knowledge HTTP/2 (`http/1.0`,
//! `http/1.1`, `h2c`) in HTTP; anything else in TCP. The HTTP inspector runs only on such ports (a
//! `filter_disabled` predicate on `virtualInbound`), so declared TCP ports are read exactly as before; a
//! server-first protocol on a sniffed port sends nothing to inspect and goes on as TCP when the listener
//! filters' timeout (Envoy's default, 15 s) passes — such protocols should be declared (`tcp-…`).
//!
//! Each port gets the cluster `inbound|PORT||` (its one endpoint the `defaultEndpoint`) and, for HTTP,
//! the route configuration of the same name (every host, to that cluster, no timeout). With iptables the
//! port is a filter chain of `virtualInbound` matched by destination port — with a twin ending mesh mTLS
//! when the proxy has a certificate (PERMISSIVE, as the rest of `virtualInbound`); without (`captureMode:
//! NONE`, or a proxy without interception) a listener binding `BIND:PORT` itself (`0.0.0.0` unless `bind`
//! says otherwise). Their chains enforce the workload's PeerAuthentication and AuthorizationPolicy
//! ([`crate::authz`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::collections::{BTreeMap, BTreeSet};

use pilot_config::sidecar::Ingress;
use pilot_config::types::CaptureMode;
use pilot_config::{Protocol, RegistrySnapshot};
use pilot_xds::build;
use sextant_proto::envoy::config::cluster::v3::{Cluster, cluster};
use sextant_proto::envoy::config::core::v3::TrafficDirection;
use sextant_proto::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use sextant_proto::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, route, route_action,
};
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use sextant_proto::google::protobuf::UInt32Value;

use crate::authz::InboundSecurity;
use crate::filters::{hcm_named, http_inspector, is_http, tcp_forward, tls_inspector};
use crate::names::{INBOUND_PASSTHROUGH, SNIFFED_HTTP, inbound_cluster_name};
use crate::scope::Scope;
use crate::{Interception, MeshTls, ProxyInfo, ProxyKind};

/// What a Sidecar's ingress listeners add to a proxy's resources.
#[derive(Debug, Default)]
pub struct Inbound {
    /// One static cluster per port.
    pub clusters: Vec<Cluster>,
    /// The route configurations of the HTTP ports.
    pub routes: Vec<RouteConfiguration>,
    /// Filter chains for `virtualInbound` (ports captured by iptables).
    pub captured: Vec<FilterChain>,
    /// The captured ports whose chains are sniffed: `virtualInbound` runs the HTTP inspector for them.
    pub sniffed: BTreeSet<u16>,
    /// Listeners of their own (ports not captured).
    pub listeners: Vec<Listener>,
}

/// The resources of the workload's inbound ports (none for routers and proxyless clients): its Sidecar's
/// ingress listeners, and under iptables the chains of each HTTP or undeclared port of its own services.
pub fn inbound(
    scope: &Scope<'_>,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
    security: &InboundSecurity,
) -> Inbound {
    let mut out = Inbound::default();
    if proxy.kind != ProxyKind::Sidecar {
        return out;
    }
    let mesh_tls = mtls
        .holds_certificate(proxy)
        .then(|| crate::tls::SecretSource::of(proxy));
    let ingress = scope
        .sidecar
        .map(|s| s.ingress.as_slice())
        .unwrap_or_default();
    if proxy.interception == Interception::Redirect {
        let declared: BTreeSet<u16> = ingress.iter().map(|i| i.port).collect();
        let ports = workload_ports(registry, proxy);
        for (port, sniffed) in ports.iter().filter(|(p, _)| !declared.contains(p)) {
            let name = inbound_cluster_name(*port);
            let mut rc = route(&name);
            if let Some(r) = rc.virtual_hosts[0].routes.get_mut(0)
                && let Some(route::Action::Route(a)) = &mut r.action
            {
                // On to the workload at the connection's original destination.
                a.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(
                    INBOUND_PASSTHROUGH.to_string(),
                ));
            }
            out.routes.push(rc);
            let stat_prefix = format!("inbound_0.0.0.0_{port}");
            let http = build::network_filter(
                build::HCM_FILTER,
                build::any(&hcm_named(&stat_prefix, &name, false)),
            );
            if *sniffed {
                let tcp = tcp_forward(
                    &stat_prefix,
                    tcp_proxy::ClusterSpecifier::Cluster(INBOUND_PASSTHROUGH.to_string()),
                );
                out.captured
                    .extend(sniffed_chains(*port, true, &http, &tcp, mesh_tls));
                out.sniffed.insert(*port);
            } else {
                out.captured.extend(chains(*port, true, &http, mesh_tls));
            }
        }
    }
    for ingress in ingress {
        let name = inbound_cluster_name(ingress.port);
        out.clusters.push(static_cluster(&name, ingress.endpoint));
        let stat_prefix = format!("inbound_0.0.0.0_{}", ingress.port);
        let http = || {
            build::network_filter(
                build::HCM_FILTER,
                build::any(&hcm_named(&stat_prefix, &name, false)),
            )
        };
        let tcp = || {
            tcp_forward(
                &stat_prefix,
                tcp_proxy::ClusterSpecifier::Cluster(name.clone()),
            )
        };
        let captured = match ingress.capture {
            CaptureMode::Default => proxy.interception == Interception::Redirect,
            CaptureMode::Iptables => true,
            CaptureMode::None => false,
        };
        let sniffed = ingress.protocol == Protocol::Auto;
        let chains = if sniffed {
            out.routes.push(route(&name));
            sniffed_chains(ingress.port, captured, &http(), &tcp(), mesh_tls)
        } else if is_http(ingress.protocol) {
            out.routes.push(route(&name));
            chains(ingress.port, captured, &http(), mesh_tls)
        } else {
            chains(ingress.port, captured, &tcp(), mesh_tls)
        };
        if captured {
            out.captured.extend(chains);
            if sniffed {
                out.sniffed.insert(ingress.port);
            }
        } else {
            let mut l = bound(ingress, chains, sniffed);
            crate::authz::secure_bound(&mut l, ingress.port, security);
            out.listeners.push(l);
        }
    }
    out
}

/// The port's plain chain and, with a certificate (its secrets from `mtls`), its twin ending mesh mTLS
/// (first: it is the more specific).
fn chains(
    number: u16,
    by_port: bool,
    filter: &Filter,
    mtls: Option<crate::tls::SecretSource>,
) -> Vec<FilterChain> {
    let port = by_port.then_some(UInt32Value {
        value: u32::from(number),
    });
    let plain = FilterChain {
        name: format!("inbound_{number}"),
        filter_chain_match: port.map(|p| FilterChainMatch {
            destination_port: Some(p),
            ..Default::default()
        }),
        filters: vec![filter.clone()],
        ..Default::default()
    };
    let Some(secrets) = mtls else {
        return vec![plain];
    };
    let terminated = FilterChain {
        name: format!("inbound_{number}-mtls"),
        filter_chain_match: Some(crate::tls::mesh_match(port)),
        transport_socket: Some(crate::tls::mesh_inbound(secrets)),
        ..plain.clone()
    };
    vec![terminated, plain]
}

/// The chains of a port of undeclared protocol (by destination port when `by_port`), most specific first:
/// with a certificate (its secrets from `mtls`), mesh mTLS carrying HTTP (Istio's HTTP ALPN values) to
/// `http` and other mesh mTLS to `tcp`; then plain text the HTTP inspector recognised to `http`, and the
/// rest to `tcp` (last: a bound listener's default chain).
///
/// The HTTP chain names no transport protocol: chains are matched one property after the other and never
/// backed out of, so a `raw_buffer` chain would leave plain text that is not HTTP no chain of the port.
fn sniffed_chains(
    number: u16,
    by_port: bool,
    http: &Filter,
    tcp: &Filter,
    mtls: Option<crate::tls::SecretSource>,
) -> Vec<FilterChain> {
    let port = by_port.then_some(UInt32Value {
        value: u32::from(number),
    });
    let mut out = Vec::new();
    if let Some(secrets) = mtls {
        for (suffix, alpn, filter) in [
            ("-mtls-http", &crate::tls::MESH_HTTP_ALPN[..], http),
            ("-mtls", &crate::tls::MESH_TCP_ALPN[..], tcp),
        ] {
            out.push(FilterChain {
                name: format!("inbound_{number}{suffix}"),
                filter_chain_match: Some(FilterChainMatch {
                    application_protocols: alpn.iter().map(|a| a.to_string()).collect(),
                    ..crate::tls::mesh_match(port)
                }),
                filters: vec![filter.clone()],
                transport_socket: Some(crate::tls::mesh_inbound(secrets)),
                ..Default::default()
            });
        }
    }
    out.push(FilterChain {
        name: format!("inbound_{number}-http"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: port,
            application_protocols: SNIFFED_HTTP.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
        filters: vec![http.clone()],
        ..Default::default()
    });
    out.push(FilterChain {
        name: format!("inbound_{number}"),
        filter_chain_match: port.map(|p| FilterChainMatch {
            destination_port: Some(p),
            ..Default::default()
        }),
        filters: vec![tcp.clone()],
        ..Default::default()
    });
    out
}

/// A listener binding the port itself; the TLS inspector tells mesh mTLS from plain text when there are
/// two chains, and on a `sniffed` port the HTTP inspector HTTP from other plain text.
fn bound(ingress: &Ingress, mut chains: Vec<FilterChain>, sniffed: bool) -> Listener {
    let ip = ingress.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut listener = Listener {
        name: format!("inbound_{ip}_{}", ingress.port),
        address: Some(build::address(SocketAddr::new(ip, ingress.port))),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    };
    if chains.len() > 1 {
        if chains
            .iter()
            .any(|c| (c.filter_chain_match.as_ref()).is_some_and(|m| m.transport_protocol == "tls"))
        {
            listener.listener_filters.push(tls_inspector());
        }
        if sniffed {
            listener.listener_filters.push(http_inspector(None));
        }
        // Server-first protocols send nothing for the inspectors to read: they take the plain (TCP) chain
        // once the listener filters' timeout passes.
        listener.continue_on_listener_filters_timeout = true;
        listener.default_filter_chain = chains.pop();
    }
    listener.filter_chains = chains;
    listener
}

fn static_cluster(name: &str, endpoint: SocketAddr) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(crate::policy::duration(std::time::Duration::from_millis(
            crate::policy::DEFAULT_CONNECT_TIMEOUT_MS,
        ))),
        load_assignment: Some(build::assignment(name, &[(endpoint, 1)])),
        ..Default::default()
    }
}

/// The ports the workload serves HTTP on (`false`) or a protocol it did not declare on (`true`, sniffed), as
/// its services say: for each such port of a service exported to its namespace with an endpoint whose
/// labels the proxy all carries, that endpoint's port for it. A port some service declares HTTP is HTTP; one
/// some service declares of another protocol (TCP, TLS, …) is left as it is, never sniffed.
/// (Istio finds a workload's services by its address; translation sees labels, which proxies of one
/// workload share, so they share this too.)
fn workload_ports(registry: &RegistrySnapshot, proxy: &ProxyInfo) -> BTreeMap<u16, bool> {
    let mut http = BTreeSet::new();
    let mut auto = BTreeSet::new();
    let mut declared = BTreeSet::new();
    for s in registry.visible_to(&proxy.namespace) {
        let mine = (s.endpoints.iter())
            .filter(|e| !e.labels.is_empty() && proxy.labels.matches(&e.labels));
        for e in mine {
            for p in &s.ports {
                let port = e.ports.get(&p.number).copied().unwrap_or(p.number);
                match p.protocol {
                    protocol if is_http(protocol) => http.insert(port),
                    Protocol::Auto => auto.insert(port),
                    _ => declared.insert(port),
                };
            }
        }
    }
    let mut out: BTreeMap<u16, bool> = (auto.into_iter())
        .filter(|p| !http.contains(p) && !declared.contains(p))
        .map(|p| (p, true))
        .collect();
    out.extend(http.into_iter().map(|p| (p, false)));
    out
}

/// Every request on the port to its cluster, without a timeout (the caller's proxy keeps the route's).
fn route(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}:*"),
            domains: vec!["*".into()],
            routes: vec![crate::route::forward(
                crate::route::catch_all(),
                "default",
                name.to_string(),
            )],
            ..Default::default()
        }],
        ..Default::default()
    }
}
