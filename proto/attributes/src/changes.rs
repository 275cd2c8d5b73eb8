//! Which attributes of a bag changed since the previous bag of the same batch.
//!
//! Reports are delta-encoded: each entry after the first carries only the attributes that differ from the bag
//! before it. A consumer that evaluates the same expressions on every bag of a batch can keep a result whose
//! attributes were not carried by the entry, since it would compute the same value again.

use crate::vocabulary::{AttrId, VOCABULARY};

/// A set of attributes: one bit per vocabulary entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrSet {
    words: Box<[u64]>,
}

impl Default for AttrSet {
    fn default() -> Self {
        Self::new()
    }
}

impl AttrSet {
    /// The empty set.
    pub fn new() -> Self {
        AttrSet {
            words: vec![0; VOCABULARY.len().div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Adds `id`.
    pub fn insert(&mut self, id: AttrId) {
        let i = id.index();
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Whether `id` is in the set.
    #[inline]
    pub fn contains(&self, id: AttrId) -> bool {
        let i = id.index();
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Whether any of `ids` is in the set.
    #[inline]
    pub fn contains_any(&self, ids: &[AttrId]) -> bool {
        ids.iter().any(|&id| self.contains(id))
    }

    /// Empties the set.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
}

/// What may differ between a bag and the previous bag handed to the same visitor.
#[derive(Clone, Copy, Debug)]
pub enum Changes<'a> {
    /// Anything: the first bag of a batch, or a bag not delta-encoded.
    All,
    /// Only these attributes were set (to a new value or the same one); every other attribute has the value
    /// it had in the previous bag.
    Only(&'a AttrSet),
}

impl Changes<'_> {
    /// Whether a value computed from `reads` on the previous bag may differ on this one.
    #[inline]
    pub fn touches(&self, reads: &[AttrId]) -> bool {
        match self {
            Changes::All => true,
            Changes::Only(set) => set.contains_any(reads),
        }
    }
}
