//! Pilot's translation: the validated mesh model and the service registry, seen from one proxy, become the
//! Envoy v3 resources that proxy is served.
//!
//! Data flow: `pilot-config` validates the Istio networking resources into a [`pilot_config::MeshConfig`]
//! and the registry hands out a [`pilot_config::RegistrySnapshot`]; the ADS server (`pilot-xds`) learns a
//! proxy's identity from the first request of its stream ([`ProxyInfo::from_node`]); [`translate`] turns
//! the three into an immutable [`pilot_xds::Snapshot`] that is always [`pilot_xds::Snapshot::consistent`]
//! (every EDS cluster has its assignment, every RDS name its route configuration and the other way round),
//! which a `SnapshotSource` publishes.
//!
//! What a proxy gets, Istio-shaped so existing tooling and habits carry over:
//! - clusters `outbound|PORT||HOST` per service port and `outbound|PORT|SUBSET|HOST` per DestinationRule
//!   subset ([`cluster`]), fed over EDS with the matching endpoints ([`endpoint`]), shaped by the rule's
//!   traffic policy ([`policy`]: load balancing, connection pool, outlier detection, with per-subset and
//!   per-port overrides), plus `BlackHoleCluster` and `PassthroughCluster`;
//! - listeners ([`listener`]): with `REDIRECT` interception `virtualOutbound` (15001), `virtualInbound`
//!   (15006) and unbound per-port listeners `0.0.0.0_PORT`; with `NONE` each port's listener binds
//!   `127.0.0.1:PORT` itself; proxyless gRPC clients get one `api_listener` per `HOST:PORT` instead;
//! - one route configuration per HTTP port, named by the number ([`route`], [`action`]): a virtual host per
//!   service with Istio's domains and the VirtualServices' routes in order (matches, weights, rewrites,
//!   redirects, timeouts, retries, faults, mirrors, header edits, CORS), or a default route;
//! - a proxy sees only the services, VirtualServices and DestinationRules exported to its namespace
//!   (`exportTo`, [`pilot_config::export`]), and of those only what its `Sidecar` imports ([`scope`]);
//!   the Sidecar's ingress ports become `inbound|PORT||` clusters and inbound chains ([`inbound`]);
//! - a port of undeclared protocol (or shared by HTTP and TCP services) is sniffed: the HTTP inspector
//!   chooses between the HTTP chain and the TCP one ([`listener`]); so is a port of undeclared protocol of
//!   the workload's own, inbound, where mesh mTLS whose client announced HTTP in its ALPN goes to the HTTP
//!   chain too ([`inbound`]); HTTP requests to mesh-mTLS clusters announce it, as Istio's sidecars do
//!   ([`alpn`]);
//! - routers (ingress gateways) get only the listeners and routes of the Gateways selecting them
//!   ([`gateway`]; with `AUTO_PASSTHROUGH` servers, the SNI-DNAT clusters `outbound_.PORT_.SUBSET_.HOST`); a DestinationRule's `tls` becomes the clusters' TLS transport socket ([`tls`]);
//! - mesh mTLS ([`MeshTls`]): sidecars and gateways get their workload certificate and the trust root as SDS
//!   secrets `default` and `ROOTCA`; `ISTIO_MUTUAL` clusters present the one and check the server's SPIFFE
//!   ID against the other, and `virtualInbound` terminates mesh mTLS (PERMISSIVE: plain text still passes);
//!   a proxy keeping its own key ([`ProxyInfo::local_certificate`]) gets no secret, its configuration naming
//!   the same two, which an Envoy reads from its agent's SDS cluster ([`tls::SecretSource`]);
//! - the hub ([`Options::hub`], `--hub-service`): sidecars get its cluster, and in their HTTP connection
//!   managers the Sextant proxy's hub filter or, for Envoy, ext_authz and a gRPC access log ([`hub`]).
//!
//! The modules are layered, none importing one that imports it: at the bottom the names they share
//! ([`names`]), routes ([`route`], [`action`]) and the pieces listeners are made of ([`filters`], with
//! [`filters::Listeners`]); above them clusters ([`cluster`]), the passes over assembled listeners
//! ([`alpn`], [`hub`]), inbound security ([`authz`]), the workload's ports ([`inbound`]) and gateways
//! ([`gateway`]); listener assembly ([`listener`]) at the top.
//!
//! Not translated yet: inbound listeners for the proxy's own workload without a Sidecar `ingress` (inbound
//! traffic passes through `virtualInbound`), per-connection TCP routes by destination subnet, STRICT inbound mTLS (PeerAuthentication), TLS for proxyless gRPC clients
//! (they take no certificate files; their clusters stay plain text).

pub mod action;
pub mod alpn;
pub mod authz;
pub mod cluster;
pub mod endpoint;
pub mod filters;
pub mod gateway;
pub mod hub;
pub mod inbound;
pub mod listener;
pub mod names;
pub mod policy;
mod proxy;
pub mod route;
pub mod scope;
pub mod tls;

#[cfg(test)]
mod tests;

use pilot_config::{MeshConfig, RegistrySnapshot};
use pilot_xds::{Snapshot, SnapshotBuilder};

pub use hub::service::{HubService, HubServiceError};
pub use proxy::{DataPlane, Interception, LOCAL_CERT_METADATA, ProxyInfo, ProxyKind};

