//! Gateways: what a router proxy (an ingress gateway, node id `router~…`) serves.
//!
//! A Gateway applies to a router when every label of its `selector` is among the router's labels. Each
//! server port becomes one listener on `BIND:PORT` (`0.0.0.0` unless the server says `bind`), where `PORT` is
//! the port the router's own service maps the server port to: the endpoint port of a registry service whose
//! endpoint labels the router carries (Istio maps a gateway's port through the gateway's Kubernetes
//! Service the same way), else the server port itself.
//!
//! - HTTP servers on a port share one connection manager taking routes `http.NUMBER` over RDS (`NUMBER`: the
//!   server's port as the Gateway writes it).
//! - HTTPS servers (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL`) get a filter chain each, chosen by SNI (the
//!   server's hosts; `*` for any), terminating TLS with the server's certificate files, and routes
//!   `https.NUMBER.SERVER.GATEWAY.NAMESPACE` of their own.
//!
//! Route configurations hold a virtual host per VirtualService bound to the gateway (`gateways: [gw]`,
//! `ns/gw`, or a match's `gateways`) whose hosts meet the server's hosts (`ns/host` limits which namespaces'
//! VirtualServices may bind; the narrower of two matching hosts is the domain), with the routes a sidecar
//! would get ([`crate::route`]). A server with `tls.httpsRedirect` answers plain HTTP with a redirect to
//! HTTPS. Request ports in `Host` are ignored.
//! - TCP servers (`TCP`, `MONGO`, `MYSQL`, `REDIS`) forward each connection, as bytes, to the destinations of the
//!   first TCP route of a VirtualService bound to the gateway whose hosts meet the server's and whose match
//!   (if any) names the server's port and, when it names gateways, this one; weighted destinations split
//!   connections (Istio's TCP traffic shifting). A TCP server without such a route gets no listener.
//! - TLS servers (mode `PASSTHROUGH`) read the ClientHello's SNI and forward the connection untouched to the
//!   destinations of the VirtualService `tls` routes bound there, a filter chain per match's `sniHosts`
//!   (the first route to claim a name keeps it). TLS servers with a terminating mode (`SIMPLE`, `MUTUAL`,
//!   `OPTIONAL_MUTUAL`, `ISTIO_MUTUAL`) get a filter chain for their hosts' SNI that ends TLS and forwards
//!   the bytes as a TCP server does.
//!
//! - TLS servers in mode `AUTO_PASSTHROUGH` forward connections untouched by Istio's SNI for a mesh cluster,
//!   `outbound_.PORT_.SUBSET_.HOST` (what a sidecar in another network sends through an east-west
//!   gateway), to the cluster of that name: every port and subset of the services the server's hosts
//!   admit, a filter chain per name, the clusters as the sidecar's but without TLS of their own (the
//!   client's mTLS passes through end to end).
//!
//! A port's first server decides its kind (HTTP, HTTPS or TCP); servers of another kind on that port from
//! other gateways are left out (validation refuses that within one gateway).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pilot_config::types::{GatewaySpec, Server, ServerTlsMode};
use pilot_config::{MeshConfig, RegistrySnapshot, ServerKind, VirtualService};
use pilot_xds::build;
use sextant_proto::envoy::config::core::v3::TrafficDirection;
use sextant_proto::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use sextant_proto::envoy::config::route::v3::{RouteConfiguration, VirtualHost, virtual_host};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use sextant_proto::google::protobuf::BoolValue;
use sextant_resources::Resource;

use crate::cluster::SniTarget;
use crate::filters::{Listeners, hcm_named, sni_chain, tcp_clusters, tcp_forward, tls_inspector};
use crate::route::{RouteContext, http_route};
use crate::{ProxyInfo, tls};

/// A server of a gateway that applies to the router.
#[derive(Clone, Copy)]
struct Bound<'a> {
    gateway: &'a Resource<GatewaySpec>,
    key: &'a str,
    index: usize,
    server: &'a Server,
}

