//! The table of the Istio networking fields pilot reads, generated from the JSON schemas of the serde types
//! it parses resources with (`docs/istio-fields.md`; a test keeps the file equal to [`markdown`]). The types
//! refuse every field they do not declare, so the table is exactly what pilot accepts: it cannot drift.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::types::{
    AuthorizationPolicySpec, DestinationRuleSpec, GatewaySpec, PeerAuthenticationSpec,
    ServiceEntrySpec, SidecarSpec, VirtualServiceSpec, WorkloadEntrySpec,
};

/// Nesting deeper than this is cut (no Istio field nests near it; a guard against recursive types).
const MAX_DEPTH: usize = 12;

/// One row: the field's path under the resource, its type, its meaning.
struct Row {
    path: String,
    kind: String,
    meaning: String,
}

/// The whole page, in Markdown.
pub fn markdown() -> String {
    let kinds: [(&str, Value); 8] = [
        ("VirtualService", schema::<VirtualServiceSpec>()),
        ("DestinationRule", schema::<DestinationRuleSpec>()),
        ("Gateway", schema::<GatewaySpec>()),
        ("ServiceEntry", schema::<ServiceEntrySpec>()),
        ("WorkloadEntry", schema::<WorkloadEntrySpec>()),
        ("Sidecar", schema::<SidecarSpec>()),
        ("AuthorizationPolicy", schema::<AuthorizationPolicySpec>()),
        ("PeerAuthentication", schema::<PeerAuthenticationSpec>()),
    ];
    let mut out = String::from(
        "# Istio networking and security fields pilot reads\n\n\
         Generated from the types `sextant pilot` parses `networking.istio.io` and `security.istio.io` resources with \
         (`pilot/config/src/types/`); `cargo test -p pilot-config` fails when this page and the types differ, and \
         `SEXTANT_BLESS=1 cargo test -p pilot-config fields` rewrites it. A field that is not listed is refused \
         with an error naming it (the resource is left out and reported, the rest is served), never ignored. \
         Field names and enum values are Istio's.\n",
    );
    for (kind, root) in &kinds {
        let defs = root.get("$defs").and_then(Value::as_object);
        let mut rows = Vec::new();
        fields(root, defs, "spec", &mut rows, &[]);
        out.push_str(&format!(
            "\n## {kind}\n\n| Field | Type | Meaning |\n|---|---|---|\n"
        ));
        for r in rows {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                r.path,
                r.kind,
                cell(&r.meaning)
            ));
        }
    }
    out
}

fn schema<T: JsonSchema>() -> Value {
    SchemaGenerator::default()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Text fit for one table cell.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The schema `s` stands for: a `$ref` followed into `defs`, an `Option`'s `null` alternative dropped.
/// `seen` are the definitions being expanded above (a repeat is not followed again).
fn resolve<'a>(
    s: &'a Value,
    defs: Option<&'a Map<String, Value>>,
    seen: &mut Vec<String>,
) -> Option<&'a Value> {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if seen.iter().any(|n| n == name) {
            return None;
        }
        seen.push(name.to_string());
        return defs?.get(name);
    }
    if let Some(alts) = s.get("anyOf").and_then(Value::as_array) {
        let real: Vec<&Value> = alts
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [one] = real[..] {
            return resolve(one, defs, seen);
        }
    }
    Some(s)
}

/// The enumerated values of `s`, if it is an enumeration (plain or with a doc comment per value).
fn values(s: &Value) -> Option<Vec<String>> {
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return Some(
            e.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        );
    }
    let alts = s.get("oneOf").and_then(Value::as_array)?;
    alts.iter()
        .map(|a| {
            a.get("const")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    let e = a.get("enum")?.as_array()?;
                    Some(
                        e.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("`, `"),
                    )
                })
        })
        .collect()
}

/// The alternatives of a `oneOf` of objects (an enum with data: `exact` or `prefix` or `regex`), merged.
fn alternatives(s: &Value) -> Option<Map<String, Value>> {
    let alts = s.get("oneOf").and_then(Value::as_array)?;
    let mut merged = Map::new();
    for a in alts {
        merged.extend(a.get("properties")?.as_object()?.clone());
    }
    Some(merged)
}

