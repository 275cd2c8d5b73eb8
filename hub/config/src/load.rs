//! The hub's loader: its kinds (`policy.sextant.dev`) picked from the documents of a tree of YAML files.

use std::path::Path;

use sextant_resources::{
    ConfigError, ConfigErrors, ConfigFiles, RawResource, Resource, check_duplicates, documents,
    istio, keep_first,
};

use crate::resources::{AdapterSpec, GROUP, PolicySpec, RateLimitSpec, TelemetrySpec};

/// Every hub resource found under a path, not yet validated.
#[derive(Clone, Debug, Default)]
pub struct ConfigSet {
    /// Policy resources, in file order.
    pub policies: Vec<Resource<PolicySpec>>,
    /// RateLimit resources, in file order.
    pub rate_limits: Vec<Resource<RateLimitSpec>>,
    /// Telemetry resources, in file order.
    pub telemetry: Vec<Resource<TelemetrySpec>>,
    /// Adapter resources, in file order.
    pub adapters: Vec<Resource<AdapterSpec>>,
    /// Documents of Istio kinds neither role reads, one entry per file and kind (see [`istio`]).
    pub unread: Vec<istio::Unread>,
    /// How many YAML files were read.
    pub files: usize,
    /// A digest of the files' names and contents, to tell whether anything changed.
    pub digest: u64,
}

/// Parses every file's documents into one set (duplicates not yet judged), with every error.
fn parse_files(files: &ConfigFiles) -> (ConfigSet, Vec<ConfigError>) {
    let mut set = ConfigSet {
        files: files.files.len(),
        digest: files.digest,
        ..ConfigSet::default()
    };
    let mut errors = Vec::new();
    for (file, text) in &files.files {
        if let Err(e) = load_file(file, text, &mut set) {
            errors.extend(e);
        }
    }
    (set, errors)
}

/// Parses every hub resource of `files`, each on its own: the set of those that parsed, and every error. A
/// document that cannot be parsed is left out of the set, a file that is not valid YAML leaves out its whole
/// text, and of two resources of one kind with the same namespace and name the later is left out.
pub fn load_each(files: &ConfigFiles) -> (ConfigSet, Vec<ConfigError>) {
    let (mut set, mut errors) = parse_files(files);
    keep_first(&mut set.policies, "Policy", &mut errors);
    keep_first(&mut set.rate_limits, "RateLimit", &mut errors);
    keep_first(&mut set.telemetry, "Telemetry", &mut errors);
    keep_first(&mut set.adapters, "Adapter", &mut errors);
    (set, errors)
}

/// Parses every hub resource of `files`. All errors are collected, not just the first.
pub fn load_files(files: &ConfigFiles) -> Result<ConfigSet, ConfigErrors> {
    let (set, mut errors) = parse_files(files);
    check_duplicates(&set.policies, "Policy", &mut errors);
    check_duplicates(&set.rate_limits, "RateLimit", &mut errors);
    check_duplicates(&set.telemetry, "Telemetry", &mut errors);
    check_duplicates(&set.adapters, "Adapter", &mut errors);
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads and parses every hub resource under `path`.
pub fn load_path(path: &Path) -> Result<ConfigSet, ConfigErrors> {
    load_files(&ConfigFiles::read(path).map_err(|e| ConfigErrors(vec![e]))?)
}

/// Parses resources from in-memory files (path, text).
pub fn load_texts<'a>(
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<ConfigSet, ConfigErrors> {
    let files = files
        .into_iter()
        .map(|(f, t)| (f.to_path_buf(), t.to_string()))
        .collect();
    load_files(&ConfigFiles::from_texts(files))
}

fn load_file(file: &Path, text: &str, set: &mut ConfigSet) -> Result<(), Vec<ConfigError>> {
    let mut errors = Vec::new();
    for doc in documents(file, text) {
        if let Err(e) = doc.and_then(|doc| load_document(doc, set)) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn load_document(doc: RawResource, set: &mut ConfigSet) -> Result<(), ConfigError> {
    if doc.group != GROUP {
        if istio::note_unread(&mut set.unread, &doc) {
            return Ok(());
        }
        tracing::debug!(file = %doc.origin.file.display(), api_version = %doc.api_version, kind = %doc.kind, "not a hub resource, ignored");
        return Ok(());
    }
    if doc.version != "v1alpha1" {
        return Err(doc.invalid(
            "apiVersion",
            format!(
                "unsupported version {:?}; use {}",
                doc.version,
                crate::API_VERSION
            ),
        ));
    }
    doc.check_names()?;
    // A resource without a spec has an empty one (every Policy field is optional).
    match doc.kind.as_str() {
        "Policy" => set.policies.push(doc.into_resource()?),
        "RateLimit" => set.rate_limits.push(doc.into_resource()?),
        "Telemetry" => set.telemetry.push(doc.into_resource()?),
        "Adapter" => set.adapters.push(doc.into_resource()?),
        other => {
            return Err(doc.invalid(
                "kind",
                format!(
                    "unknown kind {other:?} in {GROUP}; known kinds: Policy, RateLimit, Telemetry, Adapter"
                ),
            ));
        }
    }
    Ok(())
}
