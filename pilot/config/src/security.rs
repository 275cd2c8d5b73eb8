//! The validated `security.istio.io` resources, and which of them apply to a workload.
//!
//! They fail closed (see the crate's docs): [`crate::validate_each_after`] keeps the last good version of a
//! policy that turns invalid, and stands a deny-all ALLOW policy (or STRICT mTLS) in for one that never
//! validated; each such stand-in says why in [`AuthorizationPolicy::fail_closed`] /
//! [`PeerAuthentication::fail_closed`].
//!
//! Scope, as Istio's: a policy in the root namespace ([`crate::ROOT_NAMESPACE`]) applies to every namespace,
//! any other to its own; a `selector` narrows it to the workloads carrying its labels. The mTLS mode of a
//! workload port is the most specific that is set: the workload's policy (its port-level override, then its
//! `mtls`), the namespace's, the mesh's, else PERMISSIVE.

use std::collections::BTreeMap;

use crate::sidecar::ROOT_NAMESPACE;
use crate::types::{AuthorizationAction, Labels, MtlsMode, Rule};

/// A validated (or stood-in) AuthorizationPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The workloads it selects; `None`: all in scope.
    pub selector: Option<Labels>,
    /// What it does.
    pub action: AuthorizationAction,
    /// Its rules (an ALLOW policy without rules allows nothing).
    pub rules: Vec<Rule>,
    /// Why this is not the version written: the last good one kept, or a deny-all stand-in.
    pub fail_closed: Option<String>,
}

/// A validated (or stood-in) PeerAuthentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuthentication {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The workloads it selects; `None`: the namespace (the mesh, in the root namespace).
    pub selector: Option<Labels>,
    /// The mode of every port ([`MtlsMode::Unset`]: inherited).
    pub mode: MtlsMode,
    /// Per workload port, an override.
    pub ports: BTreeMap<u16, MtlsMode>,
    /// Why this is not the version written: the last good one kept, or a STRICT stand-in.
    pub fail_closed: Option<String>,
}

/// The security resources in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// AuthorizationPolicies, in the order written.
    pub authorization: Vec<AuthorizationPolicy>,
    /// PeerAuthentications, in the order written.
    pub peer_authentication: Vec<PeerAuthentication>,
}

/// A workload's inbound mTLS: the mode of its ports, and the ports whose mode differs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundMtls {
    /// The mode of every port not in `ports` (never [`MtlsMode::Unset`]).
    pub mode: MtlsMode,
    /// Ports with a mode of their own.
    pub ports: BTreeMap<u16, MtlsMode>,
}

fn in_scope(policy_ns: &str, selector: Option<&Labels>, namespace: &str, labels: &Labels) -> bool {
    (policy_ns == namespace || policy_ns == ROOT_NAMESPACE)
        && selector.is_none_or(|s| labels.matches(s))
}

impl Security {
    /// The AuthorizationPolicies that apply to a workload in `namespace` with `labels`, in order.
    pub fn authorization_for<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a Labels,
    ) -> impl Iterator<Item = &'a AuthorizationPolicy> {
        (self.authorization.iter())
            .filter(move |p| in_scope(&p.namespace, p.selector.as_ref(), namespace, labels))
    }

    /// The inbound mTLS of a workload in `namespace` with `labels`.
    pub fn mtls_for(&self, namespace: &str, labels: &Labels) -> InboundMtls {
        let pick = |f: &dyn Fn(&PeerAuthentication) -> bool| {
            self.peer_authentication.iter().find(|p| f(p))
        };
        let workload = pick(&|p| {
            p.namespace == namespace && p.selector.as_ref().is_some_and(|s| labels.matches(s))
        });
        let namespace_wide = pick(&|p| p.namespace == namespace && p.selector.is_none());
        let mesh = pick(&|p| p.namespace == ROOT_NAMESPACE && p.selector.is_none());
        let inherited = [namespace_wide, mesh]
            .into_iter()
            .flatten()
            .map(|p| p.mode)
            .find(|m| *m != MtlsMode::Unset)
            .unwrap_or(MtlsMode::Permissive);
        let mode = match workload.map(|p| p.mode) {
            Some(MtlsMode::Unset) | None => inherited,
            Some(m) => m,
        };
        let ports = (workload.into_iter())
            .flat_map(|p| &p.ports)
            .map(|(port, m)| (*port, if *m == MtlsMode::Unset { mode } else { *m }))
            .filter(|(_, m)| *m != mode)
            .collect();
        InboundMtls { mode, ports }
    }
}

/// An address or CIDR block as Istio writes them (`10.0.0.1`, `10.0.0.0/16`): (address, prefix length).
pub fn parse_cidr(v: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match v.split_once('/') {
        Some((ip, len)) => (
            ip.parse::<std::net::IpAddr>().ok()?,
            len.parse::<u8>().ok()?,
        ),
        None => {
            let ip = v.parse::<std::net::IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn peer(
        ns: &str,
        selector: Option<Labels>,
        mode: MtlsMode,
        ports: &[(u16, MtlsMode)],
    ) -> PeerAuthentication {
        PeerAuthentication {
            namespace: ns.into(),
            name: "p".into(),
            selector,
            mode,
            ports: ports.iter().copied().collect(),
            fail_closed: None,
        }
    }

    #[test]
    fn the_most_specific_mtls_mode_wins() {
        let web = labels(&[("app", "web")]);
        let mut s = Security::default();
        assert_eq!(s.mtls_for("shop", &web).mode, MtlsMode::Permissive);
        s.peer_authentication
            .push(peer(ROOT_NAMESPACE, None, MtlsMode::Strict, &[]));
        assert_eq!(s.mtls_for("shop", &web).mode, MtlsMode::Strict);
        s.peer_authentication
            .push(peer("shop", None, MtlsMode::Unset, &[]));
        assert_eq!(
            s.mtls_for("shop", &web).mode,
            MtlsMode::Strict,
            "UNSET inherits"
        );
        s.peer_authentication.push(peer(
            "shop",
            Some(web.clone()),
            MtlsMode::Permissive,
            &[(8080, MtlsMode::Strict), (9090, MtlsMode::Permissive)],
        ));
        let m = s.mtls_for("shop", &web);
        assert_eq!(m.mode, MtlsMode::Permissive);
        assert_eq!(m.ports, BTreeMap::from([(8080, MtlsMode::Strict)]));
        assert_eq!(
            s.mtls_for("shop", &labels(&[("app", "db")])).mode,
            MtlsMode::Strict
        );
    }
}
