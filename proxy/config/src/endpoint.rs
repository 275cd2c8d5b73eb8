//! Endpoint assignments (EDS): a cluster's hosts, grouped by locality, with weights.

use std::net::SocketAddr;

use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::endpoint::v3 as pb;
use sextant_proto::google::protobuf::Any;

use crate::error::{Partial, at, within};
use crate::listener::socket_address;

/// The hosts of one cluster.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// The cluster (or EDS service name) they belong to.
    pub cluster: String,
    /// Hosts by locality.
    pub localities: Vec<Locality>,
}

/// The hosts of one locality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// `region/zone/sub_zone` (empty parts allowed).
    pub name: (String, String, String),
    /// The locality's weight.
    pub weight: u32,
    /// Its hosts.
    pub endpoints: Vec<Endpoint>,
}

/// A host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub address: SocketAddr,
    /// Its weight (at least 1).
    pub weight: u32,
    /// Whether the control plane says it may take traffic (UNKNOWN, HEALTHY and DEGRADED may).
    pub healthy: bool,
}

/// Decodes and validates a ClusterLoadAssignment resource.
pub fn decode(any: &Any) -> Result<Assignment, crate::Error> {
    crate::resource::<pb::ClusterLoadAssignment, _>(
        "ClusterLoadAssignment",
        any,
        |a| a.cluster_name.clone(),
        |a| {
            Ok(Assignment {
                cluster: a.cluster_name.clone(),
                localities: localities(a)?,
            })
        },
    )
}

/// The localities of an assignment (also used for STATIC clusters' inline assignments).
pub(crate) fn localities(a: &pb::ClusterLoadAssignment) -> Partial<Vec<Locality>> {
    a.endpoints
        .iter()
        .enumerate()
        .map(|(i, group)| within(&format!("endpoints[{i}]"), locality(group)))
        .collect()
}

/// The host names and ports of a DNS cluster's inline assignment.
pub(crate) fn dns_targets(a: &pb::ClusterLoadAssignment) -> Partial<Vec<(String, u16)>> {
    let mut out = Vec::new();
    for (i, group) in a.endpoints.iter().enumerate() {
        for (j, e) in group.lb_endpoints.iter().enumerate() {
            let path = format!("endpoints[{i}].lb_endpoints[{j}].endpoint.address.socket_address");
            let Some(pb::lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &e.host_identifier
            else {
                return at(path, "an lb endpoint needs an endpoint");
            };
            let Some(core::Address {
                address: Some(core::address::Address::SocketAddress(s)),
            }) = &endpoint.address
            else {
                return at(path, "a socket address is required");
            };
            let Some(core::socket_address::PortSpecifier::PortValue(port)) = s.port_specifier
            else {
                return at(format!("{path}.port_value"), "a port number is required");
            };
            let port = u16::try_from(port).or_else(|_| {
                at(
                    format!("{path}.port_value"),
                    format!("port {port} is out of range"),
                )
            })?;
            if s.address.is_empty() {
                return at(format!("{path}.address"), "a host name is required");
            }
            out.push((s.address.clone(), port));
        }
    }
    Ok(out)
}

fn locality(group: &pb::LocalityLbEndpoints) -> Partial<Locality> {
    let endpoints = group
        .lb_endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| within(&format!("lb_endpoints[{i}]"), endpoint(e)))
        .collect::<Partial<_>>()?;
    let name = group.locality.as_ref().map_or_else(Default::default, |l| {
        (l.region.clone(), l.zone.clone(), l.sub_zone.clone())
    });
    Ok(Locality {
        name,
        weight: group
            .load_balancing_weight
            .as_ref()
            .map_or(1, |w| w.value.max(1)),
        endpoints,
    })
}

fn endpoint(e: &pb::LbEndpoint) -> Partial<Endpoint> {
    let Some(pb::lb_endpoint::HostIdentifier::Endpoint(endpoint)) = &e.host_identifier else {
        return at("endpoint", "an lb endpoint needs an endpoint");
    };
    let address = within(
        "endpoint.address",
        socket_address(endpoint.address.as_ref()),
    )?;
    let healthy = matches!(
        core::HealthStatus::try_from(e.health_status),
        Ok(core::HealthStatus::Unknown
            | core::HealthStatus::Healthy
            | core::HealthStatus::Degraded)
    );
    Ok(Endpoint {
        address,
        weight: e
            .load_balancing_weight
            .as_ref()
            .map_or(1, |w| w.value.max(1)),
        healthy,
    })
}
