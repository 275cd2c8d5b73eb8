//! The status the hub writes on each resource (pure): from its verdict on the resources it last read, the
//! `Accepted` condition of each, for the generation it judged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hub_config::{ConfigError, ResourceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::objects::{self, Kind};

/// The longest condition message written (the API server allows 32 KiB).
pub const MAX_MESSAGE: usize = 4096;

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

/// The status each judged resource should carry: for every resource of `judged` (path → generation judged)
/// whose `Accepted` condition follows from `verdict`, its status; `current` gives the status it has, whose
/// transition time is kept when the condition's value does not change. A resource the verdict says nothing
/// about (the whole change was refused for another's error) is left as it is.
pub fn desired(
    judged: &BTreeMap<PathBuf, i64>,
    verdict: &Verdict,
    current: impl Fn(&PathBuf) -> Option<ResourceStatus>,
    now: Time,
) -> Vec<(PathBuf, ResourceStatus)> {
    let mut messages: BTreeMap<&PathBuf, Vec<String>> = BTreeMap::new();
    for e in &verdict.errors {
        if let Some(at) = e.location()
            && let Some(path) = judged.keys().find(|p| p.as_path() == &*at.file)
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
    let mut out = Vec::new();
    for (path, generation) in judged {
        let Some((kind, key)) = objects::of_path(path) else {
            continue;
        };
        let (status, reason, message) = match messages.get(path) {
            Some(errors) => {
                let kept = verdict
                    .kept
                    .contains(&format!("{} {}/{}", kind.name(), key.0, key.1));
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
                ("False", reason, message)
            }
            None if verdict.applied => ("True", "Accepted", accepted_message(kind)),
            None => continue,
        };
        let message = truncate(message, MAX_MESSAGE);
        let previous = current(path);
        let same = previous.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Accepted" && c.status == status)
        });
        let condition = Condition {
            type_: "Accepted".to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: Some(*generation),
            last_transition_time: same
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone()),
        };
        out.push((
            path.clone(),
            ResourceStatus {
                observed_generation: Some(*generation),
                conditions: vec![condition],
            },
        ));
    }
    out
}

fn accepted_message(kind: Kind) -> String {
    match kind {
        Kind::Adapter => "the hub runs it".to_string(),
        _ => "the hub serves it".to_string(),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Whether `current` already says what `wanted` says (the transition time aside).
pub fn same(current: Option<&ResourceStatus>, wanted: &ResourceStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    let key = |s: &ResourceStatus| {
        (
            s.observed_generation,
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                        c.observed_generation,
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    key(current) == key(wanted)
}

#[cfg(test)]
mod tests;
