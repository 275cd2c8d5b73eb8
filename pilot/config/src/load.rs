//! Reading Istio networking resources from the configuration directory the hub also reads.
//!
//! The files are split and located by `hub-config` ([`hub_config::documents`]); this module keeps the
//! documents of the `networking.istio.io` group, in any of the apiVersions Istio serves with the same spec
//! shape, and types their specs. Documents of other groups (the hub's `policy.sextant.dev`) are skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use hub_config::{
    ConfigError, ConfigErrors, ConfigFiles, RawResource, Resource, check_duplicates, documents,
};

use crate::types::{
    DestinationRuleSpec, GatewaySpec, ServiceEntrySpec, VirtualServiceSpec, WorkloadEntrySpec,
};

/// Istio's networking API group.
pub const GROUP: &str = "networking.istio.io";

/// The versions of [`GROUP`] accepted; they share one spec shape.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// The kinds of [`GROUP`] Sextant reads.
pub const KINDS: [&str; 5] = [
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "Gateway",
];

/// Every networking resource found, typed but not yet validated (see [`crate::validate`]).
#[derive(Clone, Debug, Default)]
pub struct NetworkingSet {
    /// VirtualService resources, in file order.
    pub virtual_services: Vec<Resource<VirtualServiceSpec>>,
    /// DestinationRule resources, in file order.
    pub destination_rules: Vec<Resource<DestinationRuleSpec>>,
    /// ServiceEntry resources, in file order.
    pub service_entries: Vec<Resource<ServiceEntrySpec>>,
    /// WorkloadEntry resources, in file order.
    pub workload_entries: Vec<Resource<WorkloadEntrySpec>>,
    /// Gateway resources, in file order.
    pub gateways: Vec<Resource<GatewaySpec>>,
    /// The digest of the files read (see [`ConfigFiles::digest`]).
    pub digest: u64,
}

impl NetworkingSet {
    /// Types every networking resource of `files`. All errors are collected: YAML syntax, envelopes, unknown
    /// versions and kinds of the group, unknown or mistyped fields, and two resources of one kind with the
    /// same namespace and name.
    pub fn load(files: &ConfigFiles) -> Result<NetworkingSet, ConfigErrors> {
        Self::load_with(files, &mut ParsedFiles::default())
    }

