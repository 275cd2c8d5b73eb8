//! The hub's native Check and Report decoders and the compressed attribute form (`sextant-attributes`).
//!
//! prost is the oracle: a bag the hub's decoders accept must hold exactly what the message says (checked
//! against the message prost decoded, resolving dictionary words independently), and the hub's own Report
//! decoder ([`ReportWire`]) must agree with prost followed by [`from_compressed_entry`] entry by entry.
//! Every accepted bag must also survive the encoders: plain, compressed, and a Report built by
//! [`ReportBatch`], decoded again.
//!
//! Where the hub's decoders reject what prost accepts, the restriction is legitimate:
//! - names that are not in the vocabulary, values of another type than the attribute's, IP addresses that
//!   are neither 4 or 16 bytes nor IP text, timestamp and duration nanos out of range, word indexes past the
//!   dictionaries, a client dictionary larger than the hub's, an attribute given twice (under two value
//!   types), both forms in one Check: semantic checks, each a `DecodeError` variant;
//! - [`ReportWire`] follows the protobuf encoding where prost 0.14 is lenient: a map field whose wire type
//!   is not length-delimited is refused (prost's generated map merge does not check the wire type, and
//!   reads the bytes as if it were), and so are the group wire types (3 and 4) even in fields it does not
//!   know, which prost skips (`sextant.mixer.v1` has no groups, proto3 cannot declare them, and no encoder
//!   of this API writes them);
//! - a map key repeated in one map whose earlier value is invalid: protobuf keeps the last value, the hub
//!   checks every value sent;
//! - an attribute named by two words of one map (say a global and a message word for one name) in a delta
//!   entry: a duplicate, as in any other entry, where prost's path would keep either value, by the
//!   iteration order of a hash map;
//! - with delta encoding, entries after a rejected one are undefined (the hub rejects them all).

mod leniency;

use std::collections::HashMap;
use std::net::IpAddr;

use prost::Message;
use sextant_attributes::{
    AttrId, AttrType, Bag, Changes, GLOBAL_DICTIONARY, ReportBatch, ReportWire, Span, Time,
    VOCABULARY, Value, from_compressed, from_compressed_entry, from_plain, lookup, to_compressed,
    to_plain,
};
use sextant_proto::mixer::attribute_value::Value as Pv;
use sextant_proto::mixer::{
    Attributes, CheckRequest, CompressedAttributes, ReportRequest,
    report_request::RepeatedAttributesSemantics,
};

/// The native Check decoder: prost's `CheckRequest`, then the plain or the compressed form into a bag, as
/// the hub's Check handler chooses (`hub-server`'s `native::bag_of`: both forms is an error, neither is an
/// empty bag). An accepted bag must hold what the message says and survive the encoders.
pub fn native_check(data: &[u8]) {
    let Ok(req) = CheckRequest::decode(data) else {
        return;
    };
    match (req.attributes, req.compressed) {
        (Some(plain), None) => {
            if let Ok(bag) = from_plain(plain.clone()) {
                plain_agrees(&plain, &bag);
                round_trips(&bag);
            }
        }
        (None, Some(c)) => {
            if let Ok(bag) = from_compressed(c.clone()) {
                compressed_agrees(&c, &c.words, c.global_word_count, &bag);
                round_trips(&bag);
            }
        }
        // Both forms: refused whole by the hub; neither: an empty bag.
        _ => {}
    }
}

/// The hub's own Report decoder ([`ReportWire`], one bag at a time) against prost: where prost decodes the
/// `ReportRequest`, every entry the hub accepts must be the bag prost and [`from_compressed_entry`] make
/// of it (and every entry the hub rejects rejected there too, unless prost reads the bytes otherwise than
/// protobuf's encoding says: see `attributes/leniency.rs`), and what [`Changes`] says did not change must not
/// have. prost's own encoding of what it read must be read by the hub exactly as prost read it. The
/// accepted bags, sent again through [`ReportBatch`], must decode to themselves.
pub fn native_report(data: &[u8]) {
    let oracle = ReportRequest::decode(data).ok();
    let lenient = leniency::prost_is_lenient(data);
    if let Some(accepted) = against_prost(data, oracle.as_ref(), lenient) {
        resent(&accepted);
    }
    if let Some(req) = &oracle {
        let canonical = req.encode_to_vec();
        against_prost(&canonical, Some(req), false).expect("ReportWire parses prost's encoding");
    }
}