/// The Istio name of the cluster for `port` of `host`, or of one subset of it: `outbound|9080|v1|reviews…`.
pub fn cluster_name(port: u16, subset: Option<&str>, host: &str) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

/// The route configuration of an HTTP port is named by its number, as Istio names it.
pub fn route_name(port: u16) -> String {
    port.to_string()
}

/// The mesh's mTLS as one proxy sees it.
#[derive(Clone, Copy, Debug)]
pub struct MeshTls<'a> {
    /// The trust domain of the mesh's SPIFFE IDs.
    pub trust_domain: &'a str,
    /// The proxy's own certificate, for proxies pilot sends one ([`ProxyInfo::sent_certificates`]; it is
    /// never sent to a proxy keeping its own, [`ProxyInfo::local_certificate`]); without it (and without one
    /// of the proxy's own) `ISTIO_MUTUAL` clusters still name the secrets, and `virtualInbound` passes
    /// everything through.
    pub certificate: Option<WorkloadCertificate<'a>>,
}

impl MeshTls<'_> {
    /// Whether `proxy` holds a workload certificate: sent by pilot, or its own. Mesh mTLS is terminated
    /// inbound only then.
    pub fn holds_certificate(&self, proxy: &ProxyInfo) -> bool {
        if proxy.local_certificate {
            proxy.takes_certificates()
        } else {
            self.certificate.is_some()
        }
    }
}

impl Default for MeshTls<'_> {
    /// Trust domain `cluster.local`, no certificate.
    fn default() -> Self {
        MeshTls {
            trust_domain: "cluster.local",
            certificate: None,
        }
    }
}

/// A workload's certificate and the trust root, PEM.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadCertificate<'a> {
    /// The workload certificate and its chain up to the root.
    pub chain_pem: &'a str,
    /// The workload's private key.
    pub key_pem: &'a str,
    /// The mesh's trust root.
    pub root_pem: &'a str,
}

/// What translation is given besides the mesh, the registry and the proxy: pilot's own settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// The mesh's mTLS as the proxy sees it.
    pub mtls: MeshTls<'a>,
    /// The hub's service port (`--hub-service`): sidecars get its cluster and the filters calling it
    /// ([`hub`]) once the registry has it. With it set, translate [`ProxyInfo::view_with_hub`] views.
    pub hub: Option<&'a HubService>,
}

/// Every resource `proxy` needs, as one consistent snapshot, without the hub: [`translate_with`] and
/// `mtls` alone.
pub fn translate(
    mesh: &MeshConfig,
    services: &RegistrySnapshot,
    proxy: &ProxyInfo,
    mtls: &MeshTls<'_>,
) -> Snapshot {
    let options = Options {
        mtls: *mtls,
        hub: None,
    };
    translate_with(mesh, services, proxy, &options)
}

/// Every resource `proxy` needs, as one consistent snapshot.
///
/// Translation never fails: whatever validated config and registry it is given, the result names only
/// what it holds. Something Envoy could not take (a service whose name collides with another's domains)
/// is left out rather than sent; a hub service the registry does not have (yet) leaves the hub out.
pub fn translate_with(
    mesh: &MeshConfig,
    services: &RegistrySnapshot,
    proxy: &ProxyInfo,
    options: &Options<'_>,
) -> Snapshot {
    let mtls = &options.mtls;
    let hub = (options.hub)
        .filter(|_| proxy.kind == ProxyKind::Sidecar)
        .and_then(|h| h.resolve(services));
    let mut b = SnapshotBuilder::new();
    // A proxy keeping its own key gets no secret, whatever it is given: no private key leaves pilot for it.
    if let Some(cert) = mtls
        .certificate
        .as_ref()
        .filter(|_| !proxy.local_certificate)
    {
        for secret in tls::secrets(cert) {
            b.secret(&secret);
        }
    }
    let scope = scope::Scope::of(mesh, services, proxy);
    let mut clusters = cluster::clusters(mesh, &scope, proxy, mtls);
    if let Some(hub) = &hub {
        cluster::add_hub(&mut clusters, mesh, hub, proxy, mtls);
    }
    let sni_dnat = match proxy.kind {
        ProxyKind::Router => {
            let targets = gateway::auto_passthrough(mesh, services, proxy);
            cluster::sni_dnat(mesh, &targets, proxy, mtls)
        }
        _ => cluster::Clusters::default(),
    };
    for c in clusters.clusters.iter().chain(&sni_dnat.clusters) {
        b.cluster(c);
    }
    for e in clusters.assignments.iter().chain(&sni_dnat.assignments) {
        b.endpoints(e);
    }
    let security = authz::inbound_security(mesh, proxy);
    let inbound = inbound::inbound(&scope, services, proxy, mtls, &security);
    for c in &inbound.clusters {
        b.cluster(c);
    }
    let mut listeners =
        listener::listeners(mesh, services, &scope, &inbound, &security, proxy, mtls);
    if let Some(hub) = &hub {
        hub::place(&mut listeners, hub, services, proxy, mtls.trust_domain);
    }
    if proxy.kind != ProxyKind::ProxylessGrpc {
        alpn::place(&mut listeners, &clusters.istio_mutual);
    }
    for l in &listeners.listeners {
        b.listener(l);
    }
    for r in &listeners.routes {
        b.route(r);
    }
    b.build()
}
