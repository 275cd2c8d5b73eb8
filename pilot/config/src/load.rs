//! Reading Istio networking resources from the configuration directory the hub also reads.
//!
//! The files are split and located by `hub-config` ([`sextant_resources::documents`]); this module keeps the
//! documents of the `networking.istio.io` group, in any of the apiVersions Istio serves with the same spec
//! shape, and types their specs, each on its own: one that cannot be typed is left out and reported
//! ([`NetworkingSet::rejected`]), the others are kept. Documents of other `*.istio.io` groups and kinds are
//! reported as unread ([`NetworkingSet::unread`]); other groups (the hub's `policy.sextant.dev`) are skipped.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sextant_resources::{
    ConfigError, ConfigErrors, ConfigFiles, RawResource, Resource, check_duplicates, documents,
};

use crate::report::{self, Rejected, Unread};

use crate::types::{
    AuthorizationPolicySpec, DestinationRuleSpec, GatewaySpec, PeerAuthenticationSpec,
    ServiceEntrySpec, SidecarSpec, VirtualServiceSpec, WorkloadEntrySpec,
};

/// Istio's networking API group.
pub const GROUP: &str = "networking.istio.io";

/// Istio's security API group.
pub const SECURITY_GROUP: &str = "security.istio.io";

/// The versions of [`SECURITY_GROUP`] accepted; they share one spec shape.
pub const SECURITY_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The kinds of [`SECURITY_GROUP`] Sextant reads.
pub const SECURITY_KINDS: [&str; 2] = ["AuthorizationPolicy", "PeerAuthentication"];

/// The versions of [`GROUP`] accepted; they share one spec shape.
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// The kinds of [`GROUP`] Sextant reads.
pub const KINDS: [&str; 6] = [
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "WorkloadEntry",
    "Gateway",
    "Sidecar",
];

/// Every networking resource found, typed but not yet validated (see [`crate::validate_each`]), with what
/// was left out while reading and typing them and what was not read.
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
    /// Sidecar resources, in file order.
    pub sidecars: Vec<Resource<SidecarSpec>>,
    /// AuthorizationPolicy resources, in file order.
    pub authorization_policies: Vec<Resource<AuthorizationPolicySpec>>,
    /// PeerAuthentication resources, in file order.
    pub peer_authentications: Vec<Resource<PeerAuthenticationSpec>>,
    /// Resources (and files that are not valid YAML) left out already: YAML syntax, envelopes, unknown
    /// versions, unknown or mistyped fields, and the later of two resources of one kind with the same
    /// namespace and name. In file order.
    pub rejected: Vec<Rejected>,
    /// The hosts (fully qualified) of the DestinationRules left out here, so references to their subsets
    /// degrade (see [`crate::validate_each`]) instead of leaving the referring resource out too.
    pub left_out_rule_hosts: Vec<String>,
    /// Documents of `*.istio.io` groups and kinds pilot does not read, one entry per file and kind.
    pub unread: Vec<Unread>,
    /// The digest of the files read (see [`ConfigFiles::digest`]).
    pub digest: u64,
}

impl NetworkingSet {
    /// Types every networking resource of `files`, strictly: any resource left out (see
    /// [`NetworkingSet::load_with`]) is an error, and all errors are returned together.
    pub fn load(files: &ConfigFiles) -> Result<NetworkingSet, ConfigErrors> {
        let set = Self::load_with(files, &mut ParsedFiles::default());
        if set.rejected.is_empty() {
            Ok(set)
        } else {
            Err(ConfigErrors(
                set.rejected.into_iter().flat_map(|r| r.errors).collect(),
            ))
        }
    }

