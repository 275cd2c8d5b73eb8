//! What a reload found wrong: the errors with their locations and the resources whose last good version
//! serves, kept for `/debug/config` and `/metrics`.

use hub_config::ConfigError;

/// What the last reload attempt found wrong, kept for `/debug/config` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct LoadFailure {
    /// One line per error: `file:line: kind name: field: message`.
    pub errors: Vec<String>,
    /// (file, line, field) of each error, for the metric labels.
    pub locations: Vec<(String, u32, String)>,
    /// `Kind namespace/name` of the invalid resources whose last good version serves (the others named by
    /// the errors are left out). Empty when the whole change was refused.
    pub kept: Vec<String>,
    /// Whether the reload went on without the resources at fault (otherwise the change was refused).
    pub partial: bool,
}

impl LoadFailure {
    /// The failure of a reload refused for `errors` (neither partial nor keeping anything).
    pub(crate) fn of(errors: &[ConfigError]) -> Self {
        LoadFailure {
            errors: errors.iter().map(ToString::to_string).collect(),
            locations: errors
                .iter()
                .map(|e| {
                    let (file, line) = e.location().map_or((String::new(), 0), |l| {
                        (l.file.display().to_string(), l.line)
                    });
                    (file, line, e.field().unwrap_or_default().to_string())
                })
                .collect(),
            kept: Vec::new(),
            partial: false,
        }
    }
}