/// The listeners and routes of a router proxy.
pub fn listeners(mesh: &MeshConfig, registry: &RegistrySnapshot, proxy: &ProxyInfo) -> Listeners {
    let keys: Vec<String> = mesh.gateways.iter().map(Resource::key).collect();
    // (bind address, listening port) → its servers, in file order; the first decides HTTP or HTTPS.
    let mut ports: BTreeMap<(IpAddr, u16), Vec<Bound<'_>>> = BTreeMap::new();
    for (g, key) in mesh.gateways.iter().zip(&keys) {
        let selected = proxy.labels.matches(&g.spec.selector);
        if !selected {
            continue;
        }
        for (index, server) in g.spec.servers.iter().enumerate() {
            let Ok(number) = u16::try_from(server.port.number) else {
                continue;
            };
            let ip = (server.bind.as_deref())
                .and_then(|b| b.parse().ok())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let listen = own_port(registry, proxy, number);
            ports.entry((ip, listen)).or_default().push(Bound {
                gateway: g,
                key,
                index,
                server,
            });
        }
    }
    let mut out = Listeners::default();
    for ((ip, listen), servers) in &ports {
        let Some(kind) = ServerKind::of(&servers[0].server.port.protocol) else {
            continue;
        };
        let servers: Vec<Bound<'_>> = (servers.iter().copied())
            .filter(|b| ServerKind::of(&b.server.port.protocol) == Some(kind))
            .collect();
        let name = format!("{ip}_{listen}");
        let https = kind == ServerKind::Https;
        let mut chains = Vec::new();
        if kind == ServerKind::Tcp {
            chains.extend(tcp_chain(mesh, registry, proxy, &name, &servers));
        } else if kind == ServerKind::Tls {
            chains = tls_chains(mesh, registry, proxy, &name, &servers);
        } else if https {
            let mut seen = BTreeSet::new();
            for b in &servers {
                let secrets = tls::SecretSource::of(proxy);
                let Some(socket) =
                    (b.server.tls.as_ref()).and_then(|t| tls::downstream(t, secrets))
                else {
                    continue;
                };
                let names = server_names(b.server);
                // Envoy refuses two chains matching the same names; the first server keeps them.
                if !seen.insert(names.clone()) {
                    continue;
                }
                let route = format!(
                    "https.{}.{}.{}.{}",
                    b.server.port.number,
                    b.server
                        .port
                        .name
                        .clone()
                        .unwrap_or_else(|| b.index.to_string()),
                    b.gateway.name,
                    b.gateway.namespace
                );
                out.routes.push(route_configuration(
                    mesh,
                    registry,
                    proxy,
                    &route,
                    std::slice::from_ref(b),
                ));
                chains.push(FilterChain {
                    filter_chain_match: (!names.is_empty()).then(|| FilterChainMatch {
                        server_names: names,
                        ..Default::default()
                    }),
                    filters: vec![connection_manager(&name, &route)],
                    transport_socket: Some(socket),
                    ..Default::default()
                });
            }
        } else {
            // Named by the server's port, as Istio names it, whatever port the listener binds.
            let number = servers[0].server.port.number;
            let route = match ip {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED) => format!("http.{number}"),
                _ => format!("http.{number}.{ip}"),
            };
            out.routes
                .push(route_configuration(mesh, registry, proxy, &route, &servers));
            chains.push(FilterChain {
                filters: vec![connection_manager(&name, &route)],
                ..Default::default()
            });
        }
        if chains.is_empty() {
            continue;
        }
        out.listeners.push(Listener {
            name,
            address: Some(build::address(SocketAddr::new(*ip, *listen))),
            listener_filters: (https || kind == ServerKind::Tls)
                .then(tls_inspector)
                .into_iter()
                .collect(),
            filter_chains: chains,
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        });
    }
    out
}

