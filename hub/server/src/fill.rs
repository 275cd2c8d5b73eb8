//! Setting the attributes of a bag built from an Envoy message (ext_authz, access logs).

use sextant_attributes::{AttrId, Bag, Value};

/// Sets `id`. Ids and their types are checked at compile time (`attr!`); the value's case matches the type by
/// construction, so this cannot fail.
pub(crate) fn set(bag: &mut Bag, id: AttrId, value: Value) {
    let set = bag.set(id, value);
    debug_assert!(set.is_ok(), "{}: {set:?}", id.name());
}

/// Sets the string attribute `id`, unless `s` is empty (Envoy's "not set").
pub(crate) fn set_str(bag: &mut Bag, id: AttrId, s: &str) {
    if !s.is_empty() {
        set(bag, id, Value::String(s.to_string()));
    }
}
