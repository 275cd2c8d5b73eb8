//! A Report batch built the way a proxy sends it: every entry delta-encoded against the one before it
//! (only the attributes whose value changed), all entries sharing one word list (`default_words`).
//!
//! Delta encoding cannot say that an attribute went away, so a bag lacking an attribute its predecessor
//! had is refused ([`ReportBatch::push`] returns `false`): the caller sends the batch and starts a new one
//! with that bag. Requests of one listener mostly carry the same attributes, so batches stay long.

use crate::bag::Bag;
use crate::compressed::{Encoder, encode_with, global_word_count};
use sextant_proto::mixer::ReportRequest;
use sextant_proto::mixer::report_request::RepeatedAttributesSemantics;

/// A Report being built from bags that outlive it (`'a`): the previous entry is compared by reference,
/// never copied.
#[derive(Default)]
pub struct ReportBatch<'a> {
    words: Encoder,
    entries: Vec<sextant_proto::mixer::CompressedAttributes>,
    previous: Option<&'a Bag>,
}

impl<'a> ReportBatch<'a> {
    /// An empty batch.
    pub fn new() -> ReportBatch<'a> {
        ReportBatch::default()
    }

    /// How many bags it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `bag` as the next entry: what changed since the previous entry (the first: everything).
    /// Returns `false`, adding nothing, when `bag` lacks an attribute the previous entry had.
    pub fn push(&mut self, bag: &'a Bag) -> bool {
        let entry = match self.previous {
            Some(previous) if previous.iter().any(|(id, _)| bag.get(id).is_none()) => return false,
            Some(previous) => {
                let changed = bag.iter().filter(|(id, v)| previous.get(*id) != Some(*v));
                encode_with(changed, &mut self.words)
            }
            None => encode_with(bag.iter(), &mut self.words),
        };
        self.entries.push(entry);
        self.previous = Some(bag);
        true
    }

    /// The Report request holding its entries.
    pub fn finish(self) -> ReportRequest {
        ReportRequest {
            attributes: self.entries,
            default_words: self.words.into_words(),
            global_word_count: global_word_count(),
            repeated_attributes_semantics: RepeatedAttributesSemantics::DeltaEncoding as i32,
        }
    }
}
