//! A bounded map of one kind's projections, fed by watcher events. A re-list (after a start, a lost watch
//! or a `410 Gone`) is collected aside and swapped in whole when it completes, so the last complete state
//! keeps serving meanwhile.

use std::collections::BTreeMap;

/// An object's key: `(namespace, name)` (an empty namespace for cluster-scoped objects).
pub type Key = (String, String);

/// What an event did to a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The contents changed.
    Changed,
    /// The contents stayed the same.
    Unchanged,
    /// The object was refused: the store was full.
    Refused,
}

/// The projections of one kind by `(namespace, name)`, at most `cap` of them.
#[derive(Debug)]
pub struct Store<T> {
    items: BTreeMap<Key, T>,
    relist: Option<BTreeMap<Key, T>>,
    synced: bool,
    cap: usize,
}

impl<T: PartialEq> Store<T> {
    /// An empty, not yet synced store of at most `cap` objects.
    pub fn new(cap: usize) -> Store<T> {
        Store {
            items: BTreeMap::new(),
            relist: None,
            synced: false,
            cap,
        }
    }

    /// Whether a complete list has been received at least once.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The current objects.
    pub fn items(&self) -> &BTreeMap<Key, T> {
        &self.items
    }

    /// A (re-)list starts.
    pub fn init(&mut self) {
        self.relist = Some(BTreeMap::new());
    }

    /// An object of the list in progress.
    pub fn init_apply(&mut self, key: Key, value: T) -> Outcome {
        let relist = self.relist.get_or_insert_with(BTreeMap::new);
        if relist.len() >= self.cap && !relist.contains_key(&key) {
            return Outcome::Refused;
        }
        relist.insert(key, value);
        Outcome::Unchanged
    }

    /// The list is complete: it replaces the contents.
    pub fn init_done(&mut self) -> Outcome {
        self.synced = true;
        let listed = self.relist.take().unwrap_or_default();
        if listed == self.items {
            return Outcome::Unchanged;
        }
        self.items = listed;
        Outcome::Changed
    }

    /// An object was added or modified.
    pub fn apply(&mut self, key: Key, value: T) -> Outcome {
        match self.items.get(&key) {
            Some(old) if *old == value => Outcome::Unchanged,
            None if self.items.len() >= self.cap => Outcome::Refused,
            _ => {
                self.items.insert(key, value);
                Outcome::Changed
            }
        }
    }

    /// An object was deleted.
    pub fn delete(&mut self, key: &Key) -> Outcome {
        match self.items.remove(key) {
            Some(_) => Outcome::Changed,
            None => Outcome::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Key {
        ("default".into(), name.into())
    }

    #[test]
    fn relist_replaces_whole_and_bounds_hold() {
        let mut s = Store::new(2);
        s.init();
        assert_eq!(s.init_apply(k("a"), 1), Outcome::Unchanged);
        assert_eq!(s.init_apply(k("b"), 2), Outcome::Unchanged);
        assert_eq!(s.init_apply(k("c"), 3), Outcome::Refused);
        assert!(
            s.items().is_empty(),
            "nothing shows before the list completes"
        );
        assert_eq!(s.init_done(), Outcome::Changed);
        assert!(s.synced());
        assert_eq!(s.apply(k("c"), 3), Outcome::Refused);
        assert_eq!(s.apply(k("a"), 1), Outcome::Unchanged);
        assert_eq!(s.apply(k("a"), 5), Outcome::Changed);
        // A re-list keeps serving the old contents until it is complete, then drops what it did not list.
        s.init();
        s.init_apply(k("b"), 2);
        assert_eq!(s.items().len(), 2);
        assert_eq!(s.init_done(), Outcome::Changed);
        assert_eq!(s.items().keys().collect::<Vec<_>>(), [&k("b")]);
        assert_eq!(s.delete(&k("b")), Outcome::Changed);
        assert_eq!(s.delete(&k("b")), Outcome::Unchanged);
    }
}
