//! Envoy's network RBAC filter (`envoy.filters.network.rbac`) on an accepted connection: a chain's RBAC
//! filters decide in order, once, from what the connection is known by when accepted (its addresses, the
//! SNI, the peer certificate of a chain that terminates TLS); the first denying closes it before any
//! upstream is connected. (Envoy 1.40 decides on the connection's first byte, by when its `tcp_proxy` has
//! connected upstream, so a denied client's connection reaches the upstream there and never here; the
//! decision itself is the same, as it reads nothing of the bytes.)
//!
//! Semantics as Envoy's: a policy matches when one of its permissions and one of its principals match; ALLOW
//! lets a connection through only if some policy matches (no policies: none passes), DENY closes it if some
//! policy matches. Each filter counts `PREFIX.rbac.allowed` or `PREFIX.rbac.denied`; after a denial the
//! later filters neither decide nor count.

use std::net::SocketAddr;

use proxy_config::rbac::{Action, Permission, Policy, Principal, Rbac, Rules};
use proxy_stats::{Counter, Scope, Stats};
use proxy_tls::PeerIdentity;

/// What RBAC reads of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// The peer's address (`direct_remote_ip`, `remote_ip` and `source_ip` alike).
    pub peer: SocketAddr,
    /// The original destination of a redirected connection, else the address it arrived on.
    pub destination: Option<SocketAddr>,
    /// The SNI the TLS inspector read; empty when none.
    pub server_name: &'a str,
    /// The peer of a TLS connection the chain terminated; `None` for plain text.
    pub tls: Option<&'a PeerIdentity>,
}

/// One chain's RBAC filters, in order, with their stats.
pub(crate) struct Filters {
    filters: Vec<Filter>,
    /// Whether a principal matches the names in a peer certificate (so they must be read).
    reads_certificates: bool,
}

struct Filter {
    rules: Option<Rules>,
    allowed: Counter,
    denied: Counter,
}

impl Filters {
    pub(crate) fn new(config: &[Rbac], stats: &Stats) -> Filters {
        let reads_certificates = config
            .iter()
            .filter_map(|f| f.rules.as_ref())
            .flat_map(|r| &r.policies)
            .flat_map(|p| &p.principals)
            .any(reads_certificate);
        let filters = config
            .iter()
            .map(|r| {
                let scope = Scope::rbac(&r.stat_prefix);
                // Envoy registers the shadow counters of every filter; no shadow rules run here.
                stats.counter(&scope, "shadow_allowed");
                stats.counter(&scope, "shadow_denied");
                Filter {
                    rules: r.rules.clone(),
                    allowed: stats.counter(&scope, "allowed"),
                    denied: stats.counter(&scope, "denied"),
                }
            })
            .collect();
        Filters {
            filters,
            reads_certificates,
        }
    }

    /// Whether a principal matches a peer certificate's names (so they must be read).
    pub(crate) fn reads_certificates(&self) -> bool {
        self.reads_certificates
    }

    /// Whether the connection goes on: every filter allows it. The first that denies ends the walk.
    pub(crate) fn allow(&self, facts: &Facts<'_>) -> bool {
        for filter in &self.filters {
            // A filter without rules lets everything through, uncounted.
            let Some(rules) = &filter.rules else { continue };
            if decide(rules, facts) {
                filter.allowed.inc();
            } else {
                filter.denied.inc();
                return false;
            }
        }
        true
    }
}

fn reads_certificate(p: &Principal) -> bool {
    match p {
        Principal::Authenticated(m) => m.is_some(),
        Principal::And(v) | Principal::Or(v) => v.iter().any(reads_certificate),
        Principal::Not(p) => reads_certificate(p),
        Principal::Any | Principal::RemoteIp(_) => false,
    }
}

/// Whether `rules` let the connection through.
pub(crate) fn decide(rules: &Rules, facts: &Facts<'_>) -> bool {
    let matched = rules.policies.iter().any(|p| policy_matches(p, facts));
    match rules.action {
        Action::Allow => matched,
        Action::Deny => !matched,
    }
}

fn policy_matches(p: &Policy, facts: &Facts<'_>) -> bool {
    p.permissions.iter().any(|x| permission_matches(x, facts))
        && p.principals.iter().any(|x| principal_matches(x, facts))
}

fn permission_matches(p: &Permission, facts: &Facts<'_>) -> bool {
    let port = facts.destination.map(|d| u32::from(d.port()));
    match p {
        Permission::Any => true,
        Permission::DestinationPort(want) => port == Some(u32::from(*want)),
        Permission::DestinationPortRange { start, end } => {
            port.is_some_and(|p| *start <= p && p < *end)
        }
        Permission::DestinationIp(range) => {
            facts.destination.is_some_and(|d| range.contains(d.ip()))
        }
        Permission::RequestedServerName(m) => m.matches(facts.server_name),
        Permission::And(v) => v.iter().all(|x| permission_matches(x, facts)),
        Permission::Or(v) => v.iter().any(|x| permission_matches(x, facts)),
        Permission::Not(x) => !permission_matches(x, facts),
    }
}

fn principal_matches(p: &Principal, facts: &Facts<'_>) -> bool {
    match p {
        Principal::Any => true,
        Principal::Authenticated(m) => match (facts.tls, m) {
            (None, _) => false,
            (Some(_), None) => true,
            // Envoy's order: any URI SAN, any DNS SAN, else the subject (empty without a certificate).
            (Some(id), Some(m)) => {
                id.uri_sans.iter().any(|u| m.matches(u))
                    || id.dns_sans.iter().any(|d| m.matches(d))
                    || m.matches(&id.subject)
            }
        },
        Principal::RemoteIp(range) => range.contains(facts.peer.ip()),
        Principal::And(v) => v.iter().all(|x| principal_matches(x, facts)),
        Principal::Or(v) => v.iter().any(|x| principal_matches(x, facts)),
        Principal::Not(x) => !principal_matches(x, facts),
    }
}

#[cfg(test)]
mod tests;
