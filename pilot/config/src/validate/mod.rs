//! The pure validation step: a [`NetworkingSet`] as loaded becomes an immutable [`MeshConfig`] of the
//! resources that pass, and the resources left out with every error found, each naming file, line, resource
//! and field ([`validate_each`]); [`validate`] is the strict form. No I/O happens here.
//!
//! Checked: host names; ports in 1–65535 and protocols known; durations (when typed) and percentages;
//! regexes compile (RE2 syntax, as Istio; compiled with the `regex` crate, whose syntax is RE2's less
//! look-around and back-references, which RE2 lacks too); route weights sum to 100; subsets named by routes
//! exist in a DestinationRule of that host; gateways named by VirtualServices exist; duplicate names (routes,
//! subsets, ports, hosts); subsets have labels; STATIC ServiceEntries have endpoints or a workloadSelector;
//! registry limits.

mod gateways;
mod matches;
mod routes;
mod rules;
mod security;
mod services;
mod sidecars;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sextant_resources::{ConfigError, ConfigErrors, Resource};

use crate::load::NetworkingSet;
use crate::model::MeshConfig;
use crate::report::Rejected;

/// A validated mesh and what was left out of it.
#[derive(Clone, Debug, Default)]
pub struct Validated {
    /// The mesh model of every resource that passed.
    pub config: MeshConfig,
    /// The resources left out (while loading or validating), in the order written.
    pub rejected: Vec<Rejected>,
}

/// Validates `set` into the mesh model strictly: any resource left out (see [`validate_each`]) is an error,
/// and every error is returned, in the order written.
pub fn validate(set: &NetworkingSet) -> Result<MeshConfig, ConfigErrors> {
    let v = validate_each(set);
    if v.rejected.is_empty() {
        Ok(v.config)
    } else {
        Err(ConfigErrors(
            v.rejected.into_iter().flat_map(|r| r.errors).collect(),
        ))
    }
}

/// Validates each resource of `set` on its own, as Istio does: an invalid resource is left out and named
/// in [`Validated::rejected`] (with those [`NetworkingSet::load_with`] left out), the others make the mesh.
///
/// A resource that refers to one left out is kept and degrades as Istio's does: a route to a subset of a
/// left-out DestinationRule goes to a cluster that does not exist (Envoy answers 503, `NC`), a
/// VirtualService bound to a left-out Gateway applies to nothing there. References to resources that were
/// never written stay errors of the referring resource, except when a file was left out whole (the
/// resource may be in it). Of two resources claiming one host (DestinationRules, ServiceEntries), the later
/// one is left out, and an invalid one claims nothing.
pub fn validate_each(set: &NetworkingSet) -> Validated {
    validate_each_after(set, None)
}

/// [`validate_each`], after `previous` (the mesh served until now): an AuthorizationPolicy or
/// PeerAuthentication that is invalid keeps its version in `previous`, or when it has none is stood in for
/// by a deny-all policy (STRICT mTLS) for what it selects — security resources fail closed (see
/// [`crate::security`]); it is reported in [`Validated::rejected`] all the same.
pub fn validate_each_after(set: &NetworkingSet, previous: Option<&MeshConfig>) -> Validated {
    let mut errors = Vec::new();
    let destination_rules = rules::destination_rules(&set.destination_rules, &mut errors);
    let gateways = gateways::gateways(&set.gateways, &mut errors);
    let services = services::services(set, &mut errors);
    let sidecars = sidecars::sidecars(&set.sidecars, &mut errors);
    let security = security::security(set, previous.map(|m| &m.security), &mut errors);
    let left_out = LeftOut::of(set, &errors);
    let virtual_services =
        routes::virtual_services(set, &destination_rules, &gateways, &left_out, &mut errors);
    let mut rejected = set.rejected.clone();
    rejected.extend(crate::report::group(errors));
    // Reported in the order they are written, whatever order the checks ran in.
    for r in &mut rejected {
        r.errors.sort_by_key(order);
    }
    rejected.sort_by_key(order_of);
    Validated {
        config: MeshConfig {
            virtual_services,
            destination_rules,
            gateways,
            sidecars,
            security,
            services: Arc::new(services),
            digest: set.digest,
        },
        rejected,
    }
}

fn order(e: &ConfigError) -> Option<(Arc<std::path::Path>, u32)> {
    e.location().map(|l| (l.file.clone(), l.line))
}

fn order_of(r: &Rejected) -> Option<(Arc<std::path::Path>, u32)> {
    r.errors.first().and_then(order)
}

/// What was left out that other resources may refer to.
pub(crate) struct LeftOut {
    /// Hosts (fully qualified) of the DestinationRules left out.
    rule_hosts: BTreeSet<String>,
    /// `namespace/name` of the Gateways left out.
    gateways: BTreeSet<String>,
    /// Whether something whose kind is unknown was left out (a file that is not YAML, a document without
    /// a kind): any reference may be to it.
    anything: bool,
}