/// The type column of `s` (already resolved).
fn describe(s: &Value, defs: Option<&Map<String, Value>>) -> String {
    if s.get("format").and_then(Value::as_str) == Some("duration") {
        return "duration (`1s`, `100ms`)".into();
    }
    if let Some(v) = values(s) {
        return format!("one of `{}`", v.join("`, `"));
    }
    if let Some(a) = alternatives(s) {
        let keys: Vec<&str> = a.keys().map(String::as_str).collect();
        return format!("exactly one of `{}`", keys.join("`, `"));
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    match types.first().copied() {
        Some("array") => {
            let item = s
                .get("items")
                .and_then(|i| resolve(i, defs, &mut Vec::new()))
                .map_or_else(|| "value".to_string(), |i| describe(i, defs));
            format!("list of {item}")
        }
        Some("object") => match s.get("additionalProperties") {
            Some(v @ Value::Object(_)) => {
                let value = resolve(v, defs, &mut Vec::new())
                    .map_or_else(|| "value".to_string(), |v| describe(v, defs));
                format!("map of string to {value}")
            }
            _ => "object".into(),
        },
        Some(t) => t.to_string(),
        None => "value".into(),
    }
}

/// The rows for the fields of the object `s` stands for, at `path`, depth first.
fn walk(
    s: &Value,
    defs: Option<&Map<String, Value>>,
    path: &str,
    rows: &mut Vec<Row>,
    seen: &mut Vec<String>,
) {
    if let Some(s) = resolve(s, defs, seen) {
        fields(s, defs, path, rows, seen);
    }
}

/// The rows for the fields of the resolved object `s` at `path`, depth first.
fn fields(
    s: &Value,
    defs: Option<&Map<String, Value>>,
    path: &str,
    rows: &mut Vec<Row>,
    seen: &[String],
) {
    if seen.len() > MAX_DEPTH {
        return;
    }
    let properties = s
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .or_else(|| alternatives(s))
        .unwrap_or_default();
    for (name, field) in &properties {
        let mut below = seen.to_vec();
        let Some(resolved) = resolve(field, defs, &mut below) else {
            continue;
        };
        let meaning = field
            .get("description")
            .or_else(|| resolved.get("description"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let here = format!("{path}.{name}");
        rows.push(Row {
            path: here.clone(),
            kind: describe(resolved, defs),
            meaning: meaning.to_string(),
        });
        // Into lists of objects, maps of objects and objects.
        let container = resolved.get("type").and_then(Value::as_str);
        match (
            container,
            resolved.get("items"),
            resolved.get("additionalProperties"),
        ) {
            (Some("array"), Some(items), _) => {
                walk(items, defs, &format!("{here}[]"), rows, &mut below);
            }
            (Some("object"), _, Some(values @ Value::Object(_))) => {
                walk(values, defs, &format!("{here}.*"), rows, &mut below);
            }
            _ => fields(resolved, defs, &here, rows, &below),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_field_table_in_docs_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/istio-fields.md");
        let generated = super::markdown();
        if std::env::var_os("SEXTANT_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/istio-fields.md");
            return;
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == generated,
            "{} differs from the table generated from pilot's types; rewrite it with \
             `SEXTANT_BLESS=1 cargo test -p pilot-config fields`",
            path.display()
        );
    }

    #[test]
    fn the_table_names_nested_fields_with_their_types_and_docs() {
        let page = super::markdown();
        for needle in [
            "| `spec.http[].match[].uri.prefix` | string | The string starts with this. |",
            "| `spec.http[].match[].headers.*.exact` | string |",
            "| `spec.http[].timeout` | duration (`1s`, `100ms`) |",
            "| `spec.trafficPolicy.tls.mode` | one of `DISABLE`, `SIMPLE`, `MUTUAL`, `ISTIO_MUTUAL` |",
            "| `spec.servers[].port.number` | integer |",
            "| `spec.endpoints[].labels` | map of string to string |",
        ] {
            assert!(page.contains(needle), "{needle} not in\n{page}");
        }
    }
}
