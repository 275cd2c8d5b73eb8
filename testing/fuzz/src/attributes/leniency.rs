//! Where prost and the hub's Report decoder may part ways legitimately: prost's leniencies with the protobuf
//! encoding, and the hub's checks of values prost drops. Each is read from the bytes with a walker of
//! protobuf fields of its own, independent of both decoders.

use std::collections::HashSet;

use sextant_attributes::{DecodeError, GLOBAL_DICTIONARY};
use sextant_proto::mixer::ReportRequest;

/// Whether the hub may refuse entry `i` of `data` (read by prost as `req`), which prost's path accepts:
/// - a map key repeated in one map (an entry's, or a string map value's) whose earlier value is invalid:
///   protobuf keeps the last value, the hub checks every value sent;
/// - an attribute named by two words (map keys) of one map in a delta entry: a duplicate, as it is in an
///   entry that is not an overlay, where the prost path's result would be either value, by the iteration
///   order of its hash map.
pub(super) fn refusal_is_legitimate(
    data: &[u8],
    req: &ReportRequest,
    i: usize,
    ours: &DecodeError,
) -> bool {
    let entry = fields(data).and_then(|top| {
        top.into_iter()
            .filter(|&(field, wire, ..)| field == 1 && wire == 2)
            .nth(i)
            .map(|(.., payload)| payload)
    });
    let repeats_a_key = entry.and_then(fields).is_some_and(|entry| {
        let mut keys = HashSet::new();
        entry
            .iter()
            .filter(|&&(field, wire, ..)| (3..=10).contains(&field) && wire == 2)
            .any(|&(field, .., map_entry)| {
                let map_entry = fields(map_entry).unwrap_or_default();
                // A string map's own entries, across every value given (merged).
                let mut inner = HashSet::new();
                let inner_repeats = field == 10
                    && map_entry
                        .iter()
                        .filter(|&&(f, w, ..)| f == 2 && w == 2)
                        .flat_map(|&(.., value)| fields(value).unwrap_or_default())
                        .filter(|&(f, w, ..)| f == 1 && w == 2)
                        .any(|(.., e)| !inner.insert(key_of(e)));
                inner_repeats || !keys.insert((field, key_of_fields(&map_entry)))
            })
    });
    repeats_a_key || (matches!(ours, DecodeError::Duplicate { .. }) && names_twice(req, i))
}

/// A map entry's key (field 1, a varint; 0 when absent, the last when repeated).
fn key_of(map_entry: &[u8]) -> u32 {
    key_of_fields(&fields(map_entry).unwrap_or_default())
}

fn key_of_fields(map_entry: &[Field<'_>]) -> u32 {
    map_entry
        .iter()
        .rev()
        .find(|&&(f, w, ..)| f == 1 && w == 0)
        .map_or(0, |&(_, _, v, _)| v as u32)
}

/// Whether two keys of one map of entry `i` name the same attribute.
fn names_twice(req: &ReportRequest, i: usize) -> bool {
    let c = &req.attributes[i];
    let local = if c.words.is_empty() {
        &req.default_words
    } else {
        &c.words
    };
    let global = if c.global_word_count == 0 {
        req.global_word_count
    } else {
        c.global_word_count
    };
    let name = |k: i32| -> Option<&str> {
        if k >= 0 {
            u32::try_from(k)
                .ok()
                .filter(|k| *k < global)
                .and_then(|k| GLOBAL_DICTIONARY.get(k as usize).copied())
        } else {
            let k = usize::try_from(-i64::from(k) - 1).ok()?;
            local.get(k).map(String::as_str)
        }
    };
    let twice = |keys: Vec<i32>| {
        let mut seen = HashSet::new();
        keys.into_iter().any(|k| !seen.insert(name(k)))
    };
    twice(c.strings.keys().copied().collect())
        || twice(c.int64s.keys().copied().collect())
        || twice(c.doubles.keys().copied().collect())
        || twice(c.bools.keys().copied().collect())
        || twice(c.timestamps.keys().copied().collect())
        || twice(c.durations.keys().copied().collect())
        || twice(c.bytes.keys().copied().collect())
        || twice(c.string_maps.keys().copied().collect())
}

/// Whether prost 0.14 reads the `ReportRequest` `data` otherwise than protobuf's encoding says, where the
/// hub's decoder follows the encoding and refuses: prost takes a map field of any wire type as
/// length-delimited (its generated map merge does not check the wire type), and skips groups (wire types 3
/// and 4) in fields it does not know, which the hub refuses (this API has no groups, and proto3 cannot
/// declare them).
pub(super) fn prost_is_lenient(data: &[u8]) -> bool {
    let Some(top) = fields(data) else {
        return true;
    };
    top.iter()
        .filter(|&&(field, wire, ..)| field == 1 && wire == 2)
        .any(|&(.., entry)| entry_is_lenient(entry))
}

/// A `CompressedAttributes`: its map fields (3 to 10) and what their entries hold.
fn entry_is_lenient(entry: &[u8]) -> bool {
    let Some(entry) = fields(entry) else {
        return true;
    };
    entry.iter().any(|&(field, wire, _, payload)| {
        if !(3..=10).contains(&field) {
            return false;
        }
        if wire != 2 {
            return true;
        }
        let Some(map_entry) = fields(payload) else {
            return true;
        };
        map_entry
            .iter()
            .any(|&(f, w, _, value)| match (field, f, w) {
                // Timestamp, Duration: scalars only.
                (7 | 8, 2, 2) => fields(value).is_none(),
                // CompressedStringMap: one map field.
                (10, 2, 2) => fields(value).is_none_or(|m| {
                    m.iter()
                        .any(|&(f, w, _, e)| f == 1 && (w != 2 || fields(e).is_none()))
                }),
                _ => false,
            })
    })
}

/// A protobuf field: number, wire type, value (of a varint) and payload (of the other wire types).
type Field<'a> = (u64, u8, u64, &'a [u8]);

/// The fields of a protobuf message; `None` for a group or bytes that are not fields.
fn fields(mut buf: &[u8]) -> Option<Vec<Field<'_>>> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (buf.get(..n)?, buf.get(n..)?);
        *buf = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let wire = (key & 7) as u8;
        let (value, payload) = match wire {
            0 => (varint(&mut buf)?, &[][..]),
            1 => (0, take(&mut buf, 8)?),
            2 => {
                let n = usize::try_from(varint(&mut buf)?).ok()?;
                (0, take(&mut buf, n)?)
            }
            5 => (0, take(&mut buf, 4)?),
            _ => return None,
        };
        out.push((key >> 3, wire, value, payload));
    }
    Some(out)
}
