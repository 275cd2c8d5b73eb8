//! Envoy's HTTP RBAC filter (`envoy.filters.http.rbac`): a connection manager's RBAC filters decide on each
//! request, in order, before anything else runs on it (fault, CORS, routing); the first denying answers Envoy's
//! local reply `403 RBAC: access denied` and nothing goes upstream. Policies are decided by the engine the
//! network filter shares (`proxy_route::rbac`), with the request in its context.
//!
//! Each filter counts `http.PREFIX.rbac.allowed` or `denied` (its `rules_stat_prefix` joined after `rbac.` as
//! Envoy joins it); after a denial the later filters neither decide nor count. A filter without rules lets
//! everything through, uncounted.

use proxy_config::rbac::{HttpRbac, Rules};
use proxy_route::rbac::{self, Context};
use proxy_stats::{Counter, Scope, Stats};

/// The body of Envoy's answer to a denied request.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// One connection manager's HTTP RBAC filters, in order, with their stats.
#[derive(Debug)]
pub struct Filters {
    filters: Vec<Filter>,
    reads_certificates: bool,
}

#[derive(Debug)]
struct Filter {
    rules: Option<Rules>,
    allowed: Counter,
    denied: Counter,
}

impl Filters {
    /// The filters of `config`, for the manager whose `stat_prefix` is `manager`.
    pub fn new(config: &[HttpRbac], manager: &str, stats: &Stats) -> Filters {
        let filters = config
            .iter()
            .map(|f| {
                let scope = Scope::http_rbac(manager, &f.rules_stat_prefix);
                // Envoy registers the shadow counters of every filter (no shadow rules run here).
                let shadow = Scope::http_rbac(manager, "");
                stats.counter(&shadow, "shadow_allowed");
                stats.counter(&shadow, "shadow_denied");
                Filter {
                    rules: f.rules.clone(),
                    allowed: stats.counter(&scope, "allowed"),
                    denied: stats.counter(&scope, "denied"),
                }
            })
            .collect();
        Filters {
            filters,
            reads_certificates: config
                .iter()
                .filter_map(|f| f.rules.as_ref())
                .any(rbac::reads_certificates),
        }
    }

    /// Whether there are none (nothing to decide).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether a principal matches a peer certificate's names (so the listener must read them).
    pub fn reads_certificates(&self) -> bool {
        self.reads_certificates
    }

    /// Whether the request goes on: every filter allows it. The first that denies ends the walk.
    pub fn allow(&self, cx: &Context<'_>) -> bool {
        for filter in &self.filters {
            let Some(rules) = &filter.rules else { continue };
            if rbac::decide(rules, cx) {
                filter.allowed.inc();
            } else {
                filter.denied.inc();
                return false;
            }
        }
        true
    }
}
