//! Pilot's loading and validation of the Istio kinds it reads (`pilot-config`): each resource typed and
//! judged on its own, as pilot does for every change of its configuration directory.

use std::path::PathBuf;

use pilot_config::{NetworkingSet, ParsedFiles, validate_each, validate_each_after};
use sextant_resources::ConfigFiles;

/// The kinds pilot validates, with an apiVersion it accepts for each.
const KINDS: &[(&str, &str)] = &[
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1", "Gateway"),
    ("networking.istio.io/v1", "ServiceEntry"),
    ("networking.istio.io/v1", "WorkloadEntry"),
    ("networking.istio.io/v1", "Sidecar"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("security.istio.io/v1", "PeerAuthentication"),
];

/// The first byte chooses a kind of [`KINDS`] (or, past them, none): the rest is YAML that follows that
/// kind's envelope (`apiVersion`, `kind`, `metadata`), so it mostly starts with `spec:`; it may go on with
/// `---` and documents of any kind. The text is loaded as the configuration directory's one file, each
/// resource typed and judged on its own, then judged again after the mesh it made (which keeps the last good
/// version of an invalid security resource). Every rejected resource's errors format.
pub fn pilot_config(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Configuration files are read as UTF-8.
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let text = match KINDS.get(usize::from(selector)) {
        Some((api_version, kind)) => format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: fuzz\n  namespace: default\n{rest}"
        ),
        None => rest.to_string(),
    };
    let files = ConfigFiles::from_texts(vec![(PathBuf::from("fuzz/mesh.yaml"), text)]);
    let set = NetworkingSet::load_with(&files, &mut ParsedFiles::default());
    let first = validate_each(&set);
    let again = validate_each_after(&set, Some(&first.config));
    for rejected in first.rejected.iter().chain(&again.rejected) {
        let _ = (rejected.message(), rejected.key(), rejected.at());
    }
    assert_eq!(
        first.rejected.len(),
        again.rejected.len(),
        "the same resources are rejected after the mesh they made"
    );
}
