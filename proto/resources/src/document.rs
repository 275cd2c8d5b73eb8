//! One YAML document as a resource: its envelope read, its spec typed on demand, and every error located at
//! the line of the field at fault.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::{ConfigError, Location};
use crate::locate;

/// Where a resource was written: its file, line, and document text (from which the line of any of its
/// fields is found when asked; see [`locate`]).
#[derive(Clone, Debug)]
pub struct Origin {
    /// The file.
    pub file: Arc<Path>,
    /// Line of the document's start.
    pub line: u32,
    text: Arc<str>,
}

impl Origin {
    /// The location of `field` (e.g. `spec.rules[0].when`), or of its closest written parent.
    pub fn locate(&self, field: &str) -> Location {
        let fields = locate::field_lines(&self.text);
        let mut f = field;
        let line = loop {
            if let Some(l) = fields.get(f) {
                break self.line + l - 1;
            }
            match f.rfind(['.', '[']) {
                Some(i) => f = &f[..i],
                None => break self.line,
            }
        };
        Location {
            file: self.file.clone(),
            line,
        }
    }
}

/// One loaded resource.
#[derive(Clone, Debug)]
pub struct Resource<S> {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// The spec.
    pub spec: S,
    /// Where it was written.
    pub origin: Origin,
}

impl<S> Resource<S> {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The `namespace/name` key of a resource this one names: `name` as written when it holds a `/`, else
    /// in this resource's namespace.
    pub fn qualify(&self, name: &str) -> String {
        if name.contains('/') {
            name.to_string()
        } else {
            format!("{}/{name}", self.namespace)
        }
    }

