//! The pure step from the watched objects to the registry's services: host names, ports, and the ready
//! endpoints of each Service's EndpointSlices with their Pod's labels and service account.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pilot_config::registry::limits;
use pilot_config::types::{Location, Resolution};
use pilot_config::{Endpoint, Service, ServicePort};

use crate::objects::{Key, PodInfo, ServiceInfo, ServiceKind, SliceInfo};

/// The services built from one state of the watched objects.
#[derive(Debug, Default, PartialEq)]
pub struct Built {
    /// Services by host name.
    pub services: BTreeMap<String, Arc<Service>>,
    /// Ready endpoints left out because a service or the registry had reached its limit.
    pub left_out: u64,
}

/// The host name of Service `name` in `namespace`: `name.namespace.svc.domain`.
pub fn hostname(namespace: &str, name: &str, domain: &str) -> String {
    format!("{name}.{namespace}.svc.{domain}")
}

/// Builds the services. ClusterIP and headless Services get the ready addresses of their EndpointSlices
/// (`kubernetes.io/service-name`) as static endpoints, each service port mapped to the slice port of the
/// same name; ExternalName Services become mesh-external, DNS-resolved services whose one endpoint is the
/// external name. Endpoints beyond [`limits::MAX_ENDPOINTS_PER_SERVICE`] per service or
/// [`limits::MAX_ENDPOINTS`] in all are left out and counted.
pub fn build(
    services: &BTreeMap<Key, ServiceInfo>,
    slices: &BTreeMap<Key, SliceInfo>,
    pods: &BTreeMap<Key, PodInfo>,
    domain: &str,
) -> Built {
    let mut by_service: BTreeMap<&Key, Vec<&SliceInfo>> = BTreeMap::new();
    for slice in slices.values() {
        if let Some(owner) = &slice.service {
            by_service.entry(owner).or_default().push(slice);
        }
    }
    let mut built = Built::default();
    let mut total = 0usize;
    for (key, info) in services.iter().take(limits::MAX_SERVICES) {
        let (namespace, name) = key;
        let ports: Vec<ServicePort> = info
            .ports
            .iter()
            .map(|p| ServicePort {
                name: p.name.clone(),
                number: p.number,
                protocol: p.protocol,
            })
            .collect();
        let (location, resolution, mut endpoints) = match &info.kind {
            ServiceKind::ExternalName(external) => {
                let identity = info.ports.iter().map(|p| (p.number, p.number)).collect();
                (
                    Location::MeshExternal,
                    Resolution::Dns,
                    vec![Endpoint {
                        address: external.clone(),
                        ports: identity,
                        labels: Default::default(),
                        weight: 1,
                        locality: None,
                        service_account: None,
                    }],
                )
            }
            ServiceKind::ClusterIp | ServiceKind::Headless => {
                let slices = by_service.get(key).map(Vec::as_slice).unwrap_or_default();
                (
                    Location::MeshInternal,
                    Resolution::Static,
                    endpoints(info, slices, pods),
                )
            }
        };
        let room = limits::MAX_ENDPOINTS_PER_SERVICE.min(limits::MAX_ENDPOINTS - total);
        if endpoints.len() > room {
            built.left_out += (endpoints.len() - room) as u64;
            endpoints.truncate(room);
        }
        total += endpoints.len();
        let host = hostname(namespace, name, domain);
        built.services.insert(
            host.clone(),
            Arc::new(Service {
                hostname: host,
                namespace: namespace.clone(),
                ports,
                location,
                resolution,
                endpoints,
                export_to: info.export_to.clone(),
                subject_alt_names: Vec::new(),
            }),
        );
    }
    built
}

/// The ready endpoints of `slices` (an address listed twice with the same ports, as during a move between
/// slices, counts once; the same address with other ports, like two processes of one host, twice).
fn endpoints(
    service: &ServiceInfo,
    slices: &[&SliceInfo],
    pods: &BTreeMap<Key, PodInfo>,
) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices {
        let ports: BTreeMap<u16, u16> = service
            .ports
            .iter()
            .filter_map(|p| Some((p.number, *slice.ports.get(&p.name)?)))
            .collect();
        if ports.is_empty() {
            continue;
        }
        for e in slice.endpoints.iter().filter(|e| e.ready) {
            let pod = e.pod.as_ref().and_then(|k| pods.get(k));
            for address in &e.addresses {
                if !seen.insert((address.clone(), ports.clone())) {
                    continue;
                }
                out.push(Endpoint {
                    address: address.clone(),
                    ports: ports.clone(),
                    labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
                    weight: 1,
                    // Region is a Node label this registry does not watch: the zone alone.
                    locality: e.zone.as_ref().map(|z| format!("/{z}")),
                    service_account: pod.map(|p| p.service_account.clone()),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::{PortInfo, SliceEndpoint};
    use pilot_config::Protocol;

    fn k(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    #[test]
    fn endpoints_map_ports_by_name_and_skip_unready() {
        let services = BTreeMap::from([(
            k("default", "reviews"),
            ServiceInfo {
                kind: ServiceKind::ClusterIp,
                ports: vec![PortInfo {
                    name: "http".into(),
                    number: 9080,
                    protocol: Protocol::Http,
                }],
                export_to: Default::default(),
            },
        )]);
        let endpoint = |ip: &str, ready: bool, pod: &str| SliceEndpoint {
            addresses: vec![ip.into()],
            ready,
            pod: Some(k("default", pod)),
            zone: Some("z1".into()),
        };
        let slices = BTreeMap::from([(
            k("default", "reviews-abc"),
            SliceInfo {
                service: Some(k("default", "reviews")),
                ports: BTreeMap::from([("http".to_string(), 8080)]),
                endpoints: vec![
                    endpoint("10.0.0.1", true, "reviews-v1"),
                    endpoint("10.0.0.2", false, "reviews-v2"),
                ],
            },
        )]);
        let pods = BTreeMap::from([(
            k("default", "reviews-v1"),
            PodInfo {
                labels: [("version".to_string(), "v1".to_string())].into(),
                service_account: "bookinfo-reviews".into(),
            },
        )]);
        let built = build(&services, &slices, &pods, "cluster.local");
        let s = &built.services["reviews.default.svc.cluster.local"];
        assert_eq!(s.endpoints.len(), 1);
        let e = &s.endpoints[0];
        assert_eq!(e.address, "10.0.0.1");
        assert_eq!(e.ports, BTreeMap::from([(9080, 8080)]));
        assert_eq!(e.labels["version"], "v1");
        assert_eq!(e.locality.as_deref(), Some("/z1"));
        assert_eq!(e.service_account.as_deref(), Some("bookinfo-reviews"));
        assert_eq!(built.left_out, 0);
    }

    #[test]
    fn external_name_resolves_by_dns() {
        let services = BTreeMap::from([(
            k("default", "db"),
            ServiceInfo {
                kind: ServiceKind::ExternalName("db.example.com".into()),
                ports: vec![PortInfo {
                    name: "tcp".into(),
                    number: 5432,
                    protocol: Protocol::Tcp,
                }],
                export_to: Default::default(),
            },
        )]);
        let built = build(&services, &BTreeMap::new(), &BTreeMap::new(), "corp.local");
        let s = &built.services["db.default.svc.corp.local"];
        assert_eq!(s.resolution, Resolution::Dns);
        assert_eq!(s.location, Location::MeshExternal);
        assert_eq!(s.endpoints[0].address, "db.example.com");
        assert_eq!(s.endpoints[0].ports, BTreeMap::from([(5432, 5432)]));
    }
}
