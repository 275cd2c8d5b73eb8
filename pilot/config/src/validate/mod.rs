//! The pure validation step: a [`NetworkingSet`] as loaded becomes an immutable [`MeshConfig`], or every
//! error found, each naming file, line, resource and field. No I/O happens here.
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
mod services;

use std::collections::BTreeMap;
use std::sync::Arc;

use hub_config::{ConfigError, ConfigErrors, Resource};

use crate::load::NetworkingSet;
use crate::model::MeshConfig;

/// Validates `set` into the mesh model.
pub fn validate(set: &NetworkingSet) -> Result<MeshConfig, ConfigErrors> {
    let mut errors = Vec::new();
    let destination_rules = rules::destination_rules(&set.destination_rules, &mut errors);
    let gateways = gateways::gateways(&set.gateways, &mut errors);
    let services = services::services(set, &mut errors);
    let virtual_services = routes::virtual_services(set, &destination_rules, &mut errors);
    if !errors.is_empty() {
        // Reported in the order they are written, whatever order the checks ran in.
        errors.sort_by(|a, b| {
            let key = |e: &ConfigError| e.location().map(|l| (l.file.clone(), l.line));
            key(a).cmp(&key(b))
        });
        return Err(ConfigErrors(errors));
    }
    Ok(MeshConfig {
        virtual_services,
        destination_rules,
        gateways,
        services: Arc::new(services),
        digest: set.digest,
    })
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
