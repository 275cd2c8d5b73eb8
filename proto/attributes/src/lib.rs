//! The attribute vocabulary and attribute bags.
//!
//! Everything the hub decides is decided on an attribute bag: the typed facts a proxy knows about one request
//! (`request.path`, `source.principal`, …). This crate holds the one definition of those names and types
//! ([`VOCABULARY`]), the in-memory [`Bag`], and the two wire forms of `sextant.mixer.v1` that carry it: the
//! plain map ([`from_plain`]) and Mixer's dictionary-compressed form ([`from_compressed`]). The Envoy front
//! doors, the policy engine and (later) the proxy all build and read the same [`Bag`]; a neutral crate, so
//! the hub and the proxy share it without either importing the other.

mod bag;
mod batch;
mod changes;
mod compressed;
mod docs;
mod error;
mod plain;
mod report;
mod value;
mod vocabulary;

pub use bag::Bag;
pub use batch::ReportBatch;
pub use changes::{AttrSet, Changes};
pub use compressed::{
    COMMON_WORDS, GLOBAL_DICTIONARY, from_compressed, from_compressed_entry, global_word_count,
    to_compressed,
};
pub use docs::attributes_markdown;
pub use error::DecodeError;
pub use plain::{from_plain, to_plain};
pub use report::{BagDecoder, ReportWire};
pub use value::{Span, Time, Value};
pub use vocabulary::{
    AttrId, AttrType, AttributeDef, DESTINATION, PeerAttrs, SOURCE, VOCABULARY, id_of, lookup,
    names_under, suggest,
};

#[cfg(test)]
mod tests;
