//! Configuration errors, each naming file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where in the configuration something was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A configuration that cannot be loaded. Cloneable, so a report of what a load left out can be kept.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error (shared, so the error can be cloned).
        source: Arc<std::io::Error>,
    },
    /// Not valid YAML.
    #[error("{at}:{column}: YAML syntax error: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// Column.
        column: u32,
        /// Parser message.
        message: String,
    },
    /// Valid YAML that is not a valid resource, or a resource that fails validation.
    #[error("{at}: {kind} {name}: {field}: {message}")]
    Invalid {
        /// Where (the field's line when known, else the document's).
        at: Location,
        /// Resource kind, or `resource` when unknown.
        kind: String,
        /// `namespace/name`, or `?` when unknown.
        name: String,
        /// Field path, e.g. `spec.rules[0].when`.
        field: String,
        /// What is wrong, with a hint where there is one.
        message: String,
    },
    /// Two resources of one kind with the same namespace and name.
    #[error("{at}: {kind} {name} is defined twice (first at {first})")]
    Duplicate {
        /// The second definition.
        at: Location,
        /// The first definition.
        first: Location,
        /// Kind.
        kind: String,
        /// `namespace/name`.
        name: String,
    },
}

impl ConfigError {
    /// The field at fault (`spec.rules[0].when`), when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Where the error is, when it is in a file.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::Invalid { at, .. }
            | ConfigError::Duplicate { at, .. } => Some(at),
        }
    }
}

/// All the errors of one load, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