/// Decodes `data` with [`ReportWire`], comparing each entry with prost's reading (`oracle`) when there is
/// one; the bags accepted before the first rejected delta-encoded entry, or `None` when the top level is
/// refused. With `lenient` (prost reads `data` otherwise than the encoding says), an entry the hub refuses
/// may be one prost accepts.
fn against_prost(data: &[u8], oracle: Option<&ReportRequest>, lenient: bool) -> Option<Vec<Bag>> {
    let wire = ReportWire::parse(data).ok()?;
    if let Some(req) = oracle {
        assert_eq!(wire.len(), req.attributes.len(), "entry count");
        let delta =
            req.repeated_attributes_semantics == RepeatedAttributesSemantics::DeltaEncoding as i32;
        assert_eq!(wire.is_delta(), delta, "delta encoding");
    }
    let mut accepted: Vec<Bag> = Vec::new();
    let mut expected: Option<Bag> = None;
    let mut previous: Option<Bag> = None;
    let mut bags = wire.bags();
    let mut i = 0;
    while let Some(next) = bags.next() {
        let theirs = oracle.map(|req| {
            let base = (wire.is_delta() && i > 0).then(|| expected.take().unwrap_or_default());
            from_compressed_entry(
                req.attributes[i].clone(),
                &req.default_words,
                req.global_word_count,
                base,
            )
        });
        match next {
            Ok((bag, changes)) => {
                match &theirs {
                    Some(Ok(b)) => assert_same(bag, b, &format!("entry {i}: ReportWire vs prost")),
                    Some(Err(e)) => {
                        panic!("entry {i}: ReportWire accepted {bag:?}, prost's path rejected: {e}")
                    }
                    None => {}
                }
                if let (Changes::Only(set), Some(prev)) = (changes, &previous) {
                    for def in 0..VOCABULARY.len() {
                        let id = AttrId(def as u16);
                        if !set.contains(id) {
                            assert!(
                                same_opt(bag.get(id), prev.get(id)),
                                "entry {i}: {} changed but Changes does not say so",
                                id.name()
                            );
                        }
                    }
                }
                previous = Some(bag.clone());
                accepted.push(bag.clone());
            }
            Err(ours) => {
                if let (Some(Ok(b)), Some(req)) = (&theirs, oracle)
                    && !lenient
                    && !leniency::refusal_is_legitimate(data, req, i, &ours)
                {
                    panic!("entry {i}: ReportWire rejected ({ours}), prost's path accepted {b:?}");
                }
                if wire.is_delta() {
                    // Every later entry overlays this one: undefined, and rejected by the hub.
                    break;
                }
                previous = None;
            }
        }
        expected = theirs.and_then(Result::ok);
        i += 1;
    }
    Some(accepted)
}

/// The compressed form: decoded (prost's `CompressedAttributes`, then [`from_compressed`]) it must hold
/// what the message says, survive the encoders, and be unchanged when laid over itself as a delta entry;
/// and a bag made of the input bytes must survive [`to_compressed`] and [`to_plain`].
pub fn compressed(data: &[u8]) {
    if let Ok(c) = CompressedAttributes::decode(data)
        && let Ok(bag) = from_compressed(c.clone())
    {
        compressed_agrees(&c, &c.words, c.global_word_count, &bag);
        round_trips(&bag);
        let again = from_compressed_entry(c, &[], 0, Some(bag.clone()))
            .expect("an entry laid over the bag it decoded to");
        assert_same(&bag, &again, "laid over itself");
    }
    round_trips(&bag_of(data));
}

/// Every accepted bag, in order, encoded again as Reports by [`ReportBatch`] (a new batch where it refuses
/// a bag) and decoded by [`ReportWire`], comes back unchanged.
fn resent(bags: &[Bag]) {
    let mut batches = vec![ReportBatch::new()];
    for bag in bags {
        let batch = batches.last_mut().expect("one batch at least");
        if !batch.push(bag) {
            let mut fresh = ReportBatch::new();
            assert!(fresh.push(bag), "a new batch takes any bag");
            batches.push(fresh);
        }
    }
    let mut bags = bags.iter();
    for batch in batches {
        let bytes = batch.finish().encode_to_vec();
        let wire = ReportWire::parse(&bytes).expect("ReportBatch's output parses");
        let mut decoder = wire.bags();
        while let Some(next) = decoder.next() {
            let (got, _) = next.expect("ReportBatch's entries decode");
            let want = bags.next().expect("no more entries than bags");
            assert_same(want, got, "ReportBatch round trip");
        }
    }
    assert!(bags.next().is_none(), "every bag was sent");
}

/// `bag` through the plain form, the compressed form (on the wire) and a one-entry Report.
fn round_trips(bag: &Bag) {
    let plain = from_plain(to_plain(bag)).expect("to_plain's output decodes");
    assert_same(bag, &plain, "plain round trip");
    let bytes = to_compressed(bag).encode_to_vec();
    let c = CompressedAttributes::decode(bytes.as_slice()).expect("prost reads what it wrote");
    let back = from_compressed(c).expect("to_compressed's output decodes");
    assert_same(bag, &back, "compressed round trip");
    resent(std::slice::from_ref(bag));
}

