//! What a sidecar imports of the mesh: the services, VirtualServices and ports its `Sidecar` resource
//! selects from what is exported to its namespace — everything exported to it when no Sidecar applies.
//!
//! Istio's rules: each egress listener imports the services and VirtualServices of its `namespace/host`s,
//! and with a VirtualService the services its routes go to (so a route never points at a cluster the proxy
//! lacks). A port gets the listener of the egress listener for that port, else of the one for every port;
//! a port neither covers gets no listener, and its connections go where `outboundTrafficPolicy` says.
//! Clusters are made for every service any egress listener imports. Routers are not scoped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use pilot_config::sidecar::Egress;
use pilot_config::types::OutboundMode;
use pilot_config::{MESH_GATEWAY, MeshConfig, Protocol, RegistrySnapshot, Service, VirtualService};

use crate::{ProxyInfo, ProxyKind};

/// What one proxy imports.
#[derive(Debug)]
pub struct Scope<'a> {
    /// The Sidecar applied, if any.
    pub sidecar: Option<&'a pilot_config::Sidecar>,
    /// Every imported service, by host name.
    pub services: Vec<&'a Arc<Service>>,
    /// Every imported VirtualService, in file order (whatever gateways it is bound to: a match may bind
    /// itself to the mesh).
    pub virtual_services: Vec<&'a VirtualService>,
    /// Where calls to unknown hosts go.
    pub outbound: OutboundMode,
    /// Per egress listener (one, importing everything, without a Sidecar): what it imports.
    listeners: Vec<Imported<'a>>,
}

/// What one egress listener imports.
#[derive(Debug)]
struct Imported<'a> {
    egress: Option<&'a Egress>,
    services: Vec<&'a Arc<Service>>,
}

/// The services a proxy's listener on one port serves, with the protocol each is served with.
#[derive(Debug, Default)]
pub struct PortServices<'a> {
    /// The egress listener the port's listener comes from (`None` without a Sidecar).
    pub egress: Option<&'a Egress>,
    /// The services, by host name, and their protocol on the port (an egress port's protocol wins).
    pub services: Vec<(&'a Service, Protocol)>,
}

impl<'a> Scope<'a> {
    /// The scope of `proxy`: its Sidecar's imports for sidecars and proxyless clients, everything exported
    /// to its namespace for routers or when no Sidecar applies.
    pub fn of(
        mesh: &'a MeshConfig,
        registry: &'a RegistrySnapshot,
        proxy: &'a ProxyInfo,
    ) -> Scope<'a> {
        let ns = proxy.namespace.as_str();
        let visible_services: Vec<&Arc<Service>> = registry.visible_to(ns).collect();
        let visible_vs = (mesh.virtual_services.iter()).filter(|vs| vs.export_to.visible_to(ns));
        let sidecar = (proxy.kind != ProxyKind::Router)
            .then(|| mesh.sidecar_for(ns, &proxy.labels))
            .flatten();
        let Some(sidecar) = sidecar else {
            return Scope {
                sidecar: None,
                services: visible_services.clone(),
                virtual_services: visible_vs.collect(),
                outbound: OutboundMode::AllowAny,
                listeners: vec![Imported {
                    egress: None,
                    services: visible_services,
                }],
            };
        };
        let visible_vs: Vec<&VirtualService> = visible_vs.collect();
        let mut all_vs = BTreeSet::new();
        let mut listeners = Vec::with_capacity(sidecar.egress.len());
        for egress in &sidecar.egress {
            let mut hosts: BTreeSet<&str> = BTreeSet::new();
            for (i, vs) in visible_vs.iter().enumerate() {
                let ns_of = &vs.resource.namespace;
                if vs.hosts.iter().any(|h| egress.imports(ns, ns_of, h)) {
                    all_vs.insert(i);
                    hosts.extend(route_hosts(vs));
                }
            }
            let services = (visible_services.iter())
                .filter(|s| {
                    hosts.contains(s.hostname.as_str())
                        || egress.imports(ns, &s.namespace, &s.hostname)
                })
                .copied()
                .collect();
            listeners.push(Imported {
                egress: Some(egress),
                services,
            });
        }
        let mut services: Vec<&Arc<Service>> = listeners
            .iter()
            .flat_map(|l| l.services.iter().copied())
            .collect();
        services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        services.dedup_by(|a, b| a.hostname == b.hostname);
        Scope {
            sidecar: Some(sidecar),
            services,
            virtual_services: all_vs.into_iter().map(|i| visible_vs[i]).collect(),
            outbound: sidecar.outbound,
            listeners,
        }
    }

    /// The imported VirtualServices bound to the mesh whose hosts cover `host`.
    pub fn virtual_services_for(&self, host: &str) -> Vec<&'a VirtualService> {
        (self.virtual_services.iter())
            .filter(|vs| {
                vs.gateways.iter().any(|g| g == MESH_GATEWAY)
                    && vs
                        .hosts
                        .iter()
                        .any(|h| pilot_config::host::matches(h, host))
            })
            .copied()
            .collect()
    }

    /// Per port: the services the proxy's listener on it serves. A port an egress listener names is served
    /// with its imports (and its protocol, when written); any other with those of the listener for every
    /// port, if there is one.
    pub fn ports(&self) -> BTreeMap<u16, PortServices<'a>> {
        let named: BTreeSet<u16> = (self.listeners.iter())
            .filter_map(|l| l.egress?.port.as_ref().map(|p| p.number))
            .collect();
        let mut out: BTreeMap<u16, PortServices<'a>> = BTreeMap::new();
        for l in &self.listeners {
            let port = l.egress.and_then(|e| e.port.as_ref());
            for &s in &l.services {
                let s: &'a Service = s;
                for p in &s.ports {
                    let applies = match port {
                        Some(only) => only.number == p.number,
                        None => !named.contains(&p.number),
                    };
                    if !applies {
                        continue;
                    }
                    let protocol = port.and_then(|p| p.protocol).unwrap_or(p.protocol);
                    let entry = out.entry(p.number).or_default();
                    entry.egress = l.egress;
                    entry.services.push((s, protocol));
                }
            }
        }
        out
    }
}

/// The hosts a VirtualService's routes send traffic (and mirrors) to.
fn route_hosts(vs: &VirtualService) -> impl Iterator<Item = &str> {
    let http = vs
        .http
        .iter()
        .flat_map(|r| r.destinations.iter().chain(&r.mirror));
    let tcp = vs.tcp.iter().flat_map(|r| r.destinations.iter());
    let tls = vs.tls.iter().flat_map(|r| r.destinations.iter());
    http.chain(tcp).chain(tls).map(|t| t.host.as_str())
}