/// The filter chain of a TCP port: a `tcp_proxy` to the destinations of the first TCP route bound to one of
/// `servers` (in order); `None` when no VirtualService routes there.
fn tcp_chain(
    mesh: &MeshConfig,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    stat_prefix: &str,
    servers: &[Bound<'_>],
) -> Option<FilterChain> {
    let clusters = servers
        .iter()
        .find_map(|b| tcp_route_clusters(mesh, registry, proxy, b))?;
    Some(FilterChain {
        filters: vec![tcp_forward(stat_prefix, clusters)],
        ..Default::default()
    })
}

/// The clusters of the first VirtualService `tcp` route that applies at server `b`.
fn tcp_route_clusters(
    mesh: &MeshConfig,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    b: &Bound<'_>,
) -> Option<tcp_proxy::ClusterSpecifier> {
    let port = u16::try_from(b.server.port.number).ok()?;
    (mesh.virtual_services.iter())
        .filter(|vs| vs.export_to.visible_to(&proxy.namespace) && !domains(vs, b).is_empty())
        .find_map(|vs| {
            let bound = vs.gateways.iter().any(|g| g == b.key);
            let route = vs.tcp.iter().find(|r| {
                (r.matches.is_empty() && bound)
                    || (r.matches.iter()).any(|m| applies(m.port, &m.gateways, bound, b))
            })?;
            tcp_clusters(&route.destinations, registry, port)
        })
}

/// Whether a route's match (its `port` and `gateways` as written) applies at server `b`: the port is the
/// server's (or not written), and the match names this gateway (by name or `ns/name`), or names none and
/// the VirtualService is `bound` to it.
fn applies(port: Option<u32>, gateways: &[String], bound: bool, b: &Bound<'_>) -> bool {
    port.is_none_or(|p| p == b.server.port.number)
        && if gateways.is_empty() {
            bound
        } else {
            gateways.iter().any(|g| g == b.key || *g == b.gateway.name)
        }
}

/// The filter chains of a TLS passthrough port: per match of a VirtualService `tls` route bound to one of
/// `servers`, its SNI names forwarded untouched to the route's destinations.
fn tls_chains(
    mesh: &MeshConfig,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    stat_prefix: &str,
    servers: &[Bound<'_>],
) -> Vec<FilterChain> {
    let mut claimed = BTreeSet::new();
    let mut chains = Vec::new();
    for b in servers {
        let Ok(port) = u16::try_from(b.server.port.number) else {
            continue;
        };
        let tls = b.server.tls.as_ref();
        if tls.and_then(|t| t.mode) == Some(ServerTlsMode::AutoPassthrough) {
            for target in sni_targets(mesh, registry, proxy, b) {
                let to = tcp_proxy::ClusterSpecifier::Cluster(target.name.clone());
                chains.extend(sni_chain(&mut claimed, &[target.name], stat_prefix, &to));
            }
            continue;
        }
        if tls.and_then(|t| t.mode) != Some(ServerTlsMode::Passthrough) {
            // Terminated here, TCP behind: one chain for the server's names ("" stands for any).
            let names = server_names(b.server);
            let key = if names.is_empty() {
                vec![String::new()]
            } else {
                names.clone()
            };
            let (Some(socket), Some(clusters)) = (
                tls.and_then(|t| crate::tls::downstream(t, crate::tls::SecretSource::of(proxy))),
                tcp_route_clusters(mesh, registry, proxy, b),
            ) else {
                continue;
            };
            if !key.iter().all(|n| claimed.insert(n.clone())) {
                continue;
            }
            chains.push(FilterChain {
                filter_chain_match: (!names.is_empty()).then(|| FilterChainMatch {
                    server_names: names,
                    ..Default::default()
                }),
                filters: vec![tcp_forward(stat_prefix, clusters)],
                transport_socket: Some(socket),
                ..Default::default()
            });
            continue;
        }
        let visible =
            (mesh.virtual_services.iter()).filter(|vs| vs.export_to.visible_to(&proxy.namespace));
        for vs in visible.filter(|vs| !domains(vs, b).is_empty()) {
            let bound = vs.gateways.iter().any(|g| g == b.key);
            for r in &vs.tls {
                let Some(clusters) = tcp_clusters(&r.destinations, registry, port) else {
                    continue;
                };
                for m in (r.matches.iter()).filter(|m| applies(m.port, &m.gateways, bound, b)) {
                    chains.extend(sni_chain(
                        &mut claimed,
                        &m.sni_hosts,
                        stat_prefix,
                        &clusters,
                    ));
                }
            }
        }
    }
    chains
}

/// Istio's SNI for the cluster of `port` and `subset` of `host`: `outbound_.PORT_.SUBSET_.HOST`.
pub fn sni_dnat_name(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound_.{port}_.{}_.{host}", subset.unwrap_or(""))
}

/// The clusters of every `AUTO_PASSTHROUGH` server of the Gateways selecting `proxy`, each once.
pub fn auto_passthrough<'a>(
    mesh: &'a MeshConfig,
    registry: &'a RegistrySnapshot,
    proxy: &'a ProxyInfo,
) -> Vec<SniTarget<'a>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for g in mesh
        .gateways
        .iter()
        .filter(|g| proxy.labels.matches(&g.spec.selector))
    {
        let key = g.key();
        for (index, server) in g.spec.servers.iter().enumerate() {
            let auto =
                server.tls.as_ref().and_then(|t| t.mode) == Some(ServerTlsMode::AutoPassthrough);
            if !auto {
                continue;
            }
            let b = Bound {
                gateway: g,
                key: &key,
                index,
                server,
            };
            out.extend(
                sni_targets(mesh, registry, proxy, &b)
                    .into_iter()
                    .filter(|t| seen.insert(t.name.clone())),
            );
        }
    }
    out
}

