//! Istio's API groups and kinds neither role reads: documents of them are warned about and counted, never
//! skipped without a word (a user who wrote a `config.istio.io` rule or a `security.istio.io`
//! RequestAuthentication believes it applies). Both loaders use this table: pilot (which reads the
//! `networking.istio.io` kinds in [`READ_BY_PILOT`] and the `security.istio.io` kinds in
//! [`SECURITY_READ_BY_PILOT`]) and the hub (which reads none of Istio's).

use crate::document::RawResource;
use crate::error::Location;

/// The `networking.istio.io` kinds pilot reads; every other kind of an `*.istio.io` group is unread.
pub const READ_BY_PILOT: [&str; 6] = [
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "Gateway",
    "Sidecar",
];

/// The `security.istio.io` kinds pilot reads.
pub const SECURITY_READ_BY_PILOT: [&str; 2] = ["AuthorizationPolicy", "PeerAuthentication"];

/// Istio's networking API group.
const NETWORKING: &str = "networking.istio.io";
/// Istio's security API group.
const SECURITY: &str = "security.istio.io";

/// Documents of one file and kind neither role reads.
#[derive(Clone, Debug)]
pub struct Unread {
    /// The first such document.
    pub at: Location,
    /// The API group as written (`security.istio.io`).
    pub group: String,
    /// The kind as written.
    pub kind: String,
    /// How many documents of this group and kind the file holds.
    pub documents: usize,
    /// What is not read and what to use instead.
    pub hint: &'static str,
    /// The group as a metric label: a known Istio group, or `_other` (so the label set is bounded).
    pub group_label: &'static str,
    /// The kind as a metric label: a known kind of the group, or `_other`.
    pub kind_label: &'static str,
}

/// Counts `doc` in `unread` (one entry per file, group and kind) when it is an Istio document neither role
/// reads ([`unread_hint`]); whether it was.
pub fn note_unread(unread: &mut Vec<Unread>, doc: &RawResource) -> bool {
    let Some((group_label, kind_label, hint)) = unread_hint(&doc.group, &doc.kind) else {
        return false;
    };
    let file = &doc.origin.file;
    match unread
        .iter_mut()
        .find(|u| u.at.file == *file && u.group == doc.group && u.kind == doc.kind)
    {
        Some(u) => u.documents += 1,
        None => unread.push(Unread {
            at: doc.origin.locate("apiVersion"),
            group: doc.group.clone(),
            kind: doc.kind.clone(),
            documents: 1,
            hint,
            group_label,
            kind_label,
        }),
    }
    true
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let more = match self.documents {
            1 => String::new(),
            n => format!(" ({n} documents)"),
        };
        write!(
            f,
            "{}: {}/{} is not read by Sextant{more}: {}",
            self.at, self.group, self.kind, self.hint
        )
    }
}

const MIXER: &str = "Mixer's config.istio.io kinds are not read: write policy.sextant.dev Policy, \
                     RateLimit, Telemetry and Adapter resources for the hub (docs/policies.md)";
const READ: &str = "pilot reads networking.istio.io VirtualService, DestinationRule, ServiceEntry, \
                    WorkloadEntry, Gateway and Sidecar";

