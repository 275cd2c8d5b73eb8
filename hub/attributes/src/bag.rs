//! The attribute bag: the values of one request, indexed by attribute id.

use crate::error::DecodeError;
use crate::value::Value;
use crate::vocabulary::{AttrId, AttrType, VOCABULARY};

/// The attributes of one request. Lookups are an array index, no hashing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bag {
    values: Vec<Option<Value>>,
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
            Value::StringMap(m) if is_header_map(id) => Value::StringMap(crate::lowercase_keys(m)),
            v => v,
        };
        Ok(self.values[id.index()].replace(value))
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