/// The clusters server `b` (mode `AUTO_PASSTHROUGH`) forwards to: every port and subset of the services
/// visible to the router that its hosts admit (`ns/host`: of namespace `ns` only).
fn sni_targets<'a>(
    mesh: &'a MeshConfig,
    registry: &'a RegistrySnapshot,
    proxy: &'a ProxyInfo,
    b: &Bound<'_>,
) -> Vec<SniTarget<'a>> {
    let admits = |s: &pilot_config::Service| {
        b.server.hosts.iter().any(|h| {
            let (ns, host) = h.split_once('/').unwrap_or(("*", h.as_str()));
            let namespace_ok = match ns {
                "*" => true,
                "." => s.namespace == b.gateway.namespace,
                ns => s.namespace == ns,
            };
            namespace_ok && pilot_config::host::matches(&host.to_ascii_lowercase(), &s.hostname)
        })
    };
    let mut out = Vec::new();
    for s in registry.visible_to(&proxy.namespace).filter(|s| admits(s)) {
        let rule = mesh.destination_rule(&s.hostname, &proxy.namespace);
        for p in &s.ports {
            let subsets =
                std::iter::once(None).chain(rule.into_iter().flat_map(|r| r.subsets()).map(Some));
            for subset in subsets {
                out.push(SniTarget {
                    name: sni_dnat_name(p.number, subset.map(|x| x.name.as_str()), &s.hostname),
                    service: s,
                    port: p.number,
                    subset,
                });
            }
        }
    }
    out
}

/// The port the router listens on for server port `number`: the endpoint port of the router's own service
/// (a registry service with an endpoint whose labels the router all carries), else `number`.
pub fn own_port(registry: &RegistrySnapshot, proxy: &ProxyInfo, number: u16) -> u16 {
    registry
        .services()
        .filter(|s| s.port(number).is_some())
        .flat_map(|s| s.endpoints.iter())
        .find(|e| !e.labels.is_empty() && proxy.labels.matches(&e.labels))
        .and_then(|e| e.ports.get(&number).copied())
        .unwrap_or(number)
}

