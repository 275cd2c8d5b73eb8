//! What a stream subscribes to for one type, kept compact: a proxy that asks for every resource of a type
//! by name (Envoy asks for the endpoints of every cluster it has) shares the snapshot's map instead of
//! holding its own copy of thousands of names.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::snapshot::{Resources, Snapshot};

/// The names of one type's subscription.
#[derive(Clone, Debug)]
pub(crate) enum Names {
    /// Names of its own.
    Set {
        /// The names.
        names: BTreeSet<String>,
        /// Their bytes, summed (what [`crate::limits::MAX_NAME_BYTES`] bounds).
        bytes: usize,
    },
    /// Exactly the names of this map (a snapshot's resources of the type when the proxy subscribed).
    Keys(Resources),
}

impl Default for Names {
    fn default() -> Self {
        Names::Set {
            names: BTreeSet::new(),
            bytes: 0,
        }
    }
}

impl Names {
    /// The names of a request's list, shared with `snapshot`'s map of `type_url` when they are exactly its
    /// names. Checked without copying a name: Envoy's EDS requests name every cluster, and a stream may hold
    /// several of them read ahead.
    pub(crate) fn from_list(list: Vec<String>, snapshot: &Snapshot, type_url: &str) -> Names {
        if let Some(all) = snapshot.shared(type_url)
            && list.len() == all.len()
            && (list.iter().eq(all.keys())
                || (list.iter().all(|n| all.contains_key(n)) && distinct(&list)))
        {
            return Names::Keys(all.clone());
        }
        Names::own(list.into_iter().collect())
    }

    /// Names of its own.
    fn own(names: BTreeSet<String>) -> Names {
        let bytes = names.iter().map(String::len).sum();
        Names::Set { names, bytes }
    }

    /// How many names the subscription holds of its own, and their bytes: what the stream pays for (names
    /// shared with a snapshot cost nothing more).
    pub(crate) fn owned(&self) -> (usize, usize) {
        match self {
            Names::Set { names, bytes } => (names.len(), *bytes),
            Names::Keys(_) => (0, 0),
        }
    }

    /// The same names, shared with `snapshot`'s map of `type_url` when they are exactly its names.
    pub(crate) fn compact(self, snapshot: &Snapshot, type_url: &str) -> Names {
        match (self, snapshot.shared(type_url)) {
            (Names::Set { names, .. }, Some(all))
                if names.len() == all.len() && names.iter().eq(all.keys()) =>
            {
                Names::Keys(all.clone())
            }
            (names, _) => names,
        }
    }

    /// The names, in order.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match self {
            Names::Set { names, .. } => Box::new(names.iter()),
            Names::Keys(k) => Box::new(k.keys()),
        }
    }

    /// How many names.
    pub(crate) fn len(&self) -> usize {
        match self {
            Names::Set { names, .. } => names.len(),
            Names::Keys(k) => k.len(),
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether both hold the same names.
    pub(crate) fn same(&self, other: &Names) -> bool {
        match (self, other) {
            (Names::Keys(a), Names::Keys(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }

    /// Whether `name` is one of them.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self {
            Names::Set { names, .. } => names.contains(name),
            Names::Keys(k) => k.contains_key(name),
        }
    }

    /// The names as a set of their own, to change them, with their bytes.
    fn set_mut(&mut self) -> (&mut BTreeSet<String>, &mut usize) {
        if let Names::Keys(k) = self {
            *self = Names::own(k.keys().cloned().collect());
        }
        match self {
            Names::Set { names, bytes } => (names, bytes),
            Names::Keys(_) => unreachable!("just replaced by a set"),
        }
    }

    /// Adds a name.
    pub(crate) fn insert(&mut self, name: &str) {
        if !self.contains(name) {
            let (names, bytes) = self.set_mut();
            names.insert(name.to_string());
            *bytes += name.len();
        }
    }

    /// Removes a name.
    pub(crate) fn remove(&mut self, name: &str) {
        if self.contains(name) {
            let (names, bytes) = self.set_mut();
            names.remove(name);
            *bytes -= name.len();
        }
    }
}

/// Whether no name repeats.
fn distinct(list: &[String]) -> bool {
    list.iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .len()
        == list.len()
}

/// Takes `*` out of a request's list of names; whether it was there.
pub(crate) fn take_wildcard(names: &mut Vec<String>) -> bool {
    let before = names.len();
    names.retain(|n| n != "*");
    names.len() != before
}
