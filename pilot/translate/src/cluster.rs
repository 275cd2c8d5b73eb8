//! Clusters: `outbound|PORT||HOST` per service port and `outbound|PORT|SUBSET|HOST` per DestinationRule
//! subset, their assignments, and Istio's `BlackHoleCluster`, `PassthroughCluster` and (with iptables)
//! `InboundPassthroughCluster` (their names in [`crate::names`]); for routers, the SNI-DNAT clusters of
//! `AUTO_PASSTHROUGH` servers ([`SniTarget`]).
//!
//! Static services are EDS clusters over ADS (the cluster's name is its EDS name); DNS services are
//! `STRICT_DNS` with their endpoints inline; services with `resolution: NONE` and `simple: PASSTHROUGH`
//! rules go to the caller's original destination. HTTP/2 and gRPC ports speak HTTP/2 upstream. A rule's
//! `tls` (SIMPLE, MUTUAL, ISTIO_MUTUAL) gives the cluster a TLS transport socket ([`crate::tls`]);
//! proxyless gRPC clients do not take file-based certificates, so their clusters stay plain text.

use pilot_config::types::{Labels, Resolution, TlsMode};
use pilot_config::{MeshConfig, Protocol, Service};
use pilot_xds::build;
use sextant_proto::envoy::config::cluster::v3::{Cluster, cluster};
use sextant_proto::envoy::config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions};
use sextant_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use sextant_proto::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};

use crate::endpoint::{assignment, members};
use crate::hub::service::Hub;
use crate::names::{BLACK_HOLE, INBOUND_PASSTHROUGH, PASSTHROUGH};
use crate::policy::{DEFAULT_CONNECT_TIMEOUT_MS, Effective};
use crate::scope::Scope;
use crate::tls::Upstream;
use crate::{Interception, MeshTls, ProxyInfo, ProxyKind, cluster_name};

/// The source address of `InboundPassthroughCluster`'s connections (Istio's).
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// The key under which Envoy looks up a cluster's upstream HTTP options.
const HTTP_OPTIONS_KEY: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Clusters and the assignments of their EDS members.
#[derive(Debug, Default)]
pub struct Clusters {
    /// Every cluster, sorted by name.
    pub clusters: Vec<Cluster>,
    /// One assignment per EDS cluster.
    pub assignments: Vec<ClusterLoadAssignment>,
    /// The clusters speaking mesh mTLS (`ISTIO_MUTUAL`), with the HTTP version they speak upstream (for
    /// the ALPN an HTTP request announces, [`crate::alpn`]).
    pub istio_mutual: std::collections::BTreeMap<String, Upstream>,
}

/// Whether `policy` makes a cluster of `protocol` speak mesh mTLS, and then the HTTP version it speaks.
fn mesh_upstream(policy: &Effective, protocol: Protocol, grpc: bool) -> Option<Upstream> {
    let mesh = !grpc && (policy.tls.as_ref()).is_some_and(|t| t.mode == TlsMode::IstioMutual);
    mesh.then_some(match protocol {
        Protocol::Http2 | Protocol::Grpc => Upstream::Http2,
        _ => Upstream::Http11,
    })
}

