//! The attribute bag: the values of one request, indexed by attribute id.

use std::collections::HashMap;

use crate::error::DecodeError;
use crate::value::Value;
use crate::vocabulary::{AttrId, AttrType, VOCABULARY};

/// The attributes of one request. Lookups are an array index, no hashing.
#[derive(Clone, Debug, Default)]
pub struct Bag {
    values: Vec<Option<Value>>,
}

/// Two bags are equal when they hold the same attributes with the same values.
impl PartialEq for Bag {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Bag {
    /// An empty bag.
    pub fn new() -> Self {
        Bag::default()
    }

    /// The value of an attribute, if present.
    pub fn get(&self, id: AttrId) -> Option<&Value> {
        self.values.get(id.index()).and_then(Option::as_ref)
    }

    /// The value of an attribute by name, if known and present.
    pub fn get_by_name(&self, name: &str) -> Option<&Value> {
        crate::lookup(name).and_then(|id| self.get(id))
    }

    /// Sets an attribute, checking the value's type against the vocabulary. Returns the previous value.
    pub fn set(&mut self, id: AttrId, value: Value) -> Result<Option<Value>, DecodeError> {
        let expected = id.ty();
        if value.ty() != expected {
            return Err(DecodeError::WrongType {
                name: id.name(),
                expected: expected.name(),
                got: value.ty().name(),
            });
        }
        if self.values.len() <= id.index() {
            self.values.resize(VOCABULARY.len(), None);
        }
        let value = match value {
            Value::StringMap(m) if is_header_map(id) => Value::StringMap(lowercase_keys(m)),
            v => v,
        };
        Ok(self.values[id.index()].replace(value))
    }

    /// Sets a string attribute to `text`, reusing the previous value's allocation when it was a string too.
    /// Returns whether the attribute was present.
    pub fn set_str(&mut self, id: AttrId, text: &str) -> Result<bool, DecodeError> {
        if id.ty() != AttrType::String {
            return Err(DecodeError::WrongType {
                name: id.name(),
                expected: id.ty().name(),
                got: AttrType::String.name(),
            });
        }
        if self.values.len() <= id.index() {
            self.values.resize(VOCABULARY.len(), None);
        }
        let slot = &mut self.values[id.index()];
        match slot {
            Some(Value::String(s)) => {
                s.clear();
                s.push_str(text);
                Ok(true)
            }
            other => Ok(other.replace(Value::String(text.to_string())).is_some()),
        }
    }

    /// Sets a string map attribute to `entries` (of two with the same key, the later wins), reusing the
    /// previous value's table when it was a map too, and its strings when it had the same keys. The bag is
    /// then as after [`Bag::set`] with the map built from `entries`.
    pub fn set_str_map(&mut self, id: AttrId, entries: &[(&str, &str)]) -> Result<(), DecodeError> {
        if id.ty() != AttrType::StringMap {
            return Err(DecodeError::WrongType {
                name: id.name(),
                expected: id.ty().name(),
                got: AttrType::StringMap.name(),
            });
        }
        let owned = || {
            entries
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        };
        if is_header_map(id) {
            return self.set(id, Value::StringMap(owned().collect())).map(drop);
        }
        if self.values.len() <= id.index() {
            self.values.resize(VOCABULARY.len(), None);
        }
        let slot = &mut self.values[id.index()];
        let Some(Value::StringMap(map)) = slot else {
            *slot = Some(Value::StringMap(owned().collect()));
            return Ok(());
        };
        // Small maps whose keys are the previous value's (a workload's labels): values rewritten in place.
        let same_keys = entries.len() == map.len()
            && entries.len() <= 8
            && entries.iter().enumerate().all(|(i, (k, _))| {
                map.contains_key(*k) && entries[..i].iter().all(|(earlier, _)| earlier != k)
            });
        if same_keys {
            for (k, v) in entries {
                if let Some(value) = map.get_mut(*k) {
                    value.clear();
                    value.push_str(v);
                }
            }
        } else {
            map.clear();
            map.extend(owned());
        }
        Ok(())
    }

    /// Removes every attribute, keeping the allocation of the slots.
    pub fn clear(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
    }

    /// Sets an attribute by name (for tests, tools and front doors); unknown names are an error.
    pub fn set_by_name(&mut self, name: &str, value: Value) -> Result<Option<Value>, DecodeError> {
        let id = crate::lookup(name).ok_or_else(|| DecodeError::UnknownAttribute {
            name: name.to_string(),
            suggestion: crate::suggest(name),
        })?;
        self.set(id, value)
    }

    /// Removes an attribute.
    pub fn remove(&mut self, id: AttrId) -> Option<Value> {
        self.values.get_mut(id.index()).and_then(Option::take)
    }

    /// The present attributes, in vocabulary order.
    pub fn iter(&self) -> impl Iterator<Item = (AttrId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((AttrId(u16::try_from(i).ok()?), v.as_ref()?)))
    }

    /// How many attributes are present.
    pub fn len(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }

    /// Whether no attribute is present.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }
}

fn is_header_map(id: AttrId) -> bool {
    id.ty() == AttrType::StringMap && id.name().ends_with(".headers")
}

/// Lower-cases map keys (header names are case-insensitive); allocates only when a key has upper case.
fn lowercase_keys(m: HashMap<String, String>) -> HashMap<String, String> {
    if m.keys().all(|k| !k.bytes().any(|b| b.is_ascii_uppercase())) {
        return m;
    }
    m.into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}
