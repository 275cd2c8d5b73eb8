//! Renders docs/attributes.md from the vocabulary (the one definition).

use std::fmt::Write;

use crate::vocabulary::VOCABULARY;

/// The Markdown reference of the vocabulary, grouped by prefix.
pub fn attributes_markdown() -> String {
    let mut out = String::from(
        "# Attribute vocabulary\n\n\
         <!-- Generated from proto/attributes/src/vocabulary.rs by `sextant attributes`; do not edit. -->\n\n\
         Every attribute a proxy may send to the hub, and every name a CEL expression may read. In CEL, a string \
         map reads as a map (`request.headers[\"x-user\"]`, `\"x-user\" in request.headers`), an IP address as its \
         text (`source.ip == \"10.0.0.1\"`), timestamps and durations as CEL `timestamp` and `duration`.\n\n\
         Volatile attributes differ on every request: a decision that reads one is never cached.\n",
    );
    let mut group = "";
    for d in VOCABULARY
        .iter()
        .filter(|d| !d.name.starts_with("ratelimit."))
        .chain(
            VOCABULARY
                .iter()
                .filter(|d| d.name.starts_with("ratelimit.")),
        )
    {
        let prefix = d.name.split('.').next().unwrap_or(d.name);
        if prefix != group {
            group = prefix;
            let _ = write!(
                out,
                "\n## `{prefix}.*`\n\n| name | type | volatile | meaning |\n|---|---|---|---|\n"
            );
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            d.name,
            d.ty.name(),
            if d.volatile { "yes" } else { "" },
            d.description
        );
    }
    out
}
