//! A native Report (`sextant.mixer.v1.ReportRequest`) decoded straight from its protobuf bytes, one bag at a
//! time, into one reused [`Bag`].
//!
//! What the generic protobuf decoder would build first (a hash map per value type per entry, a `String` per
//! word) is never made: words are borrowed from the request buffer, and a delta-encoded entry overwrites the
//! previous bag's values in place (a string attribute keeps its allocation). Each bag comes with the
//! [`Changes`] its entry made, so a consumer can keep what it computed from attributes that did not change.
//!
//! The result is the same as decoding with prost and then [`crate::from_compressed_entry`] (the tests compare
//! both): the same bags, the same entries rejected.

use std::sync::LazyLock;

use crate::bag::Bag;
use crate::changes::{AttrSet, Changes};
use crate::compressed::{GLOBAL_DICTIONARY, global_word_count, word_at};
use crate::error::DecodeError;
use crate::plain::{parse_ip_bytes, parse_ip_text};
use crate::value::{Span, Time, Value};
use crate::vocabulary::{AttrId, AttrType};

/// The attribute each word of the global dictionary names, if it is an attribute name.
static GLOBAL_ATTRS: LazyLock<Vec<Option<AttrId>>> =
    LazyLock::new(|| GLOBAL_DICTIONARY.iter().map(|w| crate::lookup(w)).collect());

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Reads protobuf fields from a byte slice.
struct Fields<'a> {
    buf: &'a [u8],
}

/// A field's payload.
enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, &'static str> {
        // Field keys, lengths and word indexes mostly fit one byte.
        if let Some((&b, rest)) = self.buf.split_first()
            && b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(b));
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, &'static str> {
        // Timestamps, sizes and word indexes past 63: with 10 bytes left, no check per byte.
        if let Some(b) = self.buf.first_chunk::<10>() {
            let mut v = 0u64;
            for (i, &byte) in b.iter().enumerate() {
                v |= u64::from(byte & 0x7f) << (7 * i);
                if byte < 0x80 {
                    self.buf = &self.buf[i + 1..];
                    return Ok(v);
                }
            }
            return Err("varint longer than 10 bytes");
        }
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes")
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.buf.len() < n {
            return Err("truncated field");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and payload; `None` at the end.
    #[inline(always)]
    fn next(&mut self) -> Option<Result<(u32, Payload<'a>), &'static str>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }

    #[inline(always)]
    fn field(&mut self) -> Result<(u32, Payload<'a>), &'static str> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        if number == 0 {
            return Err("field number 0");
        }
        let payload = match (key & 7) as u8 {
            VARINT => Payload::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8)?;
                let mut w = [0u8; 8];
                w.copy_from_slice(b);
                Payload::Fixed64(u64::from_le_bytes(w))
            }
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Payload::Bytes(self.take(n)?)
            }
            FIXED32 => {
                self.take(4)?;
                Payload::Fixed32
            }
            _ => return Err("unsupported wire type (groups are not used by this message)"),
        };
        Ok((number, payload))
    }
}

fn utf8(b: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(b).map_err(|_| "a string is not valid UTF-8")
}

fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A map entry's key (field 1) and value (field 2) payloads; absent ones are `None` (protobuf defaults).
#[inline(always)]
fn map_entry<'a>(b: &'a [u8]) -> Result<(Option<Payload<'a>>, Option<Payload<'a>>), &'static str> {
    let mut key = None;
    let mut value = None;
    let mut f = Fields::new(b);
    while let Some(next) = f.next() {
        match next? {
            (1, p) => key = Some(p),
            (2, p) => value = Some(p),
            _ => {}
        }
    }
    Ok((key, value))
}

