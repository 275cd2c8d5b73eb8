//! A crate's module tree, read from its `mod` declarations, and the imports between its modules, read from
//! the `crate::`, `super::` and `self::` paths its files name.
//!
//! This is a reader of source text, not a compiler: comments are skipped, inline `mod x { … }` blocks count as
//! part of the file that holds them, and a name re-exported by a module (`pub use child::Name`) is followed to
//! the module it comes from, one step. It is exact for the way this repository writes paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path from its crate root: `[]` for the root, `["validate", "routes"]` for `validate::routes`.
pub type ModPath = Vec<String>;

/// One crate root's module tree and the imports between its modules.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// Every module and the file it is written in.
    pub files: BTreeMap<ModPath, PathBuf>,
    /// For each module, the modules it names (never itself, its ancestors or its descendants: a module and
    /// its submodules are one unit).
    pub imports: BTreeMap<ModPath, BTreeSet<ModPath>>,
}

/// Why a crate's modules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `mod name;` whose file is neither `name.rs` nor `name/mod.rs`.
    #[error("{file}: mod {name}: no file for it")]
    MissingModule {
        /// The declaring file.
        file: PathBuf,
        /// The module.
        name: String,
    },
}

impl ModuleGraph {
    /// Reads the tree under the crate root `root` (a `lib.rs`, `main.rs` or any target's root file).
    pub fn read(root: &Path) -> Result<Self, ReadError> {
        let mut graph = ModuleGraph::default();
        let mut texts = BTreeMap::new();
        let mut pending = vec![(Vec::new(), root.to_path_buf(), true)];
        while let Some((path, file, owns_dir)) = pending.pop() {
            let text = std::fs::read_to_string(&file).map_err(|source| ReadError::Io {
                path: file.clone(),
                source,
            })?;
            let declared = mod_declarations(&strip_comments(&text, false));
            let code = strip_comments(&text, true);
            let dir = match (owns_dir, file.parent()) {
                (true, Some(parent)) => parent.to_path_buf(),
                (false, Some(parent)) => parent.join(
                    file.file_stem()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .as_ref(),
                ),
                (_, None) => PathBuf::new(),
            };
            for decl in declared {
                let child_file = match &decl.path_attr {
                    Some(p) => file.parent().unwrap_or(Path::new("")).join(p),
                    None => {
                        let flat = dir.join(format!("{}.rs", decl.name));
                        if flat.exists() {
                            flat
                        } else {
                            dir.join(&decl.name).join("mod.rs")
                        }
                    }
                };
                if !child_file.exists() {
                    return Err(ReadError::MissingModule {
                        file: file.clone(),
                        name: decl.name,
                    });
                }
                let owns = decl.path_attr.is_some() || child_file.ends_with("mod.rs");
                let mut child = path.clone();
                child.push(decl.name);
                pending.push((child, child_file, owns));
            }
            graph.files.insert(path.clone(), file);
            texts.insert(path, code);
        }
        let reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>> = texts
            .iter()
            .map(|(m, code)| (m.clone(), graph.reexports_of(m, code)))
            .collect();
        for (m, code) in &texts {
            let mut targets = BTreeSet::new();
            for named in named_paths(code) {
                let Some(absolute) = absolute(m, &named) else {
                    continue;
                };
                if let Some(t) = graph.resolve(&absolute, &reexports)
                    && !t.starts_with(m)
                    && !m.starts_with(&t)
                {
                    targets.insert(t);
                }
            }
            graph.imports.insert(m.clone(), targets);
        }
        Ok(graph)
    }

    /// The names module `m` re-exports (`pub use child::{A, B as C}`), each with the module it comes from.
    fn reexports_of(&self, m: &ModPath, code: &str) -> BTreeMap<String, ModPath> {
        let mut out = BTreeMap::new();
        for statement in code.split(';') {
            let s = statement.trim();
            let Some(rest) = ["pub use ", "pub(crate) use ", "pub(super) use "]
                .iter()
                .find_map(|p| s.rsplit_once(p).map(|(_, r)| r))
            else {
                continue;
            };
            for (source, name) in use_leaves(rest) {
                let mut relative = source.clone();
                if !matches!(
                    relative.first().map(String::as_str),
                    Some("crate" | "super" | "self")
                ) {
                    relative.insert(0, "self".to_string());
                }
                if let Some(abs) = absolute(m, &relative)
                    && let Some(module) = self.longest_module(&abs)
                    && module != *m
                {
                    out.insert(name, module);
                }
            }
        }
        out
    }

    /// The module an absolute path names: its longest prefix that is a module, or the module a re-export at
    /// that prefix comes from.
    fn resolve(
        &self,
        path: &[String],
        reexports: &BTreeMap<ModPath, BTreeMap<String, ModPath>>,
    ) -> Option<ModPath> {
        let module = self.longest_module(path)?;
        if let Some(next) = path.get(module.len())
            && let Some(source) = reexports.get(&module).and_then(|r| r.get(next))
        {
            return Some(source.clone());
        }
        Some(module)
    }

    fn longest_module(&self, path: &[String]) -> Option<ModPath> {
        (0..=path.len())
            .rev()
            .map(|k| path[..k].to_vec())
            .find(|p| self.files.contains_key(p))
    }

