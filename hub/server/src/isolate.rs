//! One bad resource never takes the others' changes down: the hub's rule for its `Policy`, `RateLimit` and
//! `Telemetry` resources (docs/policies.md).
//!
//! Each resource is judged on its own. One that is invalid (it cannot be parsed, or fails validation)
//! keeps its last good version — the one the serving configuration was built from — while the other
//! resources change; one that never validated is left out. Both are reported (logged, `/debug/config`'s
//! `lastRejected`, `sextant_hub_config_errors`, `/readyz`'s detail, `result="partial"`). Policies fail
//! closed this way: an invalid edit of a DENY policy keeps denying. A file that is not valid YAML keeps the
//! last good versions of the resources it held. `Adapter` resources are not isolated: an invalid Adapter
//! (or anything not attributable to one resource) refuses the whole change, as before, since every policy
//! and Telemetry naming it would change with it; so do the errors found only while the adapters start
//! (a policy naming an adapter that cannot `check`), which come after this pure step.

use std::collections::HashSet;
use std::path::Path;

use hub_config::{ConfigError, ConfigErrors, ConfigFiles, ConfigSet, Resource};
use hub_policy::{Compiled, Snapshot};
use hub_telemetry::Rules;

/// The kinds judged on their own.
const ISOLATED: [&str; 3] = ["Policy", "RateLimit", "Telemetry"];

/// Validation rounds at most: the first finds the invalid resources, the second checks the last good
/// versions put back (which may refer to what changed since), the third the set without those.
const ROUNDS: usize = 3;

/// A set whose every resource validated, with what was left out of it.
pub(crate) struct Judged {
    /// The resources, the last good versions of invalid ones among them.
    pub(crate) set: ConfigSet,
    /// Its policies and rate limits, validated.
    pub(crate) policy: hub_policy::Validated,
    /// Its Telemetry rules, compiled.
    pub(crate) rules: Rules,
    /// Every error of the resources left out or kept at their last good version.
    pub(crate) errors: Vec<ConfigError>,
    /// `Kind namespace/name` of the resources kept at their last good version.
    pub(crate) kept: Vec<String>,
}

/// Parses `files` and validates each Policy, RateLimit and Telemetry on its own against `last_good` (the set
/// the serving configuration was built from). An error no isolated resource can be blamed for refuses the
/// whole change: every error is returned.
pub(crate) fn judge(
    files: &ConfigFiles,
    default_telemetry: bool,
    serving: Option<&Snapshot>,
    last_good: Option<&ConfigSet>,
) -> Result<Judged, ConfigErrors> {
    let (mut set, mut errors) = hub_config::load_each(files);
    if default_telemetry {
        hub_telemetry::add_defaults(&mut set);
    }
    let empty = ConfigSet::default();
    let good = last_good.unwrap_or(&empty);
    let mut kept = Vec::new();
    let mut restored: HashSet<(String, String)> = HashSet::new();
    for e in &errors {
        match named(e) {
            Some((kind, _)) if !ISOLATED.contains(&kind.as_str()) => {
                return Err(ConfigErrors(errors));
            }
            Some((kind, key)) => {
                if restored.insert((kind.clone(), key.clone()))
                    && restore(&mut set, good, &kind, &key)
                {
                    kept.push(format!("{kind} {key}"));
                }
            }
            // A file that is not YAML (or a document that is not a resource): its resources' last good
            // versions stay.
            None => match e.location() {
                Some(at) => kept.extend(restore_file(&mut set, good, &at.file, &mut restored)),
                None => return Err(ConfigErrors(errors)),
            },
        }
    }
    for _ in 0..ROUNDS {
        let earlier = serving.map(Compiled::of).unwrap_or_default();
        let policy = hub_policy::validate_reusing(set.clone(), earlier);
        let rules = hub_telemetry::validate(&set);
        let round = match (policy, rules) {
            (Ok(policy), Ok(rules)) => {
                return Ok(Judged {
                    set,
                    policy,
                    rules,
                    errors,
                    kept,
                });
            }
            (p, r) => {
                let mut round = p.err().map(|e| e.0).unwrap_or_default();
                round.extend(r.err().unwrap_or_default());
                // Adapter resources are checked too, so one reload reports every error.
                if let Err(e) = crate::telemetry::validate(&set, Ok(Rules::default())) {
                    round.extend(e.0);
                }
                round
            }
        };
        let blamed: Vec<Option<(String, String)>> = round.iter().map(named).collect();
        let isolated = |b: &Option<(String, String)>| {
            b.as_ref()
                .is_some_and(|(kind, _)| ISOLATED.contains(&kind.as_str()))
        };
        errors.extend(round);
        if !blamed.iter().all(isolated) {
            return Err(ConfigErrors(errors));
        }
        for (kind, key) in blamed.into_iter().flatten() {
            remove(&mut set, &kind, &key);
            if restored.insert((kind.clone(), key.clone())) && restore(&mut set, good, &kind, &key)
            {
                kept.push(format!("{kind} {key}"));
            } else {
                kept.retain(|k| *k != format!("{kind} {key}"));
            }
        }
    }
    Err(ConfigErrors(errors))
}

