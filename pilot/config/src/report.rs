//! What a load left out, and what it did not read: the per-resource isolation report.
//!
//! [`Rejected`] names one resource (or one file that is not valid YAML) left out of the served configuration,
//! with every error found in it. [`Unread`] (from `hub-config`'s table, shared with the hub) names the
//! documents of one file and kind that belong to an Istio API group or kind pilot does not read, with what to
//! use instead: such a document is neither served nor an error, but a user who wrote it believes it applies,
//! so it is said out loud.

pub use sextant_resources::istio::{Unread, unread_hint};
use sextant_resources::{ConfigError, Location};

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
    let mut index: std::collections::HashMap<(String, String, String), usize> =
        std::collections::HashMap::new();
    for e in errors {
        let r = Rejected::of(e);
        let key = (r.kind.clone(), r.namespace.clone(), r.name.clone());
        match index.get(&key) {
            Some(&i) => out[i].errors.extend(r.errors),
            None => {
                index.insert(key, out.len());
                out.push(r);
            }
        }
    }
    out
}
