//! The compressed wire form (`sextant.mixer.v1.CompressedAttributes`), Mixer's dictionary encoding.
//!
//! Names, string values and map keys/values are word indexes: `i >= 0` is word `i` of the global dictionary,
//! `i < 0` is per-message word `-i - 1`. The global dictionary is [`COMMON_WORDS`] (frozen: never edit) followed
//! by the vocabulary's names in order (append-only), so a client built against an older dictionary still
//! decodes correctly on a newer hub.

use std::collections::HashMap;
use std::sync::LazyLock;

use sextant_proto::mixer::{CompressedAttributes, CompressedStringMap};

use crate::bag::Bag;
use crate::error::DecodeError;
use crate::plain::{
    duration_from_pb, duration_to_pb, ip_bytes, parse_ip_bytes, timestamp_from_pb, timestamp_to_pb,
};
use crate::value::Value;
use crate::vocabulary::{AttrId, AttrType, VOCABULARY};

/// Common values and header names, the frozen head of the global dictionary. Never edit: indexes are wire format.
pub const COMMON_WORDS: &[&str] = &[
    "",
    "true",
    "false",
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "HEAD",
    "OPTIONS",
    "CONNECT",
    "http",
    "https",
    "http2",
    "grpc",
    "tcp",
    "inbound",
    "outbound",
    "open",
    "continue",
    "close",
    "/",
    "200",
    "201",
    "204",
    "301",
    "302",
    "304",
    "400",
    "401",
    "403",
    "404",
    "429",
    "500",
    "502",
    "503",
    "504",
    "0",
    ":authority",
    ":method",
    ":path",
    ":scheme",
    ":status",
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "origin",
    "referer",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "traceparent",
    "tracestate",
    "x-envoy-attempt-count",
    "x-envoy-internal",
    "te",
    "trailers",
    "application/json",
    "application/grpc",
    "text/plain",
    "text/html",
    "gzip",
    "default",
    "kube-system",
    "app",
    "version",
    "v1",
    "v2",
    "v3",
];

/// The global dictionary: [`COMMON_WORDS`] then every vocabulary name.
pub static GLOBAL_DICTIONARY: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    COMMON_WORDS
        .iter()
        .copied()
        .chain(VOCABULARY.iter().map(|d| d.name))
        .collect()
});

static GLOBAL_INDEX: LazyLock<HashMap<&'static str, i32>> = LazyLock::new(|| {
    GLOBAL_DICTIONARY
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, i32::try_from(i).unwrap_or(i32::MAX)))
        .collect()
});

/// How many words the hub's global dictionary has (what a client puts in `global_word_count`).
pub fn global_word_count() -> u32 {
    u32::try_from(GLOBAL_DICTIONARY.len()).unwrap_or(u32::MAX)
}

/// The word `index` names: for 0, 1, … the global dictionary's (as far as the client knows it: `global`
/// words), for -1, -2, … the message's own (`local(0)`, `local(1)`, …, of which there are `local_len`).
#[inline]
pub(crate) fn word_at<'a>(
    index: i32,
    global: u32,
    local_len: usize,
    local: impl FnOnce(usize) -> Option<&'a str>,
) -> Result<&'a str, DecodeError> {
    let found = if index >= 0 {
        u32::try_from(index)
            .ok()
            .filter(|i| *i < global)
            .map(|i| GLOBAL_DICTIONARY[i as usize])
    } else {
        usize::try_from(-(i64::from(index)) - 1)
            .ok()
            .and_then(local)
    };
    found.ok_or(DecodeError::BadIndex {
        index,
        global,
        local: local_len,
    })
}

/// Resolves word indexes against the global dictionary (as far as the client knows it) and per-message words.
struct Words<'a> {
    global: u32,
    local: &'a [String],
}

impl<'a> Words<'a> {
    fn new(client_global: u32, local: &'a [String]) -> Result<Self, DecodeError> {
        let hub = global_word_count();
        if client_global > hub {
            return Err(DecodeError::DictionaryMismatch {
                client: client_global,
                hub,
            });
        }
        Ok(Words {
            global: client_global,
            local,
        })
    }

    fn word(&self, index: i32) -> Result<&'a str, DecodeError> {
        word_at(index, self.global, self.local.len(), |i| {
            self.local.get(i).map(String::as_str)
        })
    }

    fn attribute(&self, index: i32) -> Result<AttrId, DecodeError> {
        let name = self.word(index)?;
        crate::lookup(name).ok_or_else(|| DecodeError::UnknownAttribute {
            name: name.to_string(),
            suggestion: crate::suggest(name),
        })
    }
}

/// Decodes the compressed form into a bag.
pub fn from_compressed(mut c: CompressedAttributes) -> Result<Bag, DecodeError> {
    let own = std::mem::take(&mut c.words);
    let words = Words::new(c.global_word_count, &own)?;
    decode_into(c, &words, Bag::new(), false)
}