    /// Types every networking resource of `files`, judging each on its own, and parsing only the files whose
    /// text changed since the last load with `parsed`. A resource that cannot be typed is left out and
    /// named in [`NetworkingSet::rejected`]; a file that is not valid YAML is left out whole; of two
    /// resources of one kind with the same namespace and name, the later (by file path, then position in
    /// the file) is left out.
    pub fn load_with(files: &ConfigFiles, parsed: &mut ParsedFiles) -> NetworkingSet {
        let mut set = NetworkingSet {
            digest: files.digest,
            ..NetworkingSet::default()
        };
        let mut next = HashMap::with_capacity(files.files.len());
        for (path, text) in &files.files {
            let mut h = std::hash::DefaultHasher::new();
            text.hash(&mut h);
            let digest = h.finish();
            let typed = match parsed.by_file.remove(path) {
                Some((d, typed)) if d == digest => typed,
                _ => NetworkingSet::of_file(path, text),
            };
            set.extend(&typed);
            next.insert(path.clone(), (digest, typed));
        }
        parsed.by_file = next;
        let mut errors = Vec::new();
        first_of_each(&mut set.virtual_services, "VirtualService", &mut errors);
        // The hosts of the later rules left out, for the references to their subsets.
        let mut seen = std::collections::HashSet::new();
        for r in &set.destination_rules {
            if !seen.insert(r.key()) {
                let host = crate::host::resolve(&r.spec.host, &r.namespace);
                set.left_out_rule_hosts.push(host);
            }
        }
        first_of_each(&mut set.destination_rules, "DestinationRule", &mut errors);
        first_of_each(&mut set.service_entries, "ServiceEntry", &mut errors);
        first_of_each(&mut set.workload_entries, "WorkloadEntry", &mut errors);
        first_of_each(&mut set.gateways, "Gateway", &mut errors);
        first_of_each(&mut set.sidecars, "Sidecar", &mut errors);
        first_of_each(
            &mut set.authorization_policies,
            "AuthorizationPolicy",
            &mut errors,
        );
        first_of_each(
            &mut set.peer_authentications,
            "PeerAuthentication",
            &mut errors,
        );
        set.rejected.extend(report::group(errors));
        set
    }

    /// The resources of one file, each judged on its own.
    fn of_file(path: &Path, text: &str) -> NetworkingSet {
        let mut typed = NetworkingSet::default();
        for doc in documents(path, text) {
            let doc = match doc {
                Ok(doc) => doc,
                Err(e) => {
                    typed.rejected.push(Rejected::of(e));
                    continue;
                }
            };
            let read = (doc.group == GROUP && KINDS.contains(&doc.kind.as_str()))
                || (doc.group == SECURITY_GROUP && SECURITY_KINDS.contains(&doc.kind.as_str()));
            if !read {
                // Counted when in an Istio group or kind pilot does not read (not the hub's resources).
                sextant_resources::istio::note_unread(&mut typed.unread, &doc);
                continue;
            }
            let rule_host = (doc.kind == "DestinationRule").then(|| {
                let host = doc.spec.get("host").and_then(|h| h.as_str()).unwrap_or("");
                crate::host::resolve(host, &doc.namespace)
            });
            if let Err(e) = typed.add(doc) {
                typed.rejected.push(Rejected::of(e));
                typed.left_out_rule_hosts.extend(rule_host);
            }
        }
        typed
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
        self.sidecars.extend_from_slice(&other.sidecars);
        self.authorization_policies
            .extend_from_slice(&other.authorization_policies);
        self.peer_authentications
            .extend_from_slice(&other.peer_authentications);
        self.rejected.extend_from_slice(&other.rejected);
        self.left_out_rule_hosts
            .extend_from_slice(&other.left_out_rule_hosts);
        self.unread.extend_from_slice(&other.unread);
    }

