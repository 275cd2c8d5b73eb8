use std::path::PathBuf;

use crate::modules::{ModuleGraph, strip_comments};

/// A crate written into a temporary folder: (path relative to `src/`, text).
fn crate_of(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sextant-house-{}-{}",
        std::process::id(),
        files.len() * 31 + files[0].1.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir.join("src/lib.rs")
}

fn names(graph: &ModuleGraph, module: &[&str]) -> Vec<String> {
    let key: Vec<String> = module.iter().map(|s| s.to_string()).collect();
    graph.imports[&key].iter().map(|m| m.join("::")).collect()
}

#[test]
fn a_circle_between_siblings_is_found_through_groups_super_and_reexports() {
    let root = crate_of(&[
        (
            "lib.rs",
            "mod a;\npub mod b;\n#[path = \"other/c_file.rs\"]\nmod c;\npub use c::Thing;\n",
        ),
        ("a.rs", "use crate::b::{x, y::{z}};\n"),
        ("b/mod.rs", "pub mod y;\npub fn x() {}\n"),
        ("b/y.rs", "pub fn z() { super::super::c::f(); }\n"),
        (
            "other/c_file.rs",
            "pub struct Thing;\npub fn f() { let _ = crate::a::g; }\n",
        ),
    ]);
    let graph = ModuleGraph::read(&root).expect("read");
    assert_eq!(names(&graph, &["a"]), ["b", "b::y"]);
    assert_eq!(names(&graph, &["b", "y"]), ["c"]);
    assert_eq!(graph.circles(), [vec!["a", "b::y", "c"]]);
    std::fs::remove_dir_all(root.parent().and_then(|p| p.parent()).expect("dir")).expect("rm");
}

#[test]
fn parents_children_comments_and_strings_are_not_imports() {
    let root = crate_of(&[
        (
            "lib.rs",
            "mod p;\nmod q;\n// crate::q::x\nconst S: &str = \"crate::q\";\n",
        ),
        ("p/mod.rs", "mod child;\nuse child::f;\n/* crate::q::g */\n"),
        (
            "p/child.rs",
            "use super::*;\npub fn f() { crate::p::h(); }\n",
        ),
        ("q.rs", "pub fn x() { crate::p::child::f(); }\n"),
    ]);
    let graph = ModuleGraph::read(&root).expect("read");
    assert!(
        names(&graph, &[]).is_empty(),
        "comments and strings: {:?}",
        names(&graph, &[])
    );
    assert!(names(&graph, &["p", "child"]).is_empty(), "its parent");
    assert_eq!(names(&graph, &["q"]), ["p::child"]);
    assert!(graph.circles().is_empty());
    std::fs::remove_dir_all(root.parent().and_then(|p| p.parent()).expect("dir")).expect("rm");
}

#[test]
fn comments_and_strings_are_blanked_lines_kept() {
    let text = "a // x\nb /* y\nz */ c \"s // t\" '\"' r#\"q \"crate::x\" \"# d\n";
    assert_eq!(strip_comments(text, true), "a \nb \n c \"\" '\"' \"\" d\n");
    assert_eq!(
        strip_comments(text, false),
        "a \nb \n c \"s // t\" '\"' r#\"q \"crate::x\" \"# d\n"
    );
}
