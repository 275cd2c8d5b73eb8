//! The workspace's crates, read from the root `Cargo.toml` and each member's: their names, their roles (the
//! top folder: `hub`, `pilot`, `proxy`), their target roots and the crates they depend on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::modules::ReadError;

/// The folders whose crates make up one role each.
pub const ROLES: [&str; 3] = ["hub", "pilot", "proxy"];

/// One member crate.
#[derive(Debug)]
pub struct Member {
    /// Its folder, relative to the workspace root (`hub/config`).
    pub dir: PathBuf,
    /// Its package name.
    pub name: String,
    /// The role it belongs to, if it is under a role's folder.
    pub role: Option<&'static str>,
    /// Every package named in its `[dependencies]`, `[dev-dependencies]` and `[build-dependencies]`.
    pub dependencies: Vec<String>,
    /// The root files of its targets: the library, the binaries, the integration tests and the benches.
    pub roots: Vec<PathBuf>,
}

/// The workspace.
#[derive(Debug)]
pub struct Workspace {
    /// Its root folder.
    pub root: PathBuf,
    /// Its members, in the order the root manifest lists them.
    pub members: Vec<Member>,
}

impl Workspace {
    /// Reads the workspace whose root manifest is `root/Cargo.toml`.
    pub fn read(root: &Path) -> Result<Self, ReadError> {
        let manifest = read(&root.join("Cargo.toml"))?;
        let mut members = Vec::new();
        for dir in array(&manifest, "members") {
            let text = read(&root.join(&dir).join("Cargo.toml"))?;
            let tables = tables(&text);
            let name = tables
                .get("package")
                .and_then(|p| {
                    p.iter()
                        .find_map(|(k, v)| (k == "name").then(|| unquote(v)))
                })
                .unwrap_or_default();
            let dependencies = ["dependencies", "dev-dependencies", "build-dependencies"]
                .iter()
                .flat_map(|t| tables.get(*t).into_iter().flatten())
                .map(|(k, _)| k.split('.').next().unwrap_or(k).to_string())
                .collect();
            let role = ROLES.into_iter().find(|r| Path::new(&dir).starts_with(r));
            let roots = roots(&root.join(&dir), &text);
            members.push(Member {
                dir: PathBuf::from(dir),
                name,
                role,
                dependencies,
                roots,
            });
        }
        Ok(Workspace {
            root: root.to_path_buf(),
            members,
        })
    }

    /// Every dependency of a role's crate on another role's crate: (crate, the other role's crate).
    pub fn cross_role(&self) -> Vec<(String, String)> {
        let role_of: BTreeMap<&str, &str> = self
            .members
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.role?)))
            .collect();
        let mut out = Vec::new();
        for m in &self.members {
            let Some(role) = m.role else { continue };
            for d in &m.dependencies {
                if role_of.get(d.as_str()).is_some_and(|r| *r != role) {
                    out.push((m.name.clone(), d.clone()));
                }
            }
        }
        out
    }
}

fn read(path: &Path) -> Result<String, ReadError> {
    std::fs::read_to_string(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The target roots of a crate in `dir` with manifest `text`: `src/lib.rs`, `src/main.rs`, each `[[bin]]`,
/// `[[test]]` and `[[bench]]` path, and `tests/*.rs`.
fn roots(dir: &Path, text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
        .iter()
        .map(|p| dir.join(p))
        .filter(|p| p.exists())
        .collect();
    for line in text.lines() {
        if let Some(v) = line.trim().strip_prefix("path").map(str::trim)
            && let Some(v) = v.strip_prefix('=')
        {
            let p = dir.join(unquote(v));
            if p.extension().is_some_and(|e| e == "rs") && p.exists() && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("tests")) {
        let mut tests: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        tests.sort();
        out.extend(tests);
    }
    out
}

/// The `key = value` lines of each `[table]` of a TOML text (enough for Cargo manifests as written here).
fn tables(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let l = line.split(" #").next().unwrap_or("").trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(t) = l.strip_prefix('[') {
            current = t.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.entry(current.clone())
                .or_default()
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The strings of a `key = [ "a", "b", … ]` array, which may span lines.
fn array(text: &str, key: &str) -> Vec<String> {
    let Some(start) = text.find(&format!("\n{key} = [")) else {
        return Vec::new();
    };
    let rest = &text[start..];
    let body = &rest[rest.find('[').unwrap_or(0) + 1..rest.find(']').unwrap_or(rest.len())];
    body.split(',')
        .map(|s| s.split('#').next().unwrap_or("").trim())
        .filter(|s| !s.is_empty())
        .map(unquote)
        .collect()
}

fn unquote(v: &str) -> String {
    v.trim().trim_matches('"').to_string()
}
