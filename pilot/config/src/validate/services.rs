//! ServiceEntries and WorkloadEntries into the file-mode registry's services.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use sextant_resources::{ConfigError, Resource};

use super::Errs;
use crate::export::ExportTo;
use crate::load::NetworkingSet;
use crate::protocol::Protocol;
use crate::registry::{Endpoint, Service, ServicePort, limits};
use crate::types::{Location, Resolution, ServiceEntrySpec, WorkloadEntrySpec};

const SE: &str = "ServiceEntry";

/// Validates ServiceEntries (and the WorkloadEntries they select) into services by host name; those with
/// errors are left out, and of two claiming one host the later.
pub(super) fn services(
    set: &NetworkingSet,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Arc<Service>> {
    // An invalid WorkloadEntry is left out: no ServiceEntry selects it.
    let workloads: Vec<&Resource<WorkloadEntrySpec>> = (set.workload_entries.iter())
        .filter(|w| {
            let before = errors.len();
            workload_entry(w, errors);
            errors.len() == before
        })
        .collect();
    let mut out: BTreeMap<String, Arc<Service>> = BTreeMap::new();
    let mut owner: BTreeMap<String, &Resource<ServiceEntrySpec>> = BTreeMap::new();
    let mut total_endpoints = 0usize;
    for r in &set.service_entries {
        let before = errors.len();
        let mut e = Errs::new(r, SE, errors);
        e.export_to(&r.spec.export_to);
        let ports = ports(&mut e, &r.spec);
        let resolution = r.spec.resolution.unwrap_or(Resolution::None);
        let endpoints = endpoints(&mut e, r, resolution, &ports, &workloads);
        if r.spec.hosts.is_empty() {
            e.push("spec.hosts", "a ServiceEntry needs at least one host");
        }
        for (i, h) in r.spec.hosts.iter().enumerate() {
            e.host(&format!("spec.hosts[{i}]"), h);
        }
        if e.errors.len() > before {
            continue; // left out: it claims no host
        }
        // Then what it claims against what the earlier ones claimed: all its hosts, or none.
        let hosts: Vec<String> = r
            .spec
            .hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for (i, host) in hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            if let Some(first) = owner.get(host) {
                e.push(
                    &field,
                    format!(
                        "host {host} is already defined by ServiceEntry {} (at {})",
                        first.key(),
                        first.origin.locate("spec.hosts")
                    ),
                );
            } else if hosts[..i].contains(host) {
                e.push(&field, format!("host {host} is listed twice"));
            }
        }
        if out.len() + hosts.len() > limits::MAX_SERVICES {
            e.push(
                "spec.hosts",
                format!("more than {} services", limits::MAX_SERVICES),
            );
        }
        if total_endpoints + endpoints.len() * hosts.len() > limits::MAX_ENDPOINTS {
            e.push(
                "spec",
                format!(
                    "more than {} endpoints in all services",
                    limits::MAX_ENDPOINTS
                ),
            );
        }
        if e.errors.len() > before {
            continue;
        }
        total_endpoints += endpoints.len() * hosts.len();
        for host in hosts {
            owner.insert(host.clone(), r);
            out.insert(
                host.clone(),
                Arc::new(Service {
                    hostname: host,
                    namespace: r.namespace.clone(),
                    ports: ports.iter().map(|(p, _)| p.clone()).collect(),
                    location: r.spec.location.unwrap_or(Location::MeshExternal),
                    resolution,
                    endpoints: endpoints.clone(),
                    export_to: ExportTo::resolve(&r.spec.export_to, &r.namespace),
                    subject_alt_names: r.spec.subject_alt_names.clone(),
                }),
            );
        }
    }
    out
}

/// The service's ports, each with the port endpoints listen on by default (`targetPort`, else the number).
fn ports<S>(e: &mut Errs<'_, S>, spec: &ServiceEntrySpec) -> Vec<(ServicePort, u16)> {
    if spec.ports.is_empty() && spec.resolution != Some(Resolution::None) {
        e.push("spec.ports", "a ServiceEntry needs at least one port");
    }
    let (mut names, mut numbers) = (BTreeMap::new(), BTreeMap::new());
    let mut out = Vec::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let number = e.port(&format!("{f}.number"), p.number);
        e.unique(
            &mut numbers,
            &format!("{f}.number"),
            "port",
            &p.number.to_string(),
        );
        let name = p.name.clone().unwrap_or_default();
        if !name.is_empty() {
            e.unique(&mut names, &format!("{f}.name"), "port name", &name);
        }
        let target = match p.target_port {
            Some(t) => e.port(&format!("{f}.targetPort"), t),
            None => number,
        };
        let Some(protocol) = Protocol::of_port(p.protocol.as_deref(), p.name.as_deref()) else {
            e.push(
                &format!("{f}.protocol"),
                format!(
                    "unknown protocol {:?}; known: {}",
                    p.protocol.as_deref().unwrap_or_default(),
                    Protocol::ALL.map(Protocol::as_str).join(", ")
                ),
            );
            continue;
        };
        if let (Some(number), Some(target)) = (number, target) {
            out.push((
                ServicePort {
                    name,
                    number,
                    protocol,
                },
                target,
            ));
        }
    }
    out
}

