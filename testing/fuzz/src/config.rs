//! The YAML resource loader: one file's text split into documents (`sextant-resources`) and the hub's kinds
//! typed from them (`hub-config`).
//!
//! The loader is the one call in [`load`], so that a move of the loader changes one import.

use std::path::PathBuf;

use sextant_resources::{ConfigError, ConfigFiles};

/// The file name the input is loaded as.
const FILE: &str = "fuzz/config.yaml";

/// Loads the input as the one YAML file of a configuration directory, each resource on its own and
/// strictly, and formats every error (which locates the field's line in the document). The strict load
/// must fail exactly when the lenient one reports errors, and every error must point into the file.
pub fn config_yaml(data: &[u8]) {
    // A configuration file is read as UTF-8; anything else never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every character a YAML parser may take for a line break counts (CR alone, and YAML 1.1's NEL, LS, PS).
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    let files = ConfigFiles::from_texts(vec![(PathBuf::from(FILE), text.to_string())]);
    let (set, errors, strict_ok) = load(&files);
    assert_eq!(
        strict_ok,
        errors.is_empty(),
        "the strict load fails exactly when a resource is left out"
    );
    for e in &errors {
        points_into_file(e, lines);
    }
    for p in &set.policies {
        let _ = p.origin.locate("spec.rules[0].when");
    }
    for r in &set.rate_limits {
        let _ = r.origin.locate("spec.limits[0].dimensions");
    }
    for doc in files.documents() {
        match doc {
            Ok(doc) => {
                let _ = doc.key();
                if let Err(e) = doc.check_names() {
                    points_into_file(&e, lines);
                }
                let _ = doc.origin.locate("metadata.name");
            }
            Err(e) => points_into_file(&e, lines),
        }
    }
}

/// The hub's loader: each resource on its own (the set and its errors), and whether the strict load passed.
fn load(files: &ConfigFiles) -> (hub_config::ConfigSet, Vec<ConfigError>, bool) {
    let (set, errors) = hub_config::load_each(files);
    (set, errors, hub_config::load_files(files).is_ok())
}

/// `e` formats, and when it names a place, the place is a line of the file.
fn points_into_file(e: &ConfigError, lines: usize) {
    let _ = e.to_string();
    if let Some(at) = e.location() {
        assert_eq!(at.file.to_str(), Some(FILE), "{e}");
        let line = at.line as usize;
        assert!(
            (1..=lines + 1).contains(&line),
            "line {line} of {lines}: {e}"
        );
    }
}