    /// [`NetworkingSet::load`], parsing only the files whose text changed since the last load with `parsed`.
    pub fn load_with(
        files: &ConfigFiles,
        parsed: &mut ParsedFiles,
    ) -> Result<NetworkingSet, ConfigErrors> {
        let mut set = NetworkingSet {
            digest: files.digest,
            ..NetworkingSet::default()
        };
        let mut errors = Vec::new();
        let mut next = HashMap::with_capacity(files.files.len());
        for (path, text) in &files.files {
            let mut h = std::hash::DefaultHasher::new();
            text.hash(&mut h);
            let digest = h.finish();
            let typed = match parsed.by_file.remove(path) {
                Some((d, typed)) if d == digest => typed,
                _ => {
                    let mut typed = NetworkingSet::default();
                    let before = errors.len();
                    for doc in documents(path, text) {
                        if let Err(e) = doc.and_then(|doc| typed.add(doc)) {
                            errors.push(e);
                        }
                    }
                    if errors.len() > before {
                        // Not kept, so parsed again next time with the same errors; its valid resources
                        // still take part in the checks across files.
                        set.extend(&typed);
                        continue;
                    }
                    typed
                }
            };
            set.extend(&typed);
            next.insert(path.clone(), (digest, typed));
        }
        parsed.by_file = next;
        check_duplicates(&set.virtual_services, "VirtualService", &mut errors);
        check_duplicates(&set.destination_rules, "DestinationRule", &mut errors);
        check_duplicates(&set.service_entries, "ServiceEntry", &mut errors);
        check_duplicates(&set.workload_entries, "WorkloadEntry", &mut errors);
        check_duplicates(&set.gateways, "Gateway", &mut errors);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn extend(&mut self, other: &NetworkingSet) {
        self.virtual_services
            .extend_from_slice(&other.virtual_services);
        self.destination_rules
            .extend_from_slice(&other.destination_rules);
        self.service_entries
            .extend_from_slice(&other.service_entries);
        self.workload_entries
            .extend_from_slice(&other.workload_entries);
        self.gateways.extend_from_slice(&other.gateways);
    }

    fn add(&mut self, doc: RawResource) -> Result<(), ConfigError> {
        if doc.group != GROUP {
            return Ok(()); // the hub's resources, or anything else that shares the directory
        }
        if !VERSIONS.contains(&doc.version.as_str()) {
            return Err(doc.invalid(
                "apiVersion",
                format!(
                    "unsupported version {:?} of {GROUP}; use v1, v1beta1 or v1alpha3",
                    doc.version
                ),
            ));
        }
        doc.check_names()?;
        match doc.kind.as_str() {
            "VirtualService" => self.virtual_services.push(typed(doc)?),
            "DestinationRule" => self.destination_rules.push(typed(doc)?),
            "ServiceEntry" => self.service_entries.push(typed(doc)?),
            "WorkloadEntry" => self.workload_entries.push(typed(doc)?),
            "Gateway" => self.gateways.push(typed(doc)?),
            other => {
                return Err(doc.invalid(
                    "kind",
                    format!(
                        "kind {other:?} of {GROUP} is not supported; supported kinds: {}",
                        KINDS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How many resources were loaded.
    pub fn len(&self) -> usize {
        self.virtual_services.len()
            + self.destination_rules.len()
            + self.service_entries.len()
            + self.workload_entries.len()
            + self.gateways.len()
    }

    /// Whether no resource was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Types a spec. An unknown field is either misspelt or a field of Istio's API that Sextant does not model
/// yet; the message says both, so a field is never silently dropped.
/// The networking resources of each file of the last load, by path, with a digest of the file's text: what
/// [`NetworkingSet::load_with`] reuses for files that did not change. Holds only the files of the last load.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    by_file: HashMap<PathBuf, (u64, NetworkingSet)>,
}

fn typed<S: serde::de::DeserializeOwned>(doc: RawResource) -> Result<Resource<S>, ConfigError> {
    doc.into_resource().map_err(|mut e| {
        if let ConfigError::Invalid { message, .. } = &mut e
            && message.starts_with("unknown field")
        {
            message.push_str(" (misspelt, or an Istio field Sextant does not support)");
        }
        e
    })
}

/// Reads every YAML file under `path` (or `path` itself) and types its networking resources.
pub fn load_path(path: &Path) -> Result<NetworkingSet, ConfigErrors> {
    let files = ConfigFiles::read(path).map_err(|e| ConfigErrors(vec![e]))?;
    NetworkingSet::load(&files)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn load(text: &str) -> Result<NetworkingSet, ConfigErrors> {
        NetworkingSet::load(&ConfigFiles::from_texts(vec![(
            PathBuf::from("n.yaml"),
            text.to_string(),
        )]))
    }

    fn rule(name: &str, host: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec: {{host: {host}}}\n"
        )
    }

    fn hosts(set: &NetworkingSet) -> Vec<(String, String)> {
        set.destination_rules
            .iter()
            .map(|r| (r.name.clone(), r.spec.host.clone()))
            .collect()
    }

    #[test]
    fn reloading_with_parsed_files_sees_every_change() {
        let mut parsed = ParsedFiles::default();
        let files = |b: &str, c: Option<&str>| {
            let mut f = vec![
                (PathBuf::from("a.yaml"), rule("a", "ratings")),
                (PathBuf::from("b.yaml"), b.to_string()),
            ];
            if let Some(c) = c {
                f.push((PathBuf::from("c.yaml"), c.to_string()));
            }
            ConfigFiles::from_texts(f)
        };
        let first = NetworkingSet::load_with(&files(&rule("b", "reviews"), None), &mut parsed);
        assert_eq!(
            hosts(&first.unwrap()),
            [
                ("a".into(), "ratings".into()),
                ("b".into(), "reviews".into())
            ]
        );
        // One file edited, one added: both seen, the unchanged one kept.
        let second = NetworkingSet::load_with(
            &files(&rule("b", "details"), Some(&rule("c", "x"))),
            &mut parsed,
        );
        assert_eq!(
            hosts(&second.unwrap()),
            [
                ("a".into(), "ratings".into()),
                ("b".into(), "details".into()),
                ("c".into(), "x".into())
            ]
        );
        // A broken file is reported every time until it is fixed, and a removed file's resources go.
        let broken = files("kind: [", None);
        for _ in 0..2 {
            let err = NetworkingSet::load_with(&broken, &mut parsed).unwrap_err();
            assert!(err.to_string().contains("b.yaml:1"), "{err}");
        }
        let fixed = NetworkingSet::load_with(&files(&rule("b", "reviews"), None), &mut parsed);
        assert_eq!(
            hosts(&fixed.unwrap()),
            [
                ("a".into(), "ratings".into()),
                ("b".into(), "reviews".into())
            ]
        );
    }

    #[test]
    fn three_versions_one_shape_and_other_groups_skipped() {
        let mut text = String::new();
        for (i, v) in VERSIONS.iter().enumerate() {
            text.push_str(&format!(
                "apiVersion: networking.istio.io/{v}\nkind: DestinationRule\nmetadata: {{name: r{i}}}\nspec: {{host: reviews}}\n---\n"
            ));
        }
        text.push_str("apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {nonsense: 1}\n");
        let set = load(&text).unwrap();
        assert_eq!(set.destination_rules.len(), 3);
        assert_eq!(set.len(), 3);
        assert_eq!(set.destination_rules[2].spec.host, "reviews");
    }

    #[test]
    fn unmodelled_field_is_named_not_ignored() {
        let err = load("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n    directResponse: {status: 503}\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("n.yaml:9: VirtualService default/r: spec.http[0].directResponse: unknown field `directResponse`"),
            "{msg}"
        );
        assert!(
            msg.ends_with("(misspelt, or an Istio field Sextant does not support)"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_version_and_kind() {
        let err = load("apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: g}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s}\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("n.yaml:1: Gateway default/g: apiVersion: unsupported version \"v2\""),
            "{msg}"
        );
        assert!(msg.contains("n.yaml:6: Sidecar default/s: kind: kind \"Sidecar\" of networking.istio.io is not supported"), "{msg}");
    }

    #[test]
    fn duplicates_and_bad_durations() {
        let err = load("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [a]\n  http:\n  - timeout: 5 seconds\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("n.yaml:15: VirtualService default/v: spec.http[0].timeout: \"5 seconds\" is not a duration"), "{msg}");
        assert!(
            msg.contains("n.yaml:7: Gateway default/g is defined twice (first at n.yaml:3)"),
            "{msg}"
        );
    }
}