fn sint32_of(p: Option<Payload<'_>>) -> Result<i32, &'static str> {
    match p {
        None => Ok(0),
        Some(Payload::Varint(v)) => Ok(zigzag32(v)),
        Some(_) => Err("wrong wire type for a sint32"),
    }
}

fn varint_of(p: Option<Payload<'_>>) -> Result<u64, &'static str> {
    match p {
        None => Ok(0),
        Some(Payload::Varint(v)) => Ok(v),
        Some(_) => Err("wrong wire type for an integer"),
    }
}

fn bytes_of<'a>(p: Option<Payload<'a>>) -> Result<&'a [u8], &'static str> {
    match p {
        None => Ok(&[]),
        Some(Payload::Bytes(b)) => Ok(b),
        Some(_) => Err("wrong wire type for a length-delimited field"),
    }
}

/// The value of a map entry whose value is a message: every occurrence of the value field merged, in order,
/// as protobuf merges a message field given more than once (what prost does).
#[inline]
fn message_values(entry: &[u8]) -> impl Iterator<Item = Result<&[u8], &'static str>> {
    let mut f = Fields::new(entry);
    std::iter::from_fn(move || {
        loop {
            match f.next()? {
                Ok((2, Payload::Bytes(b))) => return Some(Ok(b)),
                Ok((2, _)) => return Some(Err("wrong wire type for a length-delimited field")),
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    })
}

/// `google.protobuf.Timestamp` / `Duration`: (seconds, nanos), the value of the map entry `entry` (see
/// [`message_values`]).
#[inline]
fn seconds_nanos(entry: &[u8]) -> Result<(i64, i32), &'static str> {
    let (mut s, mut n) = (0i64, 0i32);
    for b in message_values(entry) {
        let mut f = Fields::new(b?);
        while let Some(next) = f.next() {
            match next? {
                (1, Payload::Varint(v)) => s = v as i64,
                (2, Payload::Varint(v)) => n = v as i32,
                (1 | 2, _) => return Err("wrong wire type for seconds or nanos"),
                _ => {}
            }
        }
    }
    Ok((s, n))
}

/// A Report's top level: its entries, not decoded yet.
#[derive(Debug)]
pub struct ReportWire<'a> {
    entries: Vec<&'a [u8]>,
    default_words: Vec<&'a str>,
    global_word_count: u32,
    delta: bool,
}

fn malformed(what: impl Into<String>, detail: &'static str) -> DecodeError {
    DecodeError::Malformed {
        what: what.into(),
        detail,
    }
}

impl<'a> ReportWire<'a> {
    /// Reads the top level of an encoded `ReportRequest` (the entries are decoded by [`ReportWire::bags`]).
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = ReportWire {
            entries: Vec::new(),
            default_words: Vec::new(),
            global_word_count: 0,
            delta: true,
        };
        let bad = |d| malformed("ReportRequest", d);
        let mut f = Fields::new(buf);
        while let Some(next) = f.next() {
            match next.map_err(bad)? {
                (1, Payload::Bytes(b)) => r.entries.push(b),
                (2, Payload::Bytes(b)) => r.default_words.push(utf8(b).map_err(bad)?),
                (3, Payload::Varint(v)) => r.global_word_count = v as u32,
                // RepeatedAttributesSemantics: DELTA_ENCODING = 0, INDEPENDENT_ENCODING = 1.
                (4, Payload::Varint(v)) => r.delta = v as i32 == 0,
                (1..=4, _) => return Err(bad("wrong wire type")),
                _ => {}
            }
        }
        Ok(r)
    }

    /// How many attribute bags (entries) the Report carries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the Report carries no bag.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether entries are delta-encoded (each overlays the previous bag).
    pub fn is_delta(&self) -> bool {
        self.delta
    }

    /// A decoder of the entries, in order.
    pub fn bags(&self) -> BagDecoder<'a, '_> {
        BagDecoder {
            report: self,
            next: 0,
            bag: Bag::new(),
            changed: AttrSet::new(),
            set_by: Vec::new(),
            set_key: Vec::new(),
            touched: Vec::new(),
            own_words: Vec::new(),
            maps: Vec::new(),
            map_words: Vec::new(),
        }
    }
}

/// Decodes a Report's entries one at a time into one bag.
pub struct BagDecoder<'a, 'r> {
    report: &'r ReportWire<'a>,
    next: usize,
    bag: Bag,
    changed: AttrSet,
    /// Per attribute index: the field (value type) that set it in the current entry, 0 when none did.
    set_by: Vec<u8>,
    /// Per attribute index: the word index (map key) that named it, where `set_by` is not 0.
    set_key: Vec<i32>,
    touched: Vec<AttrId>,
    own_words: Vec<&'a str>,
    /// The current entry's map fields (value type, payload), in order: read once by the pass that finds the
    /// entry's words, then decoded.
    maps: Vec<(u8, &'a [u8])>,
    /// A string map value's entries, words borrowed.
    map_words: Vec<(&'a str, &'a str)>,
}

/// Resolves word indexes of one entry.
struct Words<'w, 'a> {
    global: u32,
    local: &'w [&'a str],
}