fn endpoints(
    e: &mut Errs<'_, ServiceEntrySpec>,
    r: &Resource<ServiceEntrySpec>,
    resolution: Resolution,
    ports: &[(ServicePort, u16)],
    workloads: &[&Resource<WorkloadEntrySpec>],
) -> Vec<Endpoint> {
    let spec = &r.spec;
    match (&spec.workload_selector, spec.endpoints.is_empty()) {
        (None, true) if resolution == Resolution::Static => e.push(
            "spec.resolution",
            "resolution STATIC needs endpoints or a workloadSelector",
        ),
        (Some(_), false) => e.push(
            "spec.workloadSelector",
            "set endpoints or workloadSelector, not both",
        ),
        _ => {}
    }
    let mut out = Vec::new();
    for (i, ep) in spec.endpoints.iter().enumerate() {
        let f = format!("spec.endpoints[{i}]");
        if ep.address.is_empty() {
            e.push(&format!("{f}.address"), "an endpoint needs an address");
        } else if resolution == Resolution::Static && ep.address.parse::<IpAddr>().is_err() {
            e.push(
                &format!("{f}.address"),
                format!(
                    "{:?} is not an IP address; resolution STATIC needs IPs (use DNS for names)",
                    ep.address
                ),
            );
        }
        for (name, port) in &ep.ports {
            e.port(&format!("{f}.ports.{name}"), *port);
            if !ports.iter().any(|(p, _)| &p.name == name) {
                e.push(
                    &format!("{f}.ports.{name}"),
                    format!("{name:?} is not the name of a port of this ServiceEntry"),
                );
            }
        }
        out.push(endpoint(ep, ports));
    }
    if let Some(sel) = &spec.workload_selector {
        if sel.labels.is_empty() {
            e.push(
                "spec.workloadSelector.labels",
                "a workloadSelector needs labels",
            );
        } else {
            out.extend(
                workloads
                    .iter()
                    .filter(|w| w.namespace == r.namespace)
                    .filter(|w| w.spec.labels.matches(&sel.labels))
                    .map(|w| endpoint(&w.spec, ports)),
            );
        }
    }
    if out.len() > limits::MAX_ENDPOINTS_PER_SERVICE {
        e.push(
            "spec.endpoints",
            format!(
                "{} endpoints; a service has at most {}",
                out.len(),
                limits::MAX_ENDPOINTS_PER_SERVICE
            ),
        );
        out.truncate(limits::MAX_ENDPOINTS_PER_SERVICE);
    }
    out
}

/// A workload as an endpoint of a service with `ports`: its port for each service port is the one it names
/// for that port's name, else the port's target.
fn endpoint(w: &WorkloadEntrySpec, ports: &[(ServicePort, u16)]) -> Endpoint {
    Endpoint {
        address: w.address.clone(),
        ports: ports
            .iter()
            .map(|(p, target)| {
                let own = w
                    .ports
                    .get(&p.name)
                    .and_then(|n| u16::try_from(*n).ok())
                    .filter(|n| *n != 0);
                (p.number, own.unwrap_or(*target))
            })
            .collect(),
        labels: w.labels.clone(),
        weight: w.weight.unwrap_or(1).max(1),
        locality: w.locality.clone(),
        service_account: w.service_account.clone(),
    }
}

fn workload_entry(w: &Resource<WorkloadEntrySpec>, errors: &mut Vec<ConfigError>) {
    let mut e = Errs::new(w, "WorkloadEntry", errors);
    if w.spec.address.is_empty() {
        e.push("spec.address", "a WorkloadEntry needs an address");
    }
    for (name, port) in &w.spec.ports {
        e.port(&format!("spec.ports.{name}"), *port);
    }
}
