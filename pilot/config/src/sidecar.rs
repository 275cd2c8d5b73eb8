//! The validated `Sidecar` resource: which one applies to a proxy, and what it imports.
//!
//! Istio's rules: a proxy takes the first Sidecar of its namespace whose `workloadSelector` its labels
//! match; else the namespace's Sidecar without a selector; else the one without a selector in the root
//! namespace ([`ROOT_NAMESPACE`]), whose `.` then stands for the proxy's namespace; else none, and it
//! imports the whole mesh. "First" is the order written (file path, then position), where Istio takes the
//! oldest. A Sidecar without `egress` imports everything (`*/*`).

use std::net::{IpAddr, SocketAddr};

use sextant_resources::Resource;

use crate::protocol::Protocol;
use crate::types::{CaptureMode, Labels, OutboundMode, SidecarSpec};

/// The namespace whose selector-less Sidecar is the mesh's default (Istio's mesh config `rootNamespace`).
pub const ROOT_NAMESPACE: &str = "istio-system";

/// A validated Sidecar.
#[derive(Clone, Debug)]
pub struct Sidecar {
    /// The resource as written.
    pub resource: Resource<SidecarSpec>,
    /// The labels a workload must carry; `None`: the namespace's default.
    pub selector: Option<Labels>,
    /// Outbound imports, port-specific ones first, the one for every port (if any) last.
    pub egress: Vec<Egress>,
    /// Inbound ports of the workload.
    pub ingress: Vec<Ingress>,
    /// Where calls to unknown hosts go.
    pub outbound: OutboundMode,
}

/// A port of a Sidecar listener, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarPort {
    /// The number.
    pub number: u16,
    /// The protocol, when written.
    pub protocol: Option<Protocol>,
}

/// One egress listener: the hosts imported for one port, or for every port.
#[derive(Clone, Debug)]
pub struct Egress {
    /// The port; `None`: every port.
    pub port: Option<SidecarPort>,
    /// The address its listener takes, when written.
    pub bind: Option<IpAddr>,
    /// How connections reach it.
    pub capture: CaptureMode,
    /// What it imports.
    pub hosts: Vec<HostImport>,
}

/// One inbound port of the workload and where its connections go.
#[derive(Clone, Debug)]
pub struct Ingress {
    /// The port connections arrive on; its protocol decides HTTP or TCP proxying.
    pub port: u16,
    /// The port's protocol.
    pub protocol: Protocol,
    /// The address the listener binds when it binds its own (`captureMode: NONE`, or a proxy without
    /// interception).
    pub bind: Option<IpAddr>,
    /// How connections reach it.
    pub capture: CaptureMode,
    /// Where the workload listens (a loopback address).
    pub endpoint: SocketAddr,
}

/// The namespace part of an egress host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportNamespace {
    /// `*`: any namespace.
    Any,
    /// `.`: the proxy's namespace.
    Own,
    /// `~`: none (the host is not imported).
    Nothing,
    /// One namespace.
    Named(String),
}

/// An egress host, `namespace/dnsName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostImport {
    /// Which namespaces' resources it imports.
    pub namespace: ImportNamespace,
    /// The host, lower case: fully qualified, `*.suffix`, or `*`.
    pub host: String,
}

impl HostImport {
    /// Reads `ns/host`; `None` when it is not of that form (validation says why).
    pub fn parse(text: &str) -> Option<HostImport> {
        let (ns, host) = text.split_once('/')?;
        let namespace = match ns {
            "*" => ImportNamespace::Any,
            "." => ImportNamespace::Own,
            "~" => ImportNamespace::Nothing,
            other => ImportNamespace::Named(other.to_string()),
        };
        Some(HostImport {
            namespace,
            host: host.to_ascii_lowercase(),
        })
    }

    /// Whether this imports a resource of `namespace` for `host` (either may be a wildcard: a wildcard
    /// VirtualService host is imported by the names it covers) for a proxy in `proxy_namespace`.
    pub fn imports(&self, proxy_namespace: &str, namespace: &str, host: &str) -> bool {
        let ns = match &self.namespace {
            ImportNamespace::Any => true,
            ImportNamespace::Own => namespace == proxy_namespace,
            ImportNamespace::Nothing => false,
            ImportNamespace::Named(n) => n == namespace,
        };
        ns && (self.host == "*"
            || crate::host::matches(&self.host, host)
            || crate::host::matches(host, &self.host))
    }
}

impl Egress {
    /// Whether this listener imports a resource of `namespace` for `host`, for a proxy in
    /// `proxy_namespace`.
    pub fn imports(&self, proxy_namespace: &str, namespace: &str, host: &str) -> bool {
        self.hosts
            .iter()
            .any(|h| h.imports(proxy_namespace, namespace, host))
    }

    /// The egress listener for every port that a Sidecar without `egress` has: `*/*`.
    pub fn everything() -> Egress {
        Egress {
            port: None,
            bind: None,
            capture: CaptureMode::Default,
            hosts: vec![HostImport {
                namespace: ImportNamespace::Any,
                host: "*".into(),
            }],
        }
    }
}

/// The Sidecar that applies to a proxy in `namespace` with `labels`, by Istio's rules (see the module).
pub fn applicable<'a>(
    sidecars: &'a [Sidecar],
    namespace: &str,
    labels: &Labels,
) -> Option<&'a Sidecar> {
    let default_of =
        |ns: &str| (sidecars.iter()).find(|s| s.selector.is_none() && s.resource.namespace == ns);
    (sidecars.iter())
        .find(|s| {
            s.resource.namespace == namespace
                && s.selector.as_ref().is_some_and(|l| labels.matches(l))
        })
        .or_else(|| default_of(namespace))
        .or_else(|| default_of(ROOT_NAMESPACE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_imports() {
        let own = HostImport::parse("./*").unwrap();
        assert!(own.imports("shop", "shop", "cart.shop.svc.cluster.local"));
        assert!(!own.imports("shop", "prod", "cart.prod.svc.cluster.local"));
        let named = HostImport::parse("istio-system/*.svc.cluster.local").unwrap();
        assert!(named.imports(
            "shop",
            "istio-system",
            "istiod.istio-system.svc.cluster.local"
        ));
        assert!(!named.imports("shop", "istio-system", "example.com"));
        let any = HostImport::parse("*/api.example.com").unwrap();
        assert!(any.imports("shop", "web", "api.example.com"));
        assert!(!any.imports("shop", "web", "www.example.com"));
        // A wildcard VirtualService host is imported by a name it covers.
        assert!(any.imports("shop", "web", "*.example.com"));
        assert!(
            !HostImport::parse("~/*")
                .unwrap()
                .imports("shop", "shop", "a")
        );
        assert_eq!(HostImport::parse("no-namespace"), None);
    }
}