/// Every attribute of the plain form is in `bag` with the value it says, and nothing else is.
fn plain_agrees(plain: &Attributes, bag: &Bag) {
    assert_eq!(bag.len(), plain.values.len(), "attribute count");
    for (name, value) in &plain.values {
        let id = lookup(name).expect("an accepted name is in the vocabulary");
        let got = bag.get(id).expect("every attribute sent is in the bag");
        let value = value.value.as_ref().expect("an accepted value is set");
        let want = match value {
            Pv::StringValue(s) if id.ty() == AttrType::IpAddress => ip_text(s),
            Pv::BytesValue(b) if id.ty() == AttrType::IpAddress => ip_bytes(b),
            Pv::StringValue(s) => Some(Value::String(s.clone())),
            Pv::Int64Value(i) => Some(Value::Int64(*i)),
            Pv::DoubleValue(d) => Some(Value::Double(*d)),
            Pv::BoolValue(b) => Some(Value::Bool(*b)),
            Pv::BytesValue(b) => Some(Value::Bytes(b.clone())),
            Pv::TimestampValue(t) => time(t.seconds, t.nanos),
            Pv::DurationValue(d) => span(d.seconds, d.nanos),
            Pv::StringMapValue(m) => {
                map_agrees(
                    id,
                    m.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    got,
                );
                continue;
            }
        };
        agree(id, want, got);
    }
}

/// Every attribute of the compressed form (words resolved here, independently of the decoder) is in `bag`
/// with the value it says, and nothing else is.
fn compressed_agrees(c: &CompressedAttributes, local: &[String], global: u32, bag: &Bag) {
    let word = |i: i32| -> &str {
        let found = if i >= 0 {
            u32::try_from(i)
                .ok()
                .filter(|i| *i < global)
                .and_then(|i| GLOBAL_DICTIONARY.get(i as usize).copied())
        } else {
            usize::try_from(-i64::from(i) - 1)
                .ok()
                .and_then(|i| local.get(i))
                .map(String::as_str)
        };
        found.expect("an accepted word index names a word")
    };
    let attr = |k: i32| lookup(word(k)).expect("an accepted name is in the vocabulary");
    let count = c.strings.len()
        + c.int64s.len()
        + c.doubles.len()
        + c.bools.len()
        + c.timestamps.len()
        + c.durations.len()
        + c.bytes.len()
        + c.string_maps.len();
    assert_eq!(bag.len(), count, "attribute count");
    let get = |id: AttrId| bag.get(id).expect("every attribute sent is in the bag");
    for (k, v) in &c.strings {
        let id = attr(*k);
        let want = if id.ty() == AttrType::IpAddress {
            ip_text(word(*v))
        } else {
            Some(Value::String(word(*v).to_string()))
        };
        agree(id, want, get(id));
    }
    for (k, v) in &c.int64s {
        agree(attr(*k), Some(Value::Int64(*v)), get(attr(*k)));
    }
    for (k, v) in &c.doubles {
        agree(attr(*k), Some(Value::Double(*v)), get(attr(*k)));
    }
    for (k, v) in &c.bools {
        agree(attr(*k), Some(Value::Bool(*v)), get(attr(*k)));
    }
    for (k, t) in &c.timestamps {
        agree(attr(*k), time(t.seconds, t.nanos), get(attr(*k)));
    }
    for (k, d) in &c.durations {
        agree(attr(*k), span(d.seconds, d.nanos), get(attr(*k)));
    }
    for (k, b) in &c.bytes {
        let id = attr(*k);
        let want = if id.ty() == AttrType::IpAddress {
            ip_bytes(b)
        } else {
            Some(Value::Bytes(b.clone()))
        };
        agree(id, want, get(id));
    }
    for (k, m) in &c.string_maps {
        let id = attr(*k);
        let entries = m.entries.iter().map(|(mk, mv)| (word(*mk), word(*mv)));
        map_agrees(id, entries, get(id));
    }
}

/// `got` is `want`, a value of `id`'s type.
fn agree(id: AttrId, want: Option<Value>, got: &Value) {
    let want = want.unwrap_or_else(|| panic!("{}: accepted {got:?}, an invalid value", id.name()));
    assert_eq!(
        want.ty(),
        id.ty(),
        "{}: accepted a value of another type",
        id.name()
    );
    assert!(
        same(&want, got),
        "{}: sent {want:?}, decoded {got:?}",
        id.name()
    );
}

