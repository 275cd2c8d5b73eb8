//! What a load left out, and what it did not read: the per-resource isolation report.
//!
//! [`Rejected`] names one resource (or one file that is not valid YAML) left out of the served configuration,
//! with every error found in it. [`Unread`] names the documents of one file and kind that belong to an Istio
//! API group or kind pilot does not read, with what to use instead: such a document is neither served nor an
//! error, but a user who wrote it believes it applies, so it is said out loud.

use hub_config::{ConfigError, Location};

/// The kind [`Rejected`] says for a file that is not valid YAML (its name is the file's path).
pub const FILE_KIND: &str = "file";

/// A resource left out of the served configuration, with the errors that put it out.
#[derive(Clone, Debug)]
pub struct Rejected {
    /// The resource's kind (`VirtualService`, …), `resource` for a document whose kind is unknown, or
    /// [`FILE_KIND`] for a file that is not valid YAML.
    pub kind: String,
    /// `metadata.namespace` (empty for a file).
    pub namespace: String,
    /// `metadata.name` (`?` when missing; the file's path for a file).
    pub name: String,
    /// Every error found in it, in the order written.
    pub errors: Vec<ConfigError>,
}

impl Rejected {
    /// The resource of `error` (a new report holding only it).
    pub(crate) fn of(error: ConfigError) -> Rejected {
        let (kind, key) = match &error {
            ConfigError::Invalid { kind, name, .. } | ConfigError::Duplicate { kind, name, .. } => {
                (kind.clone(), name.clone())
            }
            ConfigError::Syntax { at, .. } => {
                (FILE_KIND.to_string(), at.file.display().to_string())
            }
            ConfigError::Io { path, .. } => (FILE_KIND.to_string(), path.display().to_string()),
        };
        let (namespace, name) = match key.split_once('/') {
            Some((ns, name)) if kind != FILE_KIND => (ns.to_string(), name.to_string()),
            _ => (String::new(), key),
        };
        Rejected {
            kind,
            namespace,
            name,
            errors: vec![error],
        }
    }

    /// Where it was written (its first error's place).
    pub fn at(&self) -> Option<&Location> {
        self.errors.iter().find_map(ConfigError::location)
    }

    /// Every error, one per line, each naming file, line, resource and field.
    pub fn message(&self) -> String {
        let lines: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    }

    /// `namespace/name` (the path for a file).
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// Groups `errors` by the resource they are about, in the order their resources first appear.
pub(crate) fn group(errors: Vec<ConfigError>) -> Vec<Rejected> {
    let mut out: Vec<Rejected> = Vec::new();
    for e in errors {
        let r = Rejected::of(e);
        match out
            .iter_mut()
            .find(|o| o.kind == r.kind && o.namespace == r.namespace && o.name == r.name)
        {
            Some(o) => o.errors.extend(r.errors),
            None => out.push(r),
        }
    }
    out
}

/// Documents of one file and kind that pilot does not read.
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

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let more = match self.documents {
            1 => String::new(),
            n => format!(" ({n} documents)"),
        };
        write!(
            f,
            "{}: {}/{} is not read by pilot{more}: {}",
            self.at, self.group, self.kind, self.hint
        )
    }
}

const MIXER: &str = "Mixer's config.istio.io kinds are not read: write policy.sextant.dev Policy, \
                     RateLimit, Telemetry and Adapter resources for the hub (docs/policies.md)";
const READ: &str = "pilot reads networking.istio.io VirtualService, DestinationRule, ServiceEntry, \
                    WorkloadEntry and Gateway";

/// (group, kind, hint) for the Istio kinds pilot knows it does not read; `*` is any other kind of the group.
const HINTS: &[(&str, &str, &str)] = &[
    (
        "networking.istio.io",
        "Sidecar",
        "Sidecar is not implemented yet: every proxy receives the whole mesh (its egress hosts, ingress \
         listeners and outboundTrafficPolicy do not apply)",
    ),
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
        "AuthorizationPolicy",
        "AuthorizationPolicy is not enforced yet: nothing is denied by it; write a policy.sextant.dev \
         Policy for the hub (ext_authz) instead",
    ),
    (
        "security.istio.io",
        "PeerAuthentication",
        "PeerAuthentication is not enforced yet: inbound mTLS is always PERMISSIVE (plaintext accepted)",
    ),
    (
        "security.istio.io",
        "RequestAuthentication",
        "RequestAuthentication is not enforced yet: no JWT is checked; check request.auth in a \
         policy.sextant.dev Policy instead",
    ),
    (
        "security.istio.io",
        "*",
        "security.istio.io kinds are not enforced yet",
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
        "authentication.istio.io Policy (Istio 1.0-1.4) is not read, and its successor \
         PeerAuthentication is not enforced yet",
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
    if group == crate::GROUP && crate::KINDS.contains(&kind) {
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
        let (g, k, hint) = unread_hint("security.istio.io", "AuthorizationPolicy").unwrap();
        assert_eq!((g, k), ("security.istio.io", "AuthorizationPolicy"));
        assert!(hint.contains("not enforced"), "{hint}");
        let (g, k, hint) = unread_hint("config.istio.io", "memquota").unwrap();
        assert_eq!((g, k), ("config.istio.io", "_other"));
        assert!(hint.contains("policy.sextant.dev"), "{hint}");
        assert_eq!(
            unread_hint("made-up.istio.io", "Thing").map(|(g, k, _)| (g, k)),
            Some(("_other", "_other"))
        );
        assert_eq!(
            unread_hint("networking.istio.io", "Sidecar").map(|(_, k, _)| k),
            Some("Sidecar")
        );
    }
}
