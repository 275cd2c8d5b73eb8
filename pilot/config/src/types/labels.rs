//! Labels (`app: reviews`, `version: v1`) as a sorted list.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Labels, sorted by key, each key once. Kept as a boxed slice: most carry two or three, for which a
/// `BTreeMap` allocates room for eleven, and a mesh's every endpoint carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(String, String)]>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Labels::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every label of `selector` is here with the same value.
    pub fn matches(&self, selector: &Labels) -> bool {
        selector.iter().all(|(k, v)| self.get(k) == Some(v))
    }
}

impl FromIterator<(String, String)> for Labels {
    /// Sorted by key; of a key given twice, the last value counts (as when inserting into a map).
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let map: BTreeMap<String, String> = iter.into_iter().collect();
        Labels(map.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(labels: [(String, String); N]) -> Self {
        labels.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Labels(map.into_iter().collect())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;

    /// The value of `key`; panics when absent (as a map's index does).
    fn index(&self, key: &str) -> &String {
        self.get(key).unwrap_or_else(|| panic!("no label {key:?}"))
    }
}

/// A map of strings in the schema (the field table of docs/istio-fields.md).
impl schemars::JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Labels".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, String>::json_schema(generator)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Labels::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sorted_by_key_with_the_last_value_of_a_repeated_key() {
        let l = labels(&[("version", "v1"), ("app", "reviews"), ("version", "v2")]);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["app", "version"]
        );
        assert_eq!(l.get("version").map(String::as_str), Some("v2"));
        assert_eq!(l.get("zone"), None);
    }

    #[test]
    fn a_selector_matches_labels_that_carry_all_of_it() {
        let endpoint = labels(&[("app", "reviews"), ("version", "v2")]);
        assert!(endpoint.matches(&labels(&[("version", "v2")])));
        assert!(endpoint.matches(&Labels::new()));
        assert!(!endpoint.matches(&labels(&[("version", "v1")])));
        assert!(!endpoint.matches(&labels(&[("zone", "a")])));
    }
}
