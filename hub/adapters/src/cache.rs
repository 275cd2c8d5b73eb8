//! On-disk cache of precompiled components.
//!
//! An entry is named by the SHA-256 of the component's bytes, the wasmtime version and the engine's
//! compatibility hash, so a new wasmtime or a different engine configuration never loads an old artifact.
//! The file holds the SHA-256 of the serialized artifact followed by the artifact; an entry whose digest does
//! not match (truncated, corrupted) is recompiled and rewritten. Writes go to a temporary file renamed into
//! place, so a concurrent reader never sees half an entry.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Versions the entry format and names the wasmtime major version the key was made for.
const FORMAT_TAG: &str = "sextant-component-cache-v1 wasmtime-48\0";

/// How the cache was used since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from a cache entry.
    pub hits: u64,
    /// Components compiled (no cache, no entry, or a bad entry).
    pub compiled: u64,
    /// Entries found corrupted or unloadable and replaced.
    pub corrupt: u64,
    /// Entries that could not be written (the component was still used).
    pub write_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    compiled: AtomicU64,
    corrupt: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiled: self.compiled.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }
}

/// Feeds `Hash` output into SHA-256, to turn the engine's compatibility hash into stable bytes.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The SHA-256 of `bytes`.
pub(crate) fn content_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The cache directory and the engine's fingerprint.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: Option<PathBuf>,
    engine_key: [u8; 32],
    pub(crate) counters: Counters,
}

impl Cache {
    pub(crate) fn new(dir: Option<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = ShaHasher(Sha256::new());
        // The compatibility hash covers the target, compiler flags, wasm features and wasmtime's version
        // (`module_version`); the tag makes the major version visible in the key and versions our file format.
        hasher.0.update(FORMAT_TAG.as_bytes());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        Self {
            dir,
            engine_key: hasher.0.finalize().into(),
            counters: Counters::default(),
        }
    }

    /// The entry file for a component whose content hash is `hash`.
    pub(crate) fn entry_path(&self, hash: &[u8; 32]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut key = Sha256::new();
        key.update(hash);
        key.update(self.engine_key);
        Some(dir.join(format!("{}.cwasm", hex(&key.finalize()))))
    }

    /// Loads the component from its cache entry, or compiles it and writes the entry.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        hash: &[u8; 32],
    ) -> wasmtime::Result<Component> {
        let Some(path) = self.entry_path(hash) else {
            self.counters.compiled.fetch_add(1, Ordering::Relaxed);
            return Component::new(engine, bytes);
        };
        match std::fs::read(&path) {
            Ok(entry) => match load_entry(engine, &entry) {
                Some(component) => {
                    self.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                None => {
                    self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), "component cache entry is corrupt or stale; recompiling");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read component cache entry; recompiling");
            }
        }
        let component = Component::new(engine, bytes)?;
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| write_entry(&path, &artifact).map_err(|e| e.to_string()))
        {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(path = %path.display(), error = %e, "cannot write component cache entry");
        }
        Ok(component)
    }
}

/// Verifies an entry's digest and deserializes its artifact; `None` when it is corrupt or incompatible.
#[allow(unsafe_code)]
fn load_entry(engine: &Engine, entry: &[u8]) -> Option<Component> {
    let (digest, artifact) = entry.split_at_checked(32)?;
    if Sha256::digest(artifact).as_slice() != digest {
        return None;
    }
    // SAFETY: `Component::deserialize` trusts its input to be an artifact produced by `Component::serialize`
    // of a compatible engine. This one is: the file is named by the engine's fingerprint and the component's
    // content hash, it was written by `write_entry` below (from `Component::serialize`), and its SHA-256 was
    // checked just above, so a truncated or corrupted file never gets here. wasmtime additionally checks the
    // artifact's header against this engine's configuration and version and errors on a mismatch. The cache
    // directory must be writable only by the hub (as any directory of code it runs).
    unsafe { Component::deserialize(engine, artifact) }.ok()
}

fn write_entry(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    let mut data = Vec::with_capacity(32 + artifact.len());
    data.extend_from_slice(&Sha256::digest(artifact));
    data.extend_from_slice(artifact);
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)
}
