//! ClusterLoadAssignments: a cluster's endpoints (a subset's by its labels) with their target ports,
//! weights and localities.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use pilot_config::Service;
use pilot_config::types::Labels;
use pilot_xds::build;
use sextant_proto::envoy::config::core::v3::Locality;
use sextant_proto::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use sextant_proto::google::protobuf::UInt32Value;

/// One endpoint as Envoy is told it: where to connect and how much traffic it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The endpoint's address and the port it serves the service port on.
    pub addr: SocketAddr,
    /// Load-balancing weight (at least 1).
    pub weight: u32,
    /// `region/zone/subzone`, when known.
    pub locality: Option<String>,
}

/// The endpoints of `service` that serve `port` and carry every label of `labels`. An endpoint without a
/// mapping for the port serves it on the same number; one whose address is not an IP (DNS resolution) is
/// not an EDS member and is skipped.
pub fn members(service: &Service, port: u16, labels: &Labels) -> Vec<Member> {
    service
        .endpoints_with(labels)
        .filter_map(|e| {
            let ip: IpAddr = e.address.parse().ok()?;
            let target = e.ports.get(&port).copied().unwrap_or(port);
            Some(Member {
                addr: SocketAddr::new(ip, target),
                weight: e.weight.max(1),
                locality: e.locality.clone(),
            })
        })
        .collect()
}

/// The assignment of `cluster`: `members` grouped by locality.
pub fn assignment(cluster: &str, members: &[Member]) -> ClusterLoadAssignment {
    let mut by_locality: BTreeMap<Option<&str>, Vec<LbEndpoint>> = BTreeMap::new();
    for m in members {
        by_locality
            .entry(m.locality.as_deref())
            .or_default()
            .push(LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(build::address(m.addr)),
                    ..Default::default()
                })),
                load_balancing_weight: Some(UInt32Value { value: m.weight }),
                ..Default::default()
            });
    }
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: by_locality
            .into_iter()
            .map(|(locality, lb_endpoints)| LocalityLbEndpoints {
                // gRPC's proxyless client refuses a group without a locality and ignores one without
                // a weight; Envoy reads the weight only with locality-weighted balancing, where the
                // endpoints' sum is the natural one.
                locality: Some(locality.map(parse_locality).unwrap_or_default()),
                load_balancing_weight: Some(UInt32Value {
                    value: lb_endpoints
                        .iter()
                        .filter_map(|e| e.load_balancing_weight.as_ref())
                        .fold(0u32, |sum, w| sum.saturating_add(w.value))
                        .max(1),
                }),
                lb_endpoints,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn parse_locality(text: &str) -> Locality {
    let mut parts = text.splitn(3, '/').map(str::to_string);
    Locality {
        region: parts.next().unwrap_or_default(),
        zone: parts.next().unwrap_or_default(),
        sub_zone: parts.next().unwrap_or_default(),
    }
}

/// An inline assignment of host names (DNS-resolved clusters).
pub fn dns_assignment(cluster: &str, hosts: &[(String, u16)]) -> ClusterLoadAssignment {
    use sextant_proto::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: hosts
                .iter()
                .map(|(host, port)| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: host.clone(),
                                port_specifier: Some(socket_address::PortSpecifier::PortValue(
                                    u32::from(*port),
                                )),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}
