//! The YAML files of a configuration tree, read into memory with a digest of their names and contents.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::document::{RawResource, documents};
use crate::error::ConfigError;

/// The YAML files under `path` (or `path` itself), sorted (see [`sextant_watch::yaml_files`]).
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    sextant_watch::yaml_files(path).map_err(|(path, source)| ConfigError::Io {
        path,
        source: Arc::new(source),
    })
}

/// The YAML files under a path, read into memory, with a digest of their names and contents. Reading is cheap;
/// parsing (each role's loader) is not, so a watcher compares digests before it parses.
#[derive(Clone, Debug, Default)]
pub struct ConfigFiles {
    /// (path, text) of every file, sorted by path.
    pub files: Vec<(PathBuf, String)>,
    /// Digest of the names and contents.
    pub digest: u64,
}

impl ConfigFiles {
    /// Reads every YAML file under `path` (or `path` itself).
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let mut files = Vec::new();
        for f in yaml_files(path)? {
            let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::Io {
                path: f.clone(),
                source: Arc::new(source),
            })?;
            files.push((f, text));
        }
        Ok(Self::from_texts(files))
    }

    /// In-memory files (path, text).
    pub fn from_texts(files: Vec<(PathBuf, String)>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        files.hash(&mut hasher);
        ConfigFiles {
            digest: hasher.finish(),
            files,
        }
    }
}

impl ConfigFiles {
    /// Every document of every file, in file order (see [`documents`]).
    pub fn documents(&self) -> Vec<Result<RawResource, ConfigError>> {
        self.files
            .iter()
            .flat_map(|(file, text)| documents(file, text))
            .collect()
    }
}
