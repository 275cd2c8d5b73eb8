//! Host names as Istio resolves them.
//!
//! A host in a VirtualService, DestinationRule or route destination that is a short name (no dot, e.g.
//! `reviews`) means the Kubernetes service of that name in the resource's own namespace:
//! `reviews` written in namespace `default` is `reviews.default.svc.cluster.local`. Names with a dot are taken
//! as written (`reviews.prod.svc.cluster.local`, `api.example.com`), so are wildcards (`*`, `*.example.com`).
//! ServiceEntry hosts are never expanded: they name the service exactly.

/// The cluster's DNS domain Kubernetes services live under.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The fully qualified name of `host` written in a resource of `namespace`.
pub fn resolve(host: &str, namespace: &str) -> String {
    if host.contains('.') || host.starts_with('*') {
        host.to_ascii_lowercase()
    } else {
        format!("{}.{namespace}.{CLUSTER_DOMAIN}", host.to_ascii_lowercase())
    }
}

/// Why `host` is not a host name Istio accepts (letters, digits, `-`, `.`, an optional leading `*` or `*.`),
/// or `None` when it is one.
pub fn problem(host: &str) -> Option<String> {
    let body = host
        .strip_prefix("*.")
        .or_else(|| host.strip_prefix('*'))
        .unwrap_or(host);
    if host == "*" {
        return None;
    }
    let ok = !body.is_empty()
        && host.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    (!ok).then(|| {
        format!("{host:?} is not a host name: DNS labels of letters, digits and '-', optionally starting with '*.'")
    })
}

/// Whether the wildcard or exact host `pattern` covers `host` (`*.example.com` covers `a.example.com`).
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_namespace() {
        assert_eq!(
            resolve("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(resolve("Reviews", "prod"), "reviews.prod.svc.cluster.local");
        assert_eq!(
            resolve("reviews.other.svc.cluster.local", "default"),
            "reviews.other.svc.cluster.local"
        );
        assert_eq!(resolve("api.example.com", "x"), "api.example.com");
        assert_eq!(resolve("*", "default"), "*");
    }

    #[test]
    fn host_syntax() {
        for ok in ["*", "reviews", "*.example.com", "a-b.c1.d"] {
            assert_eq!(problem(ok), None, "{ok}");
        }
        for bad in ["", "a..b", "-a", "a_b", "a b", "*.", "a.*.b"] {
            assert!(problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn wildcards() {
        assert!(matches("*", "reviews.default.svc.cluster.local"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "example.org"));
        assert!(matches("Reviews", "reviews"));
    }
}