impl<'a> Words<'_, 'a> {
    fn word(&self, index: i32) -> Result<&'a str, DecodeError> {
        word_at(index, self.global, self.local.len(), |i| {
            self.local.get(i).copied()
        })
    }

    fn attribute(&self, index: i32) -> Result<AttrId, DecodeError> {
        if let Ok(i) = usize::try_from(index)
            && (i as u64) < u64::from(self.global)
            && let Some(Some(id)) = GLOBAL_ATTRS.get(i)
        {
            return Ok(*id);
        }
        let name = self.word(index)?;
        crate::lookup(name).ok_or_else(|| DecodeError::UnknownAttribute {
            name: name.to_string(),
            suggestion: crate::suggest(name),
        })
    }
}

impl<'a> BagDecoder<'a, '_> {
    /// Decodes the next entry: the bag and what it changed from the previous bag (everything for the first
    /// entry and for entries that are not delta-encoded). `None` after the last entry. After an error the bag
    /// is in an unspecified state: with delta encoding the entries after a rejected one cannot be decoded.
    #[allow(clippy::should_implement_trait)] // lends the bag: not an Iterator
    pub fn next(&mut self) -> Option<Result<(&Bag, Changes<'_>), DecodeError>> {
        let i = self.next;
        let entry = *self.report.entries.get(i)?;
        self.next += 1;
        let overlay = self.report.delta && i > 0;
        if !overlay {
            self.bag.clear();
        }
        if let Err(e) = self.decode(i, entry, overlay) {
            return Some(Err(e));
        }
        let changes = if overlay {
            Changes::Only(&self.changed)
        } else {
            Changes::All
        };
        Some(Ok((&self.bag, changes)))
    }

    fn decode(&mut self, i: usize, entry: &'a [u8], overlay: bool) -> Result<(), DecodeError> {
        for id in self.touched.drain(..) {
            self.set_by[id.index()] = 0;
        }
        self.changed.clear();
        if self.set_by.is_empty() {
            self.set_by = vec![0; crate::VOCABULARY.len()];
            self.set_key = vec![0; crate::VOCABULARY.len()];
        }
        let what = || format!("ReportRequest.attributes[{i}]");
        // Words and the dictionary size first: protobuf allows them after the maps, so the maps are only
        // collected by this pass and decoded once every word is known.
        self.own_words.clear();
        self.maps.clear();
        let mut global = 0u32;
        let mut f = Fields::new(entry);
        while let Some(next) = f.next() {
            match next.map_err(|d| malformed(what(), d))? {
                (1, Payload::Varint(v)) => global = v as u32,
                (2, Payload::Bytes(b)) => self
                    .own_words
                    .push(utf8(b).map_err(|d| malformed(what(), d))?),
                (1 | 2, _) => return Err(malformed(what(), "wrong wire type")),
                (field @ 3..=10, Payload::Bytes(b)) => self.maps.push((field as u8, b)),
                (3..=10, _) => self.maps.push((0, &[])),
                _ => {}
            }
        }
        let global = if global == 0 {
            self.report.global_word_count
        } else {
            global
        };
        let hub = global_word_count();
        if global > hub {
            return Err(DecodeError::DictionaryMismatch {
                client: global,
                hub,
            });
        }
        let own = std::mem::take(&mut self.own_words);
        let local: &[&'a str] = if own.is_empty() {
            &self.report.default_words
        } else {
            &own
        };
        let words = Words { global, local };
        let r = self.values(&words, overlay, &what);
        self.own_words = own;
        r
    }

    fn values(
        &mut self,
        words: &Words<'_, 'a>,
        overlay: bool,
        what: &dyn Fn() -> String,
    ) -> Result<(), DecodeError> {
        let bad = |d| malformed(what(), d);
        let maps = std::mem::take(&mut self.maps);
        let r = maps
            .iter()
            .try_for_each(|&(field, b)| self.value(field, b, words, overlay, &bad));
        self.maps = maps;
        r
    }

    /// Decodes one map entry of the value type `field` (0: a map field of another wire type).
    #[inline(always)]
    fn value(
        &mut self,
        field: u8,
        b: &'a [u8],
        words: &Words<'_, 'a>,
        overlay: bool,
        bad: &dyn Fn(&'static str) -> DecodeError,
    ) -> Result<(), DecodeError> {
        if field == 0 {
            return Err(bad("wrong wire type for a map entry"));
        }
        let (k, v) = map_entry(b).map_err(bad)?;
        let key = sint32_of(k).map_err(bad)?;
        let id = words.attribute(key)?;
        // Which field a value of this attribute came from decides between two of one entry: the same
        // field again replaces it (a repeated map key), another one is a duplicate unless the entry
        // overlays the previous bag, where the later field wins as in the field-by-field decoding.
        let prior = self.set_by[id.index()];
        // The same field naming it by another word (two keys of one map, say a global and a message word
        // for one name) is a duplicate, as in the decoding of the whole message; in an overlay too, where
        // that decoding would keep either value, by the order of a hash map.
        if prior == field && self.set_key[id.index()] != key {
            return Err(DecodeError::Duplicate { name: id.name() });
        }
        if prior != 0 && prior != field {
            if !overlay {
                return Err(DecodeError::Duplicate { name: id.name() });
            }
            if prior > field {
                return Ok(());
            }
        }
        match field {
            3 => {
                let text = words.word(sint32_of(v).map_err(bad)?)?;
                if id.ty() == AttrType::IpAddress {
                    self.bag.set(id, Value::Ip(parse_ip_text(id, text)?))?;
                } else {
                    self.bag.set_str(id, text)?;
                }
            }
            4 => {
                let n = varint_of(v).map_err(bad)? as i64;
                self.bag.set(id, Value::Int64(n))?;
            }
            5 => {
                let d = match v {
                    None => 0.0,
                    Some(Payload::Fixed64(bits)) => f64::from_bits(bits),
                    Some(_) => return Err(bad("wrong wire type for a double")),
                };
                self.bag.set(id, Value::Double(d))?;
            }
            6 => {
                let b = varint_of(v).map_err(bad)? != 0;
                self.bag.set(id, Value::Bool(b))?;
            }
            7 => {
                let (seconds, nanos) = seconds_nanos(b).map_err(bad)?;
                if !(0..1_000_000_000).contains(&nanos) {
                    return Err(DecodeError::BadNanos {
                        name: id.name(),
                        nanos,
                    });
                }
                self.bag
                    .set(id, Value::Timestamp(Time { seconds, nanos }))?;
            }
            8 => {
                let (seconds, nanos) = seconds_nanos(b).map_err(bad)?;
                if nanos.unsigned_abs() >= 1_000_000_000
                    || (seconds != 0 && nanos != 0 && seconds.signum() != i64::from(nanos.signum()))
                {
                    return Err(DecodeError::BadNanos {
                        name: id.name(),
                        nanos,
                    });
                }
                self.bag.set(id, Value::Duration(Span { seconds, nanos }))?;
            }
            9 => {
                let b = bytes_of(v).map_err(bad)?;
                let value = if id.ty() == AttrType::IpAddress {
                    Value::Ip(parse_ip_bytes(id, b)?)
                } else {
                    Value::Bytes(b.to_vec())
                };
                self.bag.set(id, value)?;
            }
            _ => {
                let mut entries = std::mem::take(&mut self.map_words);
                entries.clear();
                // A map value given twice is both maps' entries, the later winning a key.
                for value in message_values(b) {
                    let mut m = Fields::new(value.map_err(bad)?);
                    while let Some(next) = m.next() {
                        match next.map_err(bad)? {
                            (1, Payload::Bytes(e)) => {
                                let (mk, mv) = map_entry(e).map_err(bad)?;
                                let mk = words.word(sint32_of(mk).map_err(bad)?)?;
                                let mv = words.word(sint32_of(mv).map_err(bad)?)?;
                                entries.push((mk, mv));
                            }
                            (1, _) => return Err(bad("wrong wire type for a map entry")),
                            _ => {}
                        }
                    }
                }
                let set = self.bag.set_str_map(id, &entries);
                self.map_words = entries;
                set?;
            }
        }
        if prior == 0 {
            self.touched.push(id);
        }
        self.set_by[id.index()] = field;
        self.set_key[id.index()] = key;
        self.changed.insert(id);
        Ok(())
    }
}
