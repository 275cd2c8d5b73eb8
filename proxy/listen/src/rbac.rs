//! Envoy's network RBAC filter (`envoy.filters.network.rbac`) on an accepted connection: a chain's RBAC
//! filters decide in order, once, from what the connection is known by when accepted (its addresses, the
//! SNI, the peer certificate of a chain that terminates TLS); the first denying closes it before any
//! upstream is connected. (Envoy 1.40 decides on the connection's first byte, by when its `tcp_proxy` has
//! connected upstream, so a denied client's connection reaches the upstream there and never here; the
//! decision itself is the same, as it reads nothing of the bytes.)
//!
//! The policies are decided by the engine the HTTP filter shares (`proxy_route::rbac`). Semantics as
//! Envoy's: a policy matches when one of its permissions and one of its principals match; ALLOW
//! lets a connection through only if some policy matches (no policies: none passes), DENY closes it if some
//! policy matches. Each filter counts `PREFIX.rbac.allowed` or `PREFIX.rbac.denied`; after a denial the
//! later filters neither decide nor count.

use std::net::SocketAddr;

use proxy_config::rbac::{Rbac, Rules};
use proxy_route::rbac;
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
            .any(rbac::reads_certificates);
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

/// Whether `rules` let the connection through (the shared engine, without a request).
pub(crate) fn decide(rules: &Rules, facts: &Facts<'_>) -> bool {
    let cx = rbac::Context {
        peer: facts.peer,
        destination: facts.destination,
        server_name: facts.server_name,
        tls: facts.tls,
        http: None,
    };
    rbac::decide(rules, &cx)
}

#[cfg(test)]
mod tests;