/// The (kind, `namespace/name`) an error is about, when it names one resource.
pub(crate) fn named(e: &ConfigError) -> Option<(String, String)> {
    match e {
        ConfigError::Invalid { kind, name, .. } | ConfigError::Duplicate { kind, name, .. }
            if kind != "resource" =>
        {
            Some((kind.clone(), name.clone()))
        }
        _ => None,
    }
}

/// Puts `good`'s version of `kind` `key` into `set` when `set` has none; whether it did.
fn restore(set: &mut ConfigSet, good: &ConfigSet, kind: &str, key: &str) -> bool {
    match kind {
        "Policy" => restore_one(&mut set.policies, &good.policies, key),
        "RateLimit" => restore_one(&mut set.rate_limits, &good.rate_limits, key),
        "Telemetry" => restore_one(&mut set.telemetry, &good.telemetry, key),
        _ => false,
    }
}

fn restore_one<S: Clone>(to: &mut Vec<Resource<S>>, from: &[Resource<S>], key: &str) -> bool {
    if to.iter().any(|r| r.key() == key) {
        return false;
    }
    match from.iter().find(|r| r.key() == key) {
        Some(r) => {
            to.push(r.clone());
            true
        }
        None => false,
    }
}

/// The keys of `resources` written in `file`.
fn keys_in<S>(resources: &[Resource<S>], file: &Path) -> Vec<String> {
    resources
        .iter()
        .filter(|r| &*r.origin.file == file)
        .map(Resource::key)
        .collect()
}

/// Puts back `good`'s resources written in `file` that `set` lacks; `Kind namespace/name` of each.
fn restore_file(
    set: &mut ConfigSet,
    good: &ConfigSet,
    file: &Path,
    restored: &mut HashSet<(String, String)>,
) -> Vec<String> {
    let mut back = Vec::new();
    let mut each = |kind: &str, keys: Vec<String>, set: &mut ConfigSet| {
        for key in keys {
            if restored.insert((kind.to_string(), key.clone())) && restore(set, good, kind, &key) {
                back.push(format!("{kind} {key}"));
            }
        }
    };
    each("Policy", keys_in(&good.policies, file), set);
    each("RateLimit", keys_in(&good.rate_limits, file), set);
    each("Telemetry", keys_in(&good.telemetry, file), set);
    back
}

fn remove(set: &mut ConfigSet, kind: &str, key: &str) {
    match kind {
        "Policy" => set.policies.retain(|r| r.key() != key),
        "RateLimit" => set.rate_limits.retain(|r| r.key() != key),
        "Telemetry" => set.telemetry.retain(|r| r.key() != key),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn files(texts: &[(&str, &str)]) -> ConfigFiles {
        ConfigFiles::from_texts(
            texts
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    fn policy(name: &str, when: &str) -> String {
        format!(
            "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  rules:\n  - name: r\n    action: DENY\n    when: '{when}'\n"
        )
    }

    fn whens(set: &ConfigSet) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = set
            .policies
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.spec.rules[0].when.clone().unwrap_or_default(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_good_version_and_a_new_invalid_one_is_left_out() {
        let first = judge(
            &files(&[
                ("a.yaml", &policy("a", "request.path == \"/a\"")),
                ("b.yaml", &policy("b", "request.path == \"/b\"")),
            ]),
            false,
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(first.errors.is_empty());
        // a broken, b changed, c new and broken.
        let next = judge(
            &files(&[
                ("a.yaml", &policy("a", "request.path ==")),
                ("b.yaml", &policy("b", "request.path == \"/b2\"")),
                ("c.yaml", &policy("c", "nonsense(")),
            ]),
            false,
            None,
            Some(&first.set),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            whens(&next.set),
            [
                ("a".to_string(), "request.path == \"/a\"".to_string()),
                ("b".to_string(), "request.path == \"/b2\"".to_string()),
            ]
        );
        assert_eq!(next.kept, ["Policy default/a"]);
        let errors: Vec<String> = next.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("a.yaml:8: Policy default/a"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("c.yaml:8: Policy default/c"),
            "{errors:?}"
        );

        // A file that is not YAML keeps its resources' last good versions.
        let next = judge(
            &files(&[
                ("a.yaml", "kind: ["),
                ("b.yaml", &policy("b", "request.path == \"/b2\"")),
            ]),
            false,
            None,
            Some(&first.set),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(next.kept, ["Policy default/a"]);
        assert_eq!(next.set.policies.len(), 2);
    }

    #[test]
    fn an_invalid_adapter_refuses_the_whole_change() {
        let adapter = "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {name: x}\nspec: {nonsense: 1}\n";
        let err = judge(
            &files(&[("a.yaml", adapter), ("b.yaml", &policy("b", "true"))]),
            false,
            None,
            None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("a.yaml:4: Adapter default/x"), "{err}");
    }
}