    fn add(&mut self, doc: RawResource) -> Result<(), ConfigError> {
        let (versions, spelled): (&[&str], &str) = if doc.group == SECURITY_GROUP {
            (&SECURITY_VERSIONS, "v1 or v1beta1")
        } else {
            (&VERSIONS, "v1, v1beta1 or v1alpha3")
        };
        if !versions.contains(&doc.version.as_str()) {
            return Err(doc.invalid(
                "apiVersion",
                format!(
                    "unsupported version {:?} of {}; use {spelled}",
                    doc.version, doc.group
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
            "Sidecar" => self.sidecars.push(typed(doc)?),
            "AuthorizationPolicy" => self.authorization_policies.push(typed(doc)?),
            "PeerAuthentication" => self.peer_authentications.push(typed(doc)?),
            // Kinds outside KINDS are counted as unread by the caller.
            _ => {}
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
            + self.sidecars.len()
            + self.authorization_policies.len()
            + self.peer_authentications.len()
    }

    /// Whether no resource was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The networking resources of each file of the last load, by path, with a digest of the file's text: what
/// [`NetworkingSet::load_with`] reuses for files that did not change. Holds only the files of the last load.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    by_file: HashMap<PathBuf, (u64, NetworkingSet)>,
}

/// Types a spec. An unknown field is either misspelt or a field of Istio's API that Sextant does not model
/// yet; the message says both, so a field is never silently dropped.
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

/// Appends an error for every resource of `list` whose `namespace/name` came earlier, and leaves it out.
fn first_of_each<S>(list: &mut Vec<Resource<S>>, kind: &str, errors: &mut Vec<ConfigError>) {
    let before = errors.len();
    check_duplicates(list, kind, errors);
    if errors.len() == before {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|r| seen.insert(r.key()));
}

/// Reads every YAML file under `path` (or `path` itself) and types its networking resources, strictly (see
/// [`NetworkingSet::load`]).
pub fn load_path(path: &Path) -> Result<NetworkingSet, ConfigErrors> {
    let files = ConfigFiles::read(path).map_err(|e| ConfigErrors(vec![e]))?;
    NetworkingSet::load(&files)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn the_kinds_pilot_reads_are_the_ones_the_shared_table_says() {
        assert_eq!(KINDS, sextant_resources::istio::READ_BY_PILOT);
        for kind in KINDS {
            assert_eq!(report::unread_hint(GROUP, kind), None);
        }
    }

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
            hosts(&first),
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
            hosts(&second),
            [
                ("a".into(), "ratings".into()),
                ("b".into(), "details".into()),
                ("c".into(), "x".into())
            ]
        );
        // A broken file is left out and reported every time until it is fixed (the other file's resources
        // stay), and a removed file's resources go.
        let broken = files("kind: [", None);
        for _ in 0..2 {
            let set = NetworkingSet::load_with(&broken, &mut parsed);
            assert_eq!(hosts(&set), [("a".into(), "ratings".into())]);
            assert_eq!(set.rejected.len(), 1);
            let r = &set.rejected[0];
            assert_eq!((r.kind.as_str(), r.name.as_str()), ("file", "b.yaml"));
            assert!(r.message().contains("b.yaml:1"), "{}", r.message());
        }
        let fixed = NetworkingSet::load_with(&files(&rule("b", "reviews"), None), &mut parsed);
        assert!(fixed.rejected.is_empty());
        assert_eq!(
            hosts(&fixed),
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
    fn unknown_version_is_an_error_and_unread_istio_kinds_a_warning() {
        let err = load("apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: g}\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("n.yaml:1: Gateway default/g: apiVersion: unsupported version \"v2\""),
            "{msg}"
        );
        let set = load("apiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: s}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: b}\n---\napiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\n").unwrap();
        let unread: Vec<String> = set.unread.iter().map(ToString::to_string).collect();
        assert_eq!(unread.len(), 2, "{unread:?}");
        assert!(
            unread[0].starts_with("n.yaml:1: networking.istio.io/EnvoyFilter is not read by Sextant: EnvoyFilter is not supported"),
            "{unread:?}"
        );
        assert!(
            unread[1].starts_with("n.yaml:5: security.istio.io/RequestAuthentication is not read by Sextant (2 documents): RequestAuthentication is not enforced yet"),
            "{unread:?}"
        );
    }

    #[test]
    fn each_document_on_its_own_and_the_later_duplicate_left_out() {
        let files = ConfigFiles::from_texts(vec![
            (
                PathBuf::from("a.yaml"),
                format!(
                    "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: bad}}\nspec: {{host: x, nonsense: 1}}\n---\n{}",
                    rule("r", "ratings"),
                    rule("s", "details")
                ),
            ),
            (PathBuf::from("b.yaml"), rule("r", "reviews")),
        ]);
        let set = NetworkingSet::load_with(&files, &mut ParsedFiles::default());
        assert_eq!(
            hosts(&set),
            [
                ("r".into(), "ratings".into()),
                ("s".into(), "details".into())
            ]
        );
        let rejected: Vec<(String, String, String)> = (set.rejected.iter())
            .map(|r| {
                (
                    r.kind.clone(),
                    r.key(),
                    r.at().map(ToString::to_string).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            rejected,
            [
                (
                    "DestinationRule".into(),
                    "default/bad".into(),
                    "a.yaml:9".into()
                ),
                (
                    "DestinationRule".into(),
                    "default/r".into(),
                    "b.yaml:3".into()
                ),
            ]
        );
        // The hosts of the rules left out, for the references to their subsets.
        assert_eq!(
            set.left_out_rule_hosts,
            [
                "x.default.svc.cluster.local",
                "reviews.default.svc.cluster.local"
            ]
        );
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