    /// An error about `field` of this resource.
    pub fn invalid(&self, kind: &str, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.origin.locate(field),
            kind: kind.to_string(),
            name: self.key(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A resource read from one YAML document: its envelope (apiVersion, kind, metadata) checked for presence and
/// its spec still untyped, so that each loader (the hub's, pilot's) picks the API group it knows and skips the
/// others.
#[derive(Clone, Debug)]
pub struct RawResource {
    /// `apiVersion` as written, e.g. `networking.istio.io/v1`.
    pub api_version: String,
    /// The group part of `apiVersion` (empty for the core group).
    pub group: String,
    /// The version part of `apiVersion`.
    pub version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name` (empty when absent: [`RawResource::check_names`] reports it).
    pub name: String,
    /// `metadata.namespace` (`default` when absent).
    pub namespace: String,
    /// `spec`, an empty object when absent or null.
    pub spec: serde_json::Value,
    /// Where it was written.
    pub origin: Origin,
}

impl RawResource {
    /// `namespace/name`, with `?` for a missing name.
    pub fn key(&self) -> String {
        let name = if self.name.is_empty() {
            "?"
        } else {
            &self.name
        };
        format!("{}/{name}", self.namespace)
    }

    /// An error about `field` of this resource.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            at: self.origin.locate(field),
            kind: self.kind.clone(),
            name: self.key(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Checks that `metadata.name` and `metadata.namespace` are DNS names.
    pub fn check_names(&self) -> Result<(), ConfigError> {
        for (what, v) in [
            ("metadata.name", &self.name),
            ("metadata.namespace", &self.namespace),
        ] {
            if let Some(msg) = dns_label_problem(v) {
                return Err(self.invalid(what, msg));
            }
        }
        Ok(())
    }

    /// Deserializes the spec into `S`; an error names the field at fault (`spec.http[0].route`) and its line.
    pub fn into_resource<S: DeserializeOwned>(self) -> Result<Resource<S>, ConfigError> {
        let key = self.key();
        let spec = typed_spec(self.spec, &self.origin, &self.kind, &key)?;
        Ok(resource(&self.name, &self.namespace, spec, &self.origin))
    }
}

/// Splits one file's text into its resources, in order. A YAML syntax error yields one error for the whole
/// file; an empty document yields nothing; a document that is not a mapping with `apiVersion` and `kind` yields
/// an error. Nothing here depends on the API group.
pub fn documents(file: &Path, text: &str) -> Vec<Result<RawResource, ConfigError>> {
    let file: Arc<Path> = Arc::from(file);
    let docs = match locate::documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            return vec![Err(ConfigError::Syntax {
                at: Location {
                    file: file.clone(),
                    line: e.line,
                },
                column: e.column,
                message: e.message,
            })];
        }
    };
    docs.into_iter()
        .filter_map(|doc| {
            let origin = Origin {
                file: file.clone(),
                line: doc.line,
                text: Arc::from(doc.text),
            };
            raw_resource(doc.text, origin).transpose()
        })
        .collect()
}

fn raw_resource(text: &str, origin: Origin) -> Result<Option<RawResource>, ConfigError> {
    let invalid = |origin: &Origin, field: &str, message: String| ConfigError::Invalid {
        at: origin.locate(field),
        kind: "resource".to_string(),
        name: "?".to_string(),
        field: field.to_string(),
        message,
    };
    let value: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| invalid(&origin, "", format!("not a resource: {e}")))?;
    if value.is_null() {
        return Ok(None); // an empty document
    }
    let Some(obj) = value.as_object() else {
        return Err(invalid(
            &origin,
            "",
            "a resource is a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    let field = |k: &str| obj.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(invalid(
            &origin,
            if api_version.is_empty() {
                "apiVersion"
            } else {
                "kind"
            },
            "missing; every resource has apiVersion and kind".into(),
        ));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let meta = obj.get("metadata").and_then(|m| m.as_object());
    let meta_field = |k: &str| meta.and_then(|m| m.get(k)).and_then(|n| n.as_str());
    let spec = obj
        .get("spec")
        .filter(|s| !s.is_null())
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    Ok(Some(RawResource {
        api_version: api_version.to_string(),
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
        name: meta_field("name").unwrap_or_default().to_string(),
        namespace: meta_field("namespace").unwrap_or("default").to_string(),
        spec,
        origin,
    }))
}

fn resource<S>(name: &str, namespace: &str, spec: S, origin: &Origin) -> Resource<S> {
    Resource {
        name: name.to_string(),
        namespace: namespace.to_string(),
        spec,
        origin: origin.clone(),
    }
}

fn typed_spec<S: DeserializeOwned>(
    spec: serde_json::Value,
    origin: &Origin,
    kind: &str,
    key: &str,
) -> Result<S, ConfigError> {
    serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        ConfigError::Invalid {
            at: origin.locate(&field),
            kind: kind.to_string(),
            name: key.to_string(),
            field,
            message: e.into_inner().to_string(),
        }
    })
}

fn dns_label_problem(v: &str) -> Option<String> {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && v.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && v.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
    (!ok).then(|| format!("{v:?} is not a valid name: lower-case letters, digits, '-' and '.', starting and ending alphanumeric"))
}

/// [`check_duplicates`], and the later resources of each name left out of `list`.
pub fn keep_first<S>(list: &mut Vec<Resource<S>>, kind: &str, errors: &mut Vec<ConfigError>) {
    let before = errors.len();
    check_duplicates(list, kind, errors);
    if errors.len() > before {
        let mut seen = std::collections::HashSet::new();
        list.retain(|r| seen.insert(r.key()));
    }
}

/// Appends a [`ConfigError::Duplicate`] for every resource of `list` whose `namespace/name` came earlier.
pub fn check_duplicates<S>(list: &[Resource<S>], kind: &str, errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<String, &Origin> = HashMap::new();
    for r in list {
        if let Some(first) = seen.get(&r.key()) {
            errors.push(ConfigError::Duplicate {
                at: r.origin.locate("metadata.name"),
                first: first.locate("metadata.name"),
                kind: kind.to_string(),
                name: r.key(),
            });
        } else {
            seen.insert(r.key(), &r.origin);
        }
    }
}
