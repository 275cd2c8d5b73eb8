use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::*;

fn docs(text: &str) -> Vec<Result<RawResource, ConfigError>> {
    documents(Path::new("t.yaml"), text)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    hosts: Vec<String>,
    #[serde(default)]
    port: u16,
}

#[test]
fn splits_documents_and_reads_each_envelope() {
    let all = docs(
        "apiVersion: example.io/v1\nkind: Thing\nmetadata: {name: a, namespace: ns}\nspec: {hosts: [x]}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
    );
    assert_eq!(all.len(), 2, "the empty document yields nothing");
    let a = all[0].as_ref().unwrap();
    assert_eq!(
        (a.group.as_str(), a.version.as_str(), a.kind.as_str()),
        ("example.io", "v1", "Thing")
    );
    assert_eq!(a.key(), "ns/a");
    assert_eq!(a.origin.line, 1);
    let b = all[1].as_ref().unwrap();
    assert_eq!((b.group.as_str(), b.version.as_str()), ("", "v1"));
    assert_eq!(b.key(), "default/b");
    assert_eq!(b.origin.line, 6, "the line of its `---`");
    assert_eq!(b.spec, serde_json::json!({}), "a missing spec is empty");
}

#[test]
fn a_syntax_error_is_one_error_for_the_file_with_line_and_column() {
    let all = docs("apiVersion: v1\nkind: X\nmetadata: {name: a\n");
    assert_eq!(all.len(), 1);
    let e = all[0].as_ref().unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    assert!(e.location().unwrap().line >= 3, "{e}");
    assert!(e.to_string().starts_with("t.yaml:"), "{e}");
}

#[test]
fn a_document_without_apiversion_or_kind_is_refused_at_its_line() {
    let all = docs("kind: X\nmetadata: {name: a}\n---\n- a list\n");
    let first = all[0].as_ref().unwrap_err().to_string();
    assert!(first.contains("apiVersion: missing"), "{first}");
    let second = all[1].as_ref().unwrap_err().to_string();
    assert!(second.starts_with("t.yaml:3:"), "{second}");
    assert!(second.contains("is a mapping"), "{second}");
}

#[test]
fn a_typed_spec_error_names_the_field_and_its_line() {
    let all = docs(
        "apiVersion: example.io/v1\nkind: Thing\nmetadata: {name: a}\nspec:\n  hosts: [x]\n  prot: 80\n",
    );
    let raw = all.into_iter().next().unwrap().unwrap();
    let err = raw.into_resource::<Spec>().unwrap_err();
    assert_eq!(err.field(), Some("spec.prot"));
    assert!(
        err.to_string()
            .starts_with("t.yaml:6: Thing default/a: spec.prot: unknown field `prot`"),
        "{err}"
    );
    let ok = docs("apiVersion: example.io/v1\nkind: Thing\nmetadata: {name: a}\nspec: {hosts: [h], port: 8}\n")
        .remove(0)
        .unwrap()
        .into_resource::<Spec>()
        .unwrap();
    assert_eq!(
        (ok.spec.hosts.as_slice(), ok.spec.port),
        (&["h".to_string()][..], 8)
    );
    assert_eq!(ok.qualify("other"), "default/other");
    assert_eq!(ok.qualify("ns/other"), "ns/other");
}

#[test]
fn names_must_be_dns_names() {
    for (name, ok) in [
        ("a-b.c", true),
        ("Bad_Name", false),
        ("-a", false),
        ("", false),
    ] {
        let raw = docs(&format!(
            "apiVersion: example.io/v1\nkind: Thing\nmetadata: {{name: {name:?}}}\n"
        ))
        .remove(0)
        .unwrap();
        assert_eq!(raw.check_names().is_ok(), ok, "{name:?}");
    }
}

#[test]
fn duplicates_point_at_both_and_keep_first_keeps_the_first() {
    let doc = "apiVersion: example.io/v1\nkind: Thing\nmetadata: {name: a}\nspec: {hosts: [one]}\n";
    let mut list: Vec<Resource<Spec>> = docs(&format!("{doc}---\n{}", doc.replace("one", "two")))
        .into_iter()
        .map(|d| d.unwrap().into_resource().unwrap())
        .collect();
    let mut errors = Vec::new();
    check_duplicates(&list, "Thing", &mut errors);
    assert_eq!(
        errors[0].to_string(),
        "t.yaml:8: Thing default/a is defined twice (first at t.yaml:3)"
    );
    let mut errors = Vec::new();
    keep_first(&mut list, "Thing", &mut errors);
    assert_eq!((list.len(), errors.len()), (1, 1));
    assert_eq!(list[0].spec.hosts, ["one"]);
}

#[test]
fn files_are_read_sorted_and_their_digest_follows_their_content() {
    let dir = std::env::temp_dir().join(format!("sextant-resources-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(
        dir.join("sub/b.yaml"),
        "apiVersion: v1\nkind: X\nmetadata: {name: b}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.yml"),
        "apiVersion: v1\nkind: X\nmetadata: {name: a}\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml").unwrap();
    let files = ConfigFiles::read(&dir).unwrap();
    let names: Vec<PathBuf> = files
        .files
        .iter()
        .map(|(p, _)| p.strip_prefix(&dir).unwrap().to_path_buf())
        .collect();
    assert_eq!(names, [PathBuf::from("a.yml"), PathBuf::from("sub/b.yaml")]);
    assert_eq!(files.documents().len(), 2);
    let before = files.digest;
    std::fs::write(
        dir.join("a.yml"),
        "apiVersion: v1\nkind: X\nmetadata: {name: c}\n",
    )
    .unwrap();
    assert_ne!(ConfigFiles::read(&dir).unwrap().digest, before);
    let missing = ConfigFiles::read(&dir.join("nope")).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