/// A string map as decoded: the entries sent, header names lower-cased. Entries whose keys end up equal
/// (two words for one text, two spellings of one header) leave one of their values.
fn map_agrees<'a>(id: AttrId, entries: impl Iterator<Item = (&'a str, &'a str)>, got: &Value) {
    assert_eq!(id.ty(), AttrType::StringMap, "{}: not a map", id.name());
    let Value::StringMap(got) = got else {
        panic!("{}: decoded {got:?}, not a map", id.name());
    };
    let headers = id.name().ends_with(".headers");
    let mut want: HashMap<String, Vec<&str>> = HashMap::new();
    for (k, v) in entries {
        let k = if headers {
            k.to_ascii_lowercase()
        } else {
            k.to_string()
        };
        want.entry(k).or_default().push(v);
    }
    assert_eq!(got.len(), want.len(), "{}: map size", id.name());
    for (k, v) in got {
        let candidates = want
            .get(k)
            .unwrap_or_else(|| panic!("{}: key {k:?} not sent", id.name()));
        assert!(
            candidates.contains(&v.as_str()),
            "{}[{k:?}]: decoded {v:?}, sent {candidates:?}",
            id.name()
        );
    }
}

fn ip_text(s: &str) -> Option<Value> {
    s.parse::<IpAddr>().ok().map(Value::Ip)
}

fn ip_bytes(b: &[u8]) -> Option<Value> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        Some(Value::Ip(IpAddr::from(v4)))
    } else {
        <[u8; 16]>::try_from(b)
            .ok()
            .map(|v6| Value::Ip(IpAddr::from(v6)))
    }
}

fn time(seconds: i64, nanos: i32) -> Option<Value> {
    (0..1_000_000_000)
        .contains(&nanos)
        .then_some(Value::Timestamp(Time { seconds, nanos }))
}

fn span(seconds: i64, nanos: i32) -> Option<Value> {
    let signs_agree = seconds == 0 || nanos == 0 || (seconds < 0) == (nanos < 0);
    (nanos.unsigned_abs() < 1_000_000_000 && signs_agree)
        .then_some(Value::Duration(Span { seconds, nanos }))
}

/// Equal values, doubles compared by their bits (a NaN sent is a NaN received).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

fn same_opt(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Asserts that two bags hold the same attributes with the same values.
fn assert_same(want: &Bag, got: &Bag, what: &str) {
    let equal = want.len() == got.len()
        && want
            .iter()
            .zip(got.iter())
            .all(|((a, x), (b, y))| a == b && same(x, y));
    assert!(equal, "{what}: expected {want:?}, got {got:?}");
}

/// A bag made of arbitrary bytes: two bytes choose an attribute, the next ones its value (always a valid
/// one: timestamp and duration nanos in range, as every decoder requires).
fn bag_of(data: &[u8]) -> Bag {
    let mut r = Bytes(data);
    let mut bag = Bag::new();
    while r.0.len() >= 2 {
        let id = AttrId((usize::from(r.u16()) % VOCABULARY.len()) as u16);
        let value = match id.ty() {
            AttrType::String => Value::String(r.text()),
            AttrType::Int64 => Value::Int64(r.u64() as i64),
            AttrType::Double => Value::Double(f64::from_bits(r.u64())),
            AttrType::Bool => Value::Bool(r.u8() & 1 == 1),
            AttrType::Bytes => Value::Bytes(r.bytes().to_vec()),
            AttrType::Timestamp => Value::Timestamp(Time {
                seconds: r.u64() as i64,
                nanos: (r.u32() % 1_000_000_000) as i32,
            }),
            AttrType::Duration => {
                let seconds = r.u64() as i64;
                let raw = r.u32();
                let nanos = (raw % 1_000_000_000) as i32;
                let negative = seconds < 0 || (seconds == 0 && raw & 0x8000_0000 != 0);
                Value::Duration(Span {
                    seconds,
                    nanos: if negative { -nanos } else { nanos },
                })
            }
            AttrType::StringMap => {
                let n = r.u8() % 8;
                Value::StringMap((0..n).map(|_| (r.text(), r.text())).collect())
            }
            AttrType::IpAddress => Value::Ip(if r.u8() & 1 == 0 {
                IpAddr::from([r.u8(), r.u8(), r.u8(), r.u8()])
            } else {
                IpAddr::from(std::net::Ipv6Addr::from(
                    u128::from(r.u64()) | (u128::from(r.u64()) << 64),
                ))
            }),
        };
        bag.set(id, value).expect("a value of the attribute's type");
    }
    bag
}

/// Reads fuzz input; past its end every read is zero or empty.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8() % 32).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}