/// Decodes one entry of a Report batch. An entry without words of its own uses the batch's `default_words`,
/// and one whose `global_word_count` is 0 uses the batch's. With `base` (delta encoding: the previous entry's
/// bag), the entry's attributes are laid over it.
pub fn from_compressed_entry(
    mut c: CompressedAttributes,
    default_words: &[String],
    batch_global_word_count: u32,
    base: Option<Bag>,
) -> Result<Bag, DecodeError> {
    let global = if c.global_word_count == 0 {
        batch_global_word_count
    } else {
        c.global_word_count
    };
    let own = std::mem::take(&mut c.words);
    let local = if own.is_empty() { default_words } else { &own };
    let words = Words::new(global, local)?;
    let overlay = base.is_some();
    decode_into(c, &words, base.unwrap_or_default(), overlay)
}

fn decode_into(
    c: CompressedAttributes,
    words: &Words<'_>,
    mut bag: Bag,
    overlay: bool,
) -> Result<Bag, DecodeError> {
    let put = |bag: &mut Bag, id: AttrId, v: Value| -> Result<(), DecodeError> {
        match bag.set(id, v)? {
            Some(_) if !overlay => Err(DecodeError::Duplicate { name: id.name() }),
            _ => Ok(()),
        }
    };
    for (k, v) in c.strings {
        let id = words.attribute(k)?;
        let text = words.word(v)?;
        let value = if id.ty() == AttrType::IpAddress {
            Value::Ip(crate::plain::parse_ip_text(id, text)?)
        } else {
            Value::String(text.to_string())
        };
        put(&mut bag, id, value)?;
    }
    for (k, v) in c.int64s {
        put(&mut bag, words.attribute(k)?, Value::Int64(v))?;
    }
    for (k, v) in c.doubles {
        put(&mut bag, words.attribute(k)?, Value::Double(v))?;
    }
    for (k, v) in c.bools {
        put(&mut bag, words.attribute(k)?, Value::Bool(v))?;
    }
    for (k, v) in c.timestamps {
        let id = words.attribute(k)?;
        put(&mut bag, id, Value::Timestamp(timestamp_from_pb(id, v)?))?;
    }
    for (k, v) in c.durations {
        let id = words.attribute(k)?;
        put(&mut bag, id, Value::Duration(duration_from_pb(id, v)?))?;
    }
    for (k, v) in c.bytes {
        let id = words.attribute(k)?;
        let value = if id.ty() == AttrType::IpAddress {
            Value::Ip(parse_ip_bytes(id, &v)?)
        } else {
            Value::Bytes(v)
        };
        put(&mut bag, id, value)?;
    }
    for (k, m) in c.string_maps {
        let id = words.attribute(k)?;
        let entries = m
            .entries
            .into_iter()
            .map(|(mk, mv)| Ok((words.word(mk)?.to_string(), words.word(mv)?.to_string())))
            .collect::<Result<HashMap<_, _>, DecodeError>>()?;
        put(&mut bag, id, Value::StringMap(entries))?;
    }
    Ok(bag)
}

/// Builds the per-message word list while encoding.
#[derive(Default)]
pub(crate) struct Encoder {
    words: Vec<String>,
    local: HashMap<String, i32>,
}

impl Encoder {
    /// The words this encoder added to the global dictionary's, in index order (`-1` first).
    pub(crate) fn into_words(self) -> Vec<String> {
        self.words
    }

    fn index(&mut self, word: &str) -> i32 {
        if let Some(i) = GLOBAL_INDEX.get(word) {
            return *i;
        }
        if let Some(i) = self.local.get(word) {
            return *i;
        }
        self.words.push(word.to_string());
        let i = -i32::try_from(self.words.len()).unwrap_or(i32::MAX);
        self.local.insert(word.to_string(), i);
        i
    }
}

/// Encodes a bag in the compressed form against this build's global dictionary.
pub fn to_compressed(bag: &Bag) -> CompressedAttributes {
    let mut enc = Encoder::default();
    let mut c = encode_with(bag.iter(), &mut enc);
    c.global_word_count = global_word_count();
    c.words = enc.words;
    c
}

/// Encodes `attributes` with `enc`'s words (which it extends), leaving `words` and `global_word_count` to
/// the caller.
pub(crate) fn encode_with<'b>(
    attributes: impl Iterator<Item = (AttrId, &'b Value)>,
    enc: &mut Encoder,
) -> CompressedAttributes {
    let mut c = CompressedAttributes::default();
    for (id, v) in attributes {
        let k = enc.index(id.name());
        match v {
            Value::String(s) => {
                let i = enc.index(s);
                c.strings.insert(k, i);
            }
            Value::Int64(i) => {
                c.int64s.insert(k, *i);
            }
            Value::Double(d) => {
                c.doubles.insert(k, *d);
            }
            Value::Bool(b) => {
                c.bools.insert(k, *b);
            }
            Value::Bytes(b) => {
                c.bytes.insert(k, b.clone());
            }
            Value::Ip(ip) => {
                c.bytes.insert(k, ip_bytes(*ip));
            }
            Value::Timestamp(t) => {
                c.timestamps.insert(k, timestamp_to_pb(*t));
            }
            Value::Duration(d) => {
                c.durations.insert(k, duration_to_pb(*d));
            }
            Value::StringMap(m) => {
                let entries = m
                    .iter()
                    .map(|(mk, mv)| (enc.index(mk), enc.index(mv)))
                    .collect();
                c.string_maps.insert(k, CompressedStringMap { entries });
            }
        }
    }
    c
}