/// The clusters `proxy` needs for every service of its scope.
pub fn clusters(
    mesh: &MeshConfig,
    scope: &Scope<'_>,
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
) -> Clusters {
    let mut out = Clusters::default();
    let grpc = proxy.kind == ProxyKind::ProxylessGrpc;
    for service in scope.services.iter().copied() {
        let rule = mesh.destination_rule(&service.hostname, &proxy.namespace);
        for port in &service.ports {
            let mut subsets: Vec<(Option<&str>, Labels)> = vec![(None, Labels::new())];
            for s in rule.into_iter().flat_map(|r| r.subsets()) {
                subsets.push((Some(s.name.as_str()), s.labels.clone()));
            }
            for (subset, labels) in subsets {
                let name = cluster_name(port.number, subset, &service.hostname);
                let policy = Effective::of(rule, subset, port.number);
                let shape = Shape {
                    service,
                    port: port.number,
                    protocol: port.protocol,
                    grpc,
                    trust_domain: mtls.trust_domain,
                    secrets: crate::tls::SecretSource::of(proxy),
                };
                let (c, eds) = service_cluster(&name, &shape, &policy);
                if eds {
                    let m = members(service, port.number, &labels);
                    out.assignments.push(assignment(&name, &m));
                }
                if let Some(upstream) = mesh_upstream(&policy, port.protocol, grpc) {
                    out.istio_mutual.insert(name, upstream);
                }
                out.clusters.push(c);
            }
        }
    }
    if !grpc {
        out.clusters.push(black_hole());
        out.clusters.push(original_dst(PASSTHROUGH));
        if proxy.interception == Interception::Redirect && proxy.kind != ProxyKind::Router {
            // From 127.0.0.6, which istio-init's rules let through: the workload at its own address is
            // reached over loopback, where a connection of the proxy's user would be captured again.
            let mut inbound = original_dst(INBOUND_PASSTHROUGH);
            inbound.upstream_bind_config = Some(sextant_proto::envoy::config::core::v3::BindConfig {
                source_address: Some(sextant_proto::envoy::config::core::v3::SocketAddress {
                    address: INBOUND_PASSTHROUGH_SOURCE.into(),
                    port_specifier: Some(
                        sextant_proto::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(0),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            });
            out.clusters.push(inbound);
        }
    }
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Adds the hub's cluster to a sidecar's `clusters` (in place of the one its scope may have imported): the
/// service's cluster for the port, with its DestinationRule's policy, speaking HTTP/2 (the hub's gRPC)
/// whatever the port's declared protocol.
pub fn add_hub(
    out: &mut Clusters,
    mesh: &MeshConfig,
    hub: &Hub<'_>,
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
) {
    let service = hub.service.as_ref();
    let rule = mesh.destination_rule(&service.hostname, &proxy.namespace);
    let policy = Effective::of(rule, None, hub.port);
    let shape = Shape {
        service,
        port: hub.port,
        protocol: Protocol::Grpc,
        grpc: false,
        trust_domain: mtls.trust_domain,
        secrets: crate::tls::SecretSource::of(proxy),
    };
    let (c, eds) = service_cluster(&hub.cluster, &shape, &policy);
    out.istio_mutual.remove(&hub.cluster);
    if let Some(upstream) = mesh_upstream(&policy, Protocol::Grpc, false) {
        out.istio_mutual.insert(hub.cluster.clone(), upstream);
    }
    out.clusters.retain(|c| c.name != hub.cluster);
    out.assignments.retain(|a| a.cluster_name != hub.cluster);
    if eds {
        let m = members(service, hub.port, &Labels::new());
        out.assignments.push(assignment(&hub.cluster, &m));
    }
    out.clusters.push(c);
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
}

/// A cluster an `AUTO_PASSTHROUGH` server forwards to by SNI.
pub struct SniTarget<'a> {
    /// Istio's SNI for it, which is also the cluster's name: `outbound_.PORT_.SUBSET_.HOST`.
    pub name: String,
    /// The service.
    pub service: &'a pilot_config::Service,
    /// The service port.
    pub port: u16,
    /// The subset, if any.
    pub subset: Option<&'a pilot_config::types::Subset>,
}

/// The clusters an `AUTO_PASSTHROUGH` gateway forwards to by SNI (see [`crate::gateway::auto_passthrough`]):
/// each as the service's cluster for that port and subset, with its DestinationRule's policy, but carrying
/// bytes only (the client's TLS passes through, so no TLS and no HTTP options of its own).
pub fn sni_dnat(
    mesh: &MeshConfig,
    targets: &[SniTarget<'_>],
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
) -> Clusters {
    let mut out = Clusters::default();
    for t in targets {
        let rule = mesh.destination_rule(&t.service.hostname, &proxy.namespace);
        let subset = t.subset.map(|s| s.name.as_str());
        let policy = Effective::of(rule, subset, t.port);
        let shape = Shape {
            service: t.service,
            port: t.port,
            protocol: Protocol::Tcp,
            grpc: false,
            trust_domain: mtls.trust_domain,
            secrets: crate::tls::SecretSource::of(proxy),
        };
        let (mut c, eds) = service_cluster(&t.name, &shape, &policy);
        c.transport_socket = None;
        if eds {
            let labels = t.subset.map(|s| s.labels.clone()).unwrap_or_default();
            let m = members(t.service, t.port, &labels);
            out.assignments.push(assignment(&t.name, &m));
        }
        out.clusters.push(c);
    }
    out
}

/// What a service cluster is for.
struct Shape<'a> {
    service: &'a Service,
    port: u16,
    protocol: Protocol,
    /// For a proxyless gRPC client.
    grpc: bool,
    /// The mesh's trust domain (the servers' SPIFFE IDs under ISTIO_MUTUAL).
    trust_domain: &'a str,
    /// Where the proxy's mesh secrets come from (under ISTIO_MUTUAL).
    secrets: crate::tls::SecretSource,
}

/// One service cluster, and whether its endpoints come over EDS.
fn service_cluster(name: &str, shape: &Shape<'_>, policy: &Effective) -> (Cluster, bool) {
    let Shape {
        service,
        port,
        protocol,
        grpc,
        trust_domain,
        secrets,
    } = *shape;
    let passthrough = policy.passthrough() || service.resolution == Resolution::None;
    let dns = matches!(
        service.resolution,
        Resolution::Dns | Resolution::DnsRoundRobin
    );
    let mut c = if passthrough && !grpc {
        original_dst(name)
    } else if dns && !grpc {
        dns_cluster(name, service, port)
    } else {
        build::eds_cluster(name, 0)
    };
    let eds = matches!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32
    );
    policy.apply(&mut c, grpc);
    if !grpc {
        c.transport_socket = policy.tls.as_ref().and_then(|t| {
            if t.mode != TlsMode::IstioMutual {
                return crate::tls::upstream(t, &service.hostname);
            }
            let identities = if t.subject_alt_names.is_empty() {
                service.identities(trust_domain)
            } else {
                t.subject_alt_names.clone()
            };
            // Istio's SNI for mesh traffic: the cluster name with `|` spelled `_.`.
            let sni = t.sni.clone().unwrap_or_else(|| name.replace('|', "_."));
            Some(crate::tls::istio_mutual(&identities, sni, secrets))
        });
    }
    if passthrough && !grpc {
        // The original destination decides; no balancing policy may be set on such a cluster.
        c.lb_policy = cluster::LbPolicy::ClusterProvided as i32;
        c.lb_config = None;
    }
    if let Some(options) = http_options(protocol, policy) {
        c.typed_extension_protocol_options
            .insert(HTTP_OPTIONS_KEY.to_string(), build::any(&options));
    }
    (c, eds)
}

/// The upstream HTTP options of an HTTP-family port: HTTP/2 for `http2` and `grpc` ports, HTTP/1.1 for
/// the others, with the pool's per-connection settings. None for TCP-family ports.
fn http_options(protocol: Protocol, policy: &Effective) -> Option<HttpProtocolOptions> {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    let config = match protocol {
        Protocol::Http2 | Protocol::Grpc => {
            ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default())
        }
        Protocol::Http | Protocol::GrpcWeb => {
            ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default())
        }
        _ => return None,
    };
    Some(HttpProtocolOptions {
        common_http_protocol_options: policy.common_http_options(),
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(config),
                },
            ),
        ),
        ..Default::default()
    })
}

fn dns_cluster(name: &str, service: &Service, port: u16) -> Cluster {
    let discovery = if service.resolution == Resolution::DnsRoundRobin {
        cluster::DiscoveryType::LogicalDns
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let mut hosts: Vec<(String, u16)> = service
        .endpoints
        .iter()
        .map(|e| {
            (
                e.address.clone(),
                e.ports.get(&port).copied().unwrap_or(port),
            )
        })
        .collect();
    if hosts.is_empty() {
        hosts.push((service.hostname.clone(), port));
    }
    if discovery == cluster::DiscoveryType::LogicalDns {
        hosts.truncate(1);
    }
    let assignment = crate::endpoint::dns_assignment(name, &hosts);
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
        load_assignment: Some(assignment),
        ..Default::default()
    }
}

fn black_hole() -> Cluster {
    Cluster {
        name: BLACK_HOLE.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(crate::policy::duration(std::time::Duration::from_millis(
            DEFAULT_CONNECT_TIMEOUT_MS,
        ))),
        ..Default::default()
    }
}

fn original_dst(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(crate::policy::duration(std::time::Duration::from_millis(
            DEFAULT_CONNECT_TIMEOUT_MS,
        ))),
        ..Default::default()
    }
}