    /// The groups of modules that import each other in a circle (strongly connected components of more than
    /// one module), each sorted, as `a::b` names.
    pub fn circles(&self) -> Vec<Vec<String>> {
        let nodes: Vec<&ModPath> = self.files.keys().collect();
        let index: BTreeMap<&ModPath, usize> =
            nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
        let edges: Vec<Vec<usize>> = nodes
            .iter()
            .map(|m| {
                self.imports
                    .get(*m)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| index.get(t).copied())
                    .collect()
            })
            .collect();
        strongly_connected(&edges)
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let mut names: Vec<String> = c.iter().map(|&i| nodes[i].join("::")).collect();
                names.sort();
                names
            })
            .collect()
    }
}

/// A `mod name;` declaration, with its `#[path = "…"]` attribute if it has one.
struct ModDecl {
    name: String,
    path_attr: Option<String>,
}

/// The `mod name;` declarations of a file (not inline `mod name { … }` blocks).
fn mod_declarations(code: &str) -> Vec<ModDecl> {
    let mut out = Vec::new();
    let mut path_attr = None;
    for line in code.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("#[path") {
            path_attr = rest.split('"').nth(1).map(str::to_string);
            continue;
        }
        if l.starts_with("#[") {
            continue;
        }
        let l = ["pub(crate) ", "pub(super) ", "pub "]
            .iter()
            .find_map(|p| l.strip_prefix(p))
            .unwrap_or(l);
        if let Some(name) = l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            out.push(ModDecl {
                name: name.trim().to_string(),
                path_attr: path_attr.take(),
            });
        } else if !l.is_empty() {
            path_attr = None;
        }
    }
    out
}

/// Every path starting with `crate::`, `super::` or `self::` in the code, with `use` groups expanded
/// (`crate::a::{b, c::d}` gives `crate::a::b` and `crate::a::c::d`).
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| bytes[i..].starts_with(p.as_bytes()));
        let boundary = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        if let (Some(_), true) = (starts, boundary) {
            let end = path_end(code, i);
            for (path, _) in use_leaves(&code[i..end]) {
                out.push(path);
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Where the path starting at `start` ends: after its last segment or its closing `}`.
fn path_end(code: &str, start: usize) -> usize {
    let bytes = code.as_bytes();
    let mut i = start;
    let mut depth = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'{' => depth += 1,
            b'}' if depth == 0 => break,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ if depth > 0 => {}
            b':' => {}
            _ if is_ident(b) => {}
            _ => break,
        }
        i += 1;
    }
    i
}

/// The leaves of a `use` tree: (full path, the name it is known by).
fn use_leaves(tree: &str) -> Vec<(Vec<String>, String)> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    leaves(&tree, &mut Vec::new(), &mut out);
    out
}

fn leaves(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = segments(&tree[..open]);
        let inner = tree[open + 1..].trim_end().trim_end_matches('}');
        let base = prefix.len();
        prefix.extend(head);
        for part in split_top(inner) {
            leaves(part, prefix, out);
        }
        prefix.truncate(base);
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p, Some(a.trim())),
        None => (tree, None),
    };
    let mut full = prefix.clone();
    full.extend(segments(path));
    if full.last().is_some_and(|s| s == "self") {
        full.pop();
    }
    let name = alias
        .map(str::to_string)
        .or_else(|| full.last().cloned())
        .unwrap_or_default();
    if !full.is_empty() {
        out.push((full, name));
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "*")
        .map(str::to_string)
        .collect()
}

/// The comma-separated parts of a group, commas inside nested groups kept.
fn split_top(inner: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[from..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// `path` (starting with `crate`, `super` or `self`) made absolute from module `m`.
fn absolute(m: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut base: ModPath = m.clone();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The code with `//` and `/* */` comments blanked and, when `strings` is set, the contents of string
/// literals too (plain, byte and raw strings; char literals are stepped over). Newlines are kept, so lines
/// still count.
pub fn strip_comments(text: &str, strings: bool) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    // Keeps the newlines of b[from..to] (the rest blanked).
    let newlines = |out: &mut Vec<u8>, from: usize, to: usize| {
        out.extend(b[from..to].iter().filter(|&&c| c == b'\n'));
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let end = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            newlines(&mut out, i, end);
            i = end;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') is copied whole; a lifetime is just a quote.
            let end = if next == Some(b'\\') {
                text[i + 2..].find('\'').map(|n| i + 2 + n + 1)
            } else {
                text[i + 1..]
                    .chars()
                    .next()
                    .map(|ch| i + 1 + ch.len_utf8())
                    .filter(|&e| b.get(e) == Some(&b'\''))
                    .map(|e| e + 1)
            };
            let end = end.unwrap_or(i + 1);
            out.extend_from_slice(&b[i..end]);
            i = end;
        } else if c == b'r'
            && matches!(next, Some(b'#' | b'"'))
            && (i == 0 || !is_ident(b[i - 1]) || b[i - 1] == b'b')
        {
            let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
            let open = i + 1 + hashes;
            if b.get(open) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let end = text[open + 1..]
                .find(&close)
                .map_or(b.len(), |n| open + 1 + n + close.len());
            if strings {
                out.extend_from_slice(b"\"\"");
                newlines(&mut out, i, end);
            } else {
                out.extend_from_slice(&b[i..end]);
            }
            i = end;
        } else if c == b'"' {
            let mut end = i + 1;
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            let end = (end + 1).min(b.len());
            if strings {
                out.extend_from_slice(b"\"\"");
                newlines(&mut out, i, end);
            } else {
                out.extend_from_slice(&b[i..end]);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Tarjan's strongly connected components of a graph given as adjacency lists (iterative).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let (mut index, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut out) = (vec![false; n], Vec::new(), Vec::new());
    let mut next = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&mut (v, ref mut child)) = work.last_mut() {
            if *child == 0 && index[v] == usize::MAX {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = edges[v].get(*child) {
                *child += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}
