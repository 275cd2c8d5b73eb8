//! The validated mesh model: what [`crate::validate`] produces and pilot translates to Envoy resources.
//!
//! Every host is fully qualified, every subset a route names is resolved to its labels, every regex is
//! compiled, every port is a `u16` in range, and route weights sum to 100. The model is immutable; a reload
//! builds a new one.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use sextant_resources::Resource;

use crate::export::ExportTo;
use crate::registry::Service;
use crate::types::{
    DestinationRuleSpec, GatewaySpec, HttpRoute, L4Match, Labels, Subset, VirtualServiceSpec,
};

/// The validated networking configuration.
#[derive(Clone, Debug, Default)]
pub struct MeshConfig {
    /// VirtualServices, in file order.
    pub virtual_services: Vec<VirtualService>,
    /// DestinationRules by fully qualified host.
    pub destination_rules: BTreeMap<String, DestinationRule>,
    /// Gateways, in file order.
    pub gateways: Vec<Resource<GatewaySpec>>,
    /// Sidecars, in file order.
    pub sidecars: Vec<crate::sidecar::Sidecar>,
    /// The security resources in force (fail-closed stand-ins included).
    pub security: crate::security::Security,
    /// The services of the file-mode registry (ServiceEntries with their endpoints and selected
    /// WorkloadEntries), by host name; hand them to [`crate::FileRegistry::update`].
    pub services: Arc<BTreeMap<String, Arc<Service>>>,
    /// The digest of the files this was built from.
    pub digest: u64,
}

impl MeshConfig {
    /// The VirtualServices exported to `namespace` whose hosts cover `host` (a fully qualified name) at the
    /// sidecars (`mesh`).
    pub fn virtual_services_for(&self, host: &str, namespace: &str) -> Vec<&VirtualService> {
        self.virtual_services
            .iter()
            .filter(|vs| {
                vs.export_to.visible_to(namespace)
                    && vs.gateways.iter().any(|g| g == MESH_GATEWAY)
                    && vs.hosts.iter().any(|h| crate::host::matches(h, host))
            })
            .collect()
    }

    /// The DestinationRule of `host`, when it is exported to `namespace`.
    pub fn destination_rule(&self, host: &str, namespace: &str) -> Option<&DestinationRule> {
        self.destination_rules
            .get(host)
            .filter(|r| r.export_to.visible_to(namespace))
    }

    /// The Sidecar that applies to a proxy in `namespace` with `labels` (see [`crate::sidecar`]).
    pub fn sidecar_for(
        &self,
        namespace: &str,
        labels: &Labels,
    ) -> Option<&crate::sidecar::Sidecar> {
        crate::sidecar::applicable(&self.sidecars, namespace, labels)
    }

    /// The labels of `subset` of `host`, when a DestinationRule defines it.
    pub fn subset(&self, host: &str, subset: &str) -> Option<&Subset> {
        self.destination_rules.get(host)?.subset(subset)
    }
}

/// The gateway name meaning every sidecar of the mesh.
pub const MESH_GATEWAY: &str = "mesh";

/// A validated VirtualService.
#[derive(Clone, Debug)]
pub struct VirtualService {
    /// The resource as written (name, namespace, origin, spec).
    pub resource: Resource<VirtualServiceSpec>,
    /// Hosts, fully qualified (see [`crate::host`]).
    pub hosts: Vec<String>,
    /// Gateways as `namespace/name`, or [`MESH_GATEWAY`]; `[mesh]` when none was written.
    pub gateways: Vec<String>,
    /// HTTP routes, in order.
    pub http: Vec<HttpRouteModel>,
    /// TCP routes, in order.
    pub tcp: Vec<TcpRouteModel>,
    /// TLS passthrough routes, in order.
    pub tls: Vec<TlsRouteModel>,
    /// The namespaces whose proxies apply it.
    pub export_to: ExportTo,
}

/// A validated HTTP route.
#[derive(Clone, Debug)]
pub struct HttpRouteModel {
    /// The route as written (timeout, retries, fault, rewrite, redirect, headers, CORS, …; all checked).
    pub spec: HttpRoute,
    /// Its conditions, compiled; empty means every request.
    pub matches: Vec<RequestMatch>,
    /// Its destinations with resolved hosts and subsets; weights sum to 100.
    pub destinations: Vec<RouteTarget>,
    /// The mirror destination, resolved.
    pub mirror: Option<RouteTarget>,
}

/// A validated TLS passthrough route.
#[derive(Clone, Debug)]
pub struct TlsRouteModel {
    /// Its conditions as written (SNI hosts lower-cased).
    pub matches: Vec<crate::types::TlsMatch>,
    /// Its destinations, resolved; weights sum to 100.
    pub destinations: Vec<RouteTarget>,
}

/// A validated TCP route.
#[derive(Clone, Debug)]
pub struct TcpRouteModel {
    /// Its conditions as written.
    pub matches: Vec<L4Match>,
    /// Its destinations, resolved; weights sum to 100.
    pub destinations: Vec<RouteTarget>,
}

/// A destination of a route, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTarget {
    /// The fully qualified host.
    pub host: String,
    /// The subset, when one was named.
    pub subset: Option<String>,
    /// The subset's labels (empty: every endpoint of the host).
    pub labels: Labels,
    /// The port, when one was named.
    pub port: Option<u16>,
    /// Share of the traffic in percent.
    pub weight: u32,
}

/// The compiled conditions of one HTTP match; all must hold.
#[derive(Clone, Debug, Default)]
pub struct RequestMatch {
    /// The path (case-insensitively when the match said `ignoreUriCase`).
    pub uri: Option<Matcher>,
    /// The scheme.
    pub scheme: Option<Matcher>,
    /// The method.
    pub method: Option<Matcher>,
    /// The authority.
    pub authority: Option<Matcher>,
    /// Headers (lower-case names) and how each must match.
    pub headers: Vec<(String, Matcher)>,
    /// Headers that must not match.
    pub without_headers: Vec<(String, Matcher)>,
    /// Query parameters.
    pub query_params: Vec<(String, Matcher)>,
    /// The destination port.
    pub port: Option<u16>,
    /// Labels of the calling workload.
    pub source_labels: Labels,
    /// Gateways this condition applies at (`namespace/name` or `mesh`); empty: the VirtualService's.
    pub gateways: Vec<String>,
    /// Whether `uri` ignores case.
    pub ignore_uri_case: bool,
}

/// A compiled string match.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// The value is present (header and query matches written `{}`).
    Present,
    /// Equals.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// The whole value matches (RE2 syntax, compiled with the `regex` crate, anchored at both ends).
    Regex(Regex),
}

impl Matcher {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Present => true,
            Matcher::Exact(s) => value == s,
            Matcher::Prefix(s) => value.starts_with(s.as_str()),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Matcher::Present, Matcher::Present) => true,
            (Matcher::Exact(a), Matcher::Exact(b)) | (Matcher::Prefix(a), Matcher::Prefix(b)) => {
                a == b
            }
            (Matcher::Regex(a), Matcher::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// A validated DestinationRule.
#[derive(Clone, Debug)]
pub struct DestinationRule {
    /// The resource as written.
    pub resource: Resource<DestinationRuleSpec>,
    /// The fully qualified host.
    pub host: String,
    /// The namespaces whose proxies apply it.
    pub export_to: ExportTo,
}

impl DestinationRule {
    /// The subset named `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets().find(|s| s.name == name)
    }

    /// Its subsets (names are unique: validation refuses repeats).
    pub fn subsets(&self) -> impl Iterator<Item = &Subset> {
        self.resource.spec.subsets.iter()
    }
}