/// The SNI names a server's filter chain matches; empty (any) when one of its hosts is `*`.
fn server_names(s: &Server) -> Vec<String> {
    let hosts: BTreeSet<String> = (s.hosts.iter())
        .map(|h| host_part(h).to_ascii_lowercase())
        .collect();
    if hosts.contains("*") {
        return Vec::new();
    }
    hosts.into_iter().collect()
}

fn host_part(h: &str) -> &str {
    h.split_once('/').map_or(h, |(_, host)| host)
}

/// The connection manager of a gateway port: routes `route` over RDS, the client's address as the
/// downstream address (the gateway is the edge), `Host` ports ignored when matching virtual hosts.
fn connection_manager(stat_prefix: &str, route: &str) -> Filter {
    let mut hcm = hcm_named(stat_prefix, route, true);
    hcm.use_remote_address = Some(BoolValue { value: true });
    hcm.strip_port_mode = Some(http_connection_manager::StripPortMode::StripAnyHostPort(
        true,
    ));
    build::network_filter(build::HCM_FILTER, build::any(&hcm))
}

/// The route configuration `name` for `servers`: a virtual host per VirtualService bound to one of their
/// gateways, with the domains where its hosts meet the servers' hosts.
fn route_configuration(
    mesh: &MeshConfig,
    registry: &RegistrySnapshot,
    proxy: &ProxyInfo,
    name: &str,
    servers: &[Bound<'_>],
) -> RouteConfiguration {
    let mut seen = BTreeSet::new();
    let mut virtual_hosts = Vec::new();
    for b in servers {
        let cx = RouteContext {
            mesh,
            registry,
            proxy,
            gateway: b.key,
        };
        let port = u16::try_from(b.server.port.number).unwrap_or(0);
        let redirect = b.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        let visible =
            (mesh.virtual_services.iter()).filter(|vs| vs.export_to.visible_to(&proxy.namespace));
        for vs in visible {
            let bound = vs.gateways.iter().any(|g| g == b.key);
            let via_match = (vs.http.iter())
                .flat_map(|r| &r.matches)
                .any(|m| m.gateways.iter().any(|g| g == b.key));
            if !bound && !via_match {
                continue;
            }
            let domains: Vec<String> = domains(vs, b)
                .into_iter()
                // Envoy refuses a configuration that lists a domain twice; the first binding keeps it.
                .filter(|d| seen.insert(d.clone()))
                .collect();
            if domains.is_empty() {
                continue;
            }
            let routes = (vs.http.iter())
                .flat_map(|r| http_route(cx, r, port, bound))
                .collect();
            virtual_hosts.push(VirtualHost {
                name: format!("{}:{}", vs.resource.key(), domains[0]),
                domains,
                routes,
                require_tls: if redirect {
                    virtual_host::TlsRequirementType::All as i32
                } else {
                    virtual_host::TlsRequirementType::None as i32
                },
                include_request_attempt_count: true,
                ..Default::default()
            });
        }
    }
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// Where a VirtualService's hosts meet a server's hosts: for each pair that matches (either may be a
/// wildcard), the narrower one. A server host `ns/host` admits VirtualServices of namespace `ns` only
/// (`.`: the gateway's namespace, `*`: any).
fn domains(vs: &VirtualService, b: &Bound<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for h in &b.server.hosts {
        let (ns, host) = h.split_once('/').unwrap_or(("*", h.as_str()));
        let admitted = match ns {
            "*" => true,
            "." => vs.resource.namespace == b.gateway.namespace,
            ns => vs.resource.namespace == ns,
        };
        if !admitted {
            continue;
        }
        let host = host.to_ascii_lowercase();
        for v in &vs.hosts {
            let d = if pilot_config::host::matches(&host, v) {
                v.clone()
            } else if pilot_config::host::matches(v, &host) {
                host.clone()
            } else {
                continue;
            };
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}