impl LeftOut {
    fn of(set: &NetworkingSet, errors: &[ConfigError]) -> LeftOut {
        let mut out = LeftOut {
            rule_hosts: set.left_out_rule_hosts.iter().cloned().collect(),
            gateways: BTreeSet::new(),
            anything: false,
        };
        for r in &set.rejected {
            match r.kind.as_str() {
                "Gateway" => {
                    out.gateways.insert(r.key());
                }
                "VirtualService"
                | "DestinationRule"
                | "ServiceEntry"
                | "WorkloadEntry"
                | "Sidecar"
                | "AuthorizationPolicy"
                | "PeerAuthentication" => {}
                _ => out.anything = true,
            }
        }
        for e in errors {
            if let ConfigError::Invalid { kind, name, .. } = e
                && kind == "Gateway"
            {
                out.gateways.insert(name.clone());
            }
        }
        for r in &set.destination_rules {
            let key = r.key();
            if errors.iter().any(|e| {
                matches!(e, ConfigError::Invalid { kind, name, .. } if kind == "DestinationRule" && *name == key)
            }) {
                out.rule_hosts
                    .insert(crate::host::resolve(&r.spec.host, &r.namespace));
            }
        }
        out
    }

    /// Whether a DestinationRule of `host` may have been left out.
    pub(crate) fn rule_of(&self, host: &str) -> bool {
        self.anything || self.rule_hosts.contains(host)
    }

    /// Whether the Gateway `key` may have been left out.
    pub(crate) fn gateway(&self, key: &str) -> bool {
        self.anything || self.gateways.contains(key)
    }
}

/// Collects errors about one resource of one kind.
pub(crate) struct Errs<'a, S> {
    resource: &'a Resource<S>,
    kind: &'static str,
    errors: &'a mut Vec<ConfigError>,
}

impl<'a, S> Errs<'a, S> {
    fn new(
        resource: &'a Resource<S>,
        kind: &'static str,
        errors: &'a mut Vec<ConfigError>,
    ) -> Self {
        Errs {
            resource,
            kind,
            errors,
        }
    }

    /// Records that `field` is wrong.
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(self.resource.invalid(self.kind, field, message));
    }

    /// `value` as a port number, recording an error when it is out of range.
    fn port(&mut self, field: &str, value: u32) -> Option<u16> {
        match u16::try_from(value) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                self.push(field, format!("port {value} is out of range 1-65535"));
                None
            }
        }
    }

    /// Records a host name that Istio would refuse.
    fn host(&mut self, field: &str, host: &str) {
        if let Some(problem) = crate::host::problem(host) {
            self.push(field, problem);
        }
    }

    /// Records a certificate or key path the proxy could not read reliably: it must be absolute (the
    /// proxy's working directory is not pilot's).
    fn file(&mut self, field: &str, path: &str) {
        if !path.starts_with('/') {
            self.push(
                field,
                format!(
                    "{path:?} is not an absolute path; the proxy reads it from its own file system"
                ),
            );
        }
    }

    /// Records a percentage outside 0–100.
    fn percent(&mut self, field: &str, value: f64) {
        if !(0.0..=100.0).contains(&value) {
            self.push(
                field,
                format!("{value} is not a percentage between 0 and 100"),
            );
        }
    }

    /// Records `exportTo` entries other than `.`, `*`, `~` (alone) or a namespace name.
    fn export_to(&mut self, list: &[String]) {
        for (i, ns) in list.iter().enumerate() {
            if ns == "~" {
                if list.len() > 1 {
                    self.push(
                        &format!("spec.exportTo[{i}]"),
                        "\"~\" (exported nowhere) cannot be combined with other entries",
                    );
                }
                continue;
            }
            if ns != "." && ns != "*" && !is_namespace_name(ns) {
                self.push(
                    &format!("spec.exportTo[{i}]"),
                    format!(
                        "{ns:?}: use \".\" (this namespace), \"*\" (all), \"~\" (none) or a namespace name"
                    ),
                );
            }
        }
    }

    /// Records a name already used by an earlier item (`seen` maps names to their first field).
    fn unique(&mut self, seen: &mut BTreeMap<String, String>, field: &str, what: &str, name: &str) {
        if let Some(first) = seen.get(name) {
            self.push(
                field,
                format!("duplicate {what} {name:?} (first at {first})"),
            );
        } else {
            seen.insert(name.to_string(), field.to_string());
        }
    }
}

/// Whether `ns` can name a Kubernetes namespace (a DNS label: lowercase letters, digits and `-`, at most 63).
fn is_namespace_name(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_isolation;