/// (group, kind, hint) for the Istio kinds pilot knows it does not read; `*` is any other kind of the group.
const HINTS: &[(&str, &str, &str)] = &[
    (
        "networking.istio.io",
        "EnvoyFilter",
        "EnvoyFilter is not supported: pilot generates the Envoy configuration itself; ask for the feature \
         you patch in",
    ),
    (
        "networking.istio.io",
        "WorkloadGroup",
        "WorkloadGroup is not read: write the workloads as WorkloadEntry resources",
    ),
    (
        "networking.istio.io",
        "ProxyConfig",
        "ProxyConfig is not read: proxy settings are the proxy's flags and environment",
    ),
    ("networking.istio.io", "*", READ),
    (
        "security.istio.io",
        "RequestAuthentication",
        "RequestAuthentication is not enforced yet: no JWT is checked; check request.auth in a \
         policy.sextant.dev Policy instead",
    ),
    (
        "security.istio.io",
        "*",
        "pilot reads security.istio.io AuthorizationPolicy and PeerAuthentication only",
    ),
    (
        "telemetry.istio.io",
        "Telemetry",
        "telemetry.istio.io Telemetry is not read: write a policy.sextant.dev Telemetry for the hub",
    ),
    (
        "telemetry.istio.io",
        "*",
        "telemetry.istio.io kinds are not read",
    ),
    (
        "extensions.istio.io",
        "WasmPlugin",
        "WasmPlugin is not read: Wasm extensions run in the hub as policy.sextant.dev Adapter resources",
    ),
    (
        "extensions.istio.io",
        "*",
        "extensions.istio.io kinds are not read",
    ),
    (
        "config.istio.io",
        "RouteRule",
        "config.istio.io RouteRule (Istio 0.x) is not read: write a networking.istio.io VirtualService",
    ),
    (
        "config.istio.io",
        "DestinationPolicy",
        "config.istio.io DestinationPolicy (Istio 0.x) is not read: write a networking.istio.io \
         DestinationRule",
    ),
    (
        "config.istio.io",
        "EgressRule",
        "config.istio.io EgressRule (Istio 0.x) is not read: write a networking.istio.io ServiceEntry",
    ),
    ("config.istio.io", "rule", MIXER),
    ("config.istio.io", "handler", MIXER),
    ("config.istio.io", "instance", MIXER),
    ("config.istio.io", "attributemanifest", MIXER),
    ("config.istio.io", "QuotaSpec", MIXER),
    ("config.istio.io", "QuotaSpecBinding", MIXER),
    ("config.istio.io", "*", MIXER),
    (
        "authentication.istio.io",
        "Policy",
        "authentication.istio.io Policy (Istio 1.0-1.4) is not read: write a security.istio.io \
         PeerAuthentication",
    ),
    (
        "rbac.istio.io",
        "*",
        "rbac.istio.io (Istio 1.0-1.4) is not read: write a policy.sextant.dev Policy",
    ),
    (
        "install.istio.io",
        "*",
        "install.istio.io is installation configuration, not read by pilot",
    ),
];

/// When a document of `group` and `kind` belongs to Istio's API (`*.istio.io`) but pilot does not read it:
/// (group label, kind label, hint). `None` for the kinds pilot reads and for groups outside `istio.io`.
pub fn unread_hint(group: &str, kind: &str) -> Option<(&'static str, &'static str, &'static str)> {
    if !(group == "istio.io" || group.ends_with(".istio.io")) {
        return None;
    }
    if (group == NETWORKING && READ_BY_PILOT.contains(&kind))
        || (group == SECURITY && SECURITY_READ_BY_PILOT.contains(&kind))
    {
        return None;
    }
    let exact = HINTS.iter().find(|(g, k, _)| *g == group && *k == kind);
    let any = HINTS.iter().find(|(g, k, _)| *g == group && *k == "*");
    Some(match (exact, any) {
        (Some((g, k, hint)), _) => (*g, *k, *hint),
        (None, Some((g, _, hint))) => (*g, "_other", *hint),
        (None, None) => ("_other", "_other", READ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_for_unread_istio_kinds_with_bounded_labels() {
        assert_eq!(unread_hint("networking.istio.io", "VirtualService"), None);
        assert_eq!(unread_hint("policy.sextant.dev", "Policy"), None);
        assert_eq!(
            unread_hint("security.istio.io", "AuthorizationPolicy"),
            None
        );
        let (g, k, hint) = unread_hint("security.istio.io", "RequestAuthentication").unwrap();
        assert_eq!((g, k), ("security.istio.io", "RequestAuthentication"));
        assert!(hint.contains("not enforced"), "{hint}");
        let (g, k, hint) = unread_hint("config.istio.io", "memquota").unwrap();
        assert_eq!((g, k), ("config.istio.io", "_other"));
        assert!(hint.contains("policy.sextant.dev"), "{hint}");
        assert_eq!(
            unread_hint("made-up.istio.io", "Thing").map(|(g, k, _)| (g, k)),
            Some(("_other", "_other"))
        );
        assert_eq!(unread_hint("networking.istio.io", "Sidecar"), None);
        assert_eq!(
            unread_hint("networking.istio.io", "EnvoyFilter").map(|(_, k, _)| k),
            Some("EnvoyFilter")
        );
    }
}
