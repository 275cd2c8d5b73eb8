//! The hub's word on each resource it read (pure): from its verdict on the resources, the `Accepted`
//! judgement of each, with the same field-level message `sextant validate` prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hub_config::ConfigError;
use sextant_kube::resources::{Judgement, of_path};

/// The hub's verdict on the resources it read.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Whether a configuration built from them serves now (some may have been left out or kept at their
    /// last valid version); `false` when the whole change was refused.
    pub applied: bool,
    /// The errors found, each naming the resource's path.
    pub errors: Vec<ConfigError>,
    /// `Kind namespace/name` of the resources kept at their last valid version.
    pub kept: Vec<String>,
}

/// The judgement on each resource of `read` (their paths) that follows from `verdict`. A resource the
/// verdict says nothing about (the whole change was refused for another's error) gets none: it keeps the
/// status it has.
pub fn judgements(read: &[PathBuf], verdict: &Verdict) -> BTreeMap<PathBuf, Judgement> {
    let mut messages: BTreeMap<&PathBuf, Vec<String>> = BTreeMap::new();
    for e in &verdict.errors {
        if let Some(at) = e.location()
            && let Some(path) = read.iter().find(|p| p.as_path() == &*at.file)
        {
            // The location is the API object, not a file line: the kind, name, field and what is wrong.
            let text = e.to_string();
            let text = text
                .strip_prefix(&format!("{at}: "))
                .map(str::to_string)
                .unwrap_or(text);
            messages.entry(path).or_default().push(text);
        }
    }
    let mut out = BTreeMap::new();
    for path in read {
        let Some((kind, key)) = of_path(path) else {
            continue;
        };
        let judgement = match messages.get(path) {
            Some(errors) => {
                let kept = verdict
                    .kept
                    .contains(&format!("{kind} {}/{}", key.0, key.1));
                let mut message = errors.join("; ");
                let reason = if kept {
                    message.push_str("; its last valid version keeps serving");
                    "InvalidKeptLastValid"
                } else if verdict.applied {
                    message.push_str("; left out of the hub's configuration");
                    "Invalid"
                } else {
                    message.push_str(
                        "; the hub refused the change and serves its previous configuration",
                    );
                    "Invalid"
                };
                Judgement {
                    accepted: false,
                    reason: reason.into(),
                    message,
                }
            }
            None if verdict.applied => Judgement {
                accepted: true,
                reason: "Accepted".into(),
                message: if kind == "Adapter" {
                    "the hub runs it"
                } else {
                    "the hub serves it"
                }
                .into(),
            },
            None => continue,
        };
        out.insert(path.clone(), judgement);
    }
    out
}

#[cfg(test)]
mod tests;
