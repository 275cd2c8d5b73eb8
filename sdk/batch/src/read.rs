//! Decoding: a whole buffer is validated once, then read through views that cannot fail.
//!
//! Metric records, the bulk of what crosses the boundary, are not copied anywhere by the validation: it
//! checks every record's bounds and string indices in place and keeps only the byte range, and the views
//! decode a record again, without allocating, when the adapter iterates. An adapter pays per record only
//! for what it reads.

use std::fmt;
use std::ops::Range;

use crate::{
    BatchKind, MAGIC, MetricKind, SEGMENT_HEADER_LEN, Severity, Span, SpanKind, VERSION, Value,
};

/// A malformed buffer: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the buffer.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed batch at byte {}: {}", self.offset, self.what)
    }
}

impl std::error::Error for DecodeError {}

#[derive(Debug, Clone, Copy)]
enum RawValue<'a> {
    Null,
    Str(u32),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(&'a [u8]),
    Timestamp(i64),
    Duration(i64),
}

#[derive(Debug)]
struct FamilyData {
    name: u32,
    kind: MetricKind,
    help: u32,
    labels: Range<usize>,
    buckets: Vec<f64>,
}

#[derive(Debug)]
enum Record {
    Log {
        name: u32,
        severity: Severity,
        time: u64,
        fields: Range<usize>,
    },
    Span {
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_id: [u8; 8],
        name: u32,
        kind: SpanKind,
        start: u64,
        end: u64,
        flags: u8,
        service: u32,
        peer: u32,
        fields: Range<usize>,
    },
    Attributes {
        fields: Range<usize>,
    },
}

/// The records of a segment.
#[derive(Debug)]
enum Records<'a> {
    /// Metric records: validated in place, decoded again by [`Metrics`] on iteration.
    Metrics { bytes: &'a [u8], count: usize },
    /// Logs, spans or attributes, indexed at parse time.
    Indexed(Vec<Record>),
}

#[derive(Debug)]
struct Segment<'a> {
    /// Position of the segment in its batch.
    seq: u32,
    strings: Vec<&'a str>,
    families: Vec<FamilyData>,
    /// Label-name indices of families.
    idx: Vec<u32>,
    fields: Vec<(u32, RawValue<'a>)>,
    records: Records<'a>,
}

impl<'a> Segment<'a> {
    fn str(&self, i: u32) -> &'a str {
        // Indices were checked at parse time; "" is unreachable but keeps this total.
        self.strings.get(i as usize).copied().unwrap_or("")
    }

    fn value(&self, v: RawValue<'a>) -> Value<'a> {
        match v {
            RawValue::Null => Value::Null,
            RawValue::Str(i) => Value::Str(self.str(i)),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Double(d) => Value::Double(d),
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Bytes(b) => Value::Bytes(b),
            RawValue::Timestamp(t) => Value::Timestamp(t),
            RawValue::Duration(d) => Value::Duration(d),
        }
    }

    fn len(&self) -> usize {
        match &self.records {
            Records::Metrics { count, .. } => *count,
            Records::Indexed(r) => r.len(),
        }
    }

    fn indexed(&self) -> &[Record] {
        match &self.records {
            Records::Indexed(r) => r,
            Records::Metrics { .. } => &[],
        }
    }
}

/// A decoded buffer of one or more segments.
#[derive(Debug)]
pub struct Batch<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> Batch<'a> {
    /// Validates and indexes `bytes`. An empty buffer is an empty batch.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut segments = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = bytes.get(at..at + SEGMENT_HEADER_LEN).ok_or(DecodeError {
                offset: at,
                what: "truncated segment header",
            })?;
            if header[..3] != MAGIC {
                return Err(DecodeError {
                    offset: at,
                    what: "bad magic (not a Sextant batch)",
                });
            }
            if header[3] != VERSION {
                return Err(DecodeError {
                    offset: at + 3,
                    what: "unsupported batch version",
                });
            }
            let kind = BatchKind::from_u8(header[4]).ok_or(DecodeError {
                offset: at + 4,
                what: "unknown segment kind",
            })?;
            let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
            let start = at + SEGMENT_HEADER_LEN;
            let body = bytes
                .get(start..start.saturating_add(len))
                .ok_or(DecodeError {
                    offset: at + 5,
                    what: "segment length past the end",
                })?;
            let mut c = Cursor {
                buf: body,
                pos: 0,
                base: start,
            };
            let mut seg = c.segment(kind)?;
            seg.seq = u32::try_from(segments.len()).unwrap_or(u32::MAX);
            segments.push(seg);
            if c.pos != body.len() {
                return Err(c.err("trailing bytes in segment"));
            }
            at = start + len;
        }
        Ok(Self { segments })
    }

    /// Number of records in all segments.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Segment::len).sum()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metric records, in order. Each is decoded as the iterator reaches it, without allocating.
    pub fn metrics(&self) -> impl Iterator<Item = MetricRef<'_, 'a>> {
        self.segments.iter().flat_map(|seg| match seg.records {
            Records::Metrics { bytes, count } => Metrics {
                seg,
                rd: Reader { buf: bytes, pos: 0 },
                left: count,
                previous: &[],
            },
            Records::Indexed(_) => Metrics {
                seg,
                rd: Reader { buf: &[], pos: 0 },
                left: 0,
                previous: &[],
            },
        })
    }

    /// The log entries, in order.
    pub fn logs(&self) -> impl Iterator<Item = LogRef<'_, 'a>> {
        self.segments.iter().flat_map(|seg| {
            seg.indexed().iter().filter_map(move |r| match r {
                Record::Log {
                    name,
                    severity,
                    time,
                    fields,
                } => Some(LogRef {
                    seg,
                    name: *name,
                    severity: *severity,
                    time: *time,
                    fields: fields.clone(),
                }),
                _ => None,
            })
        })
    }

    /// The spans, in order.
    pub fn spans(&self) -> impl Iterator<Item = SpanRef<'_, 'a>> {
        self.segments.iter().flat_map(|seg| {
            seg.indexed().iter().filter_map(move |r| match r {
                Record::Span { .. } => Some(SpanRef { seg, rec: r }),
                _ => None,
            })
        })
    }

    /// The fields of the attribute records (kind attributes), in order.
    pub fn attributes(&self) -> impl Iterator<Item = Field<'a>> + '_ {
        self.segments.iter().flat_map(|seg| {
            seg.indexed().iter().flat_map(move |r| match r {
                Record::Attributes { fields } => fields_of(seg, fields.clone()),
                _ => fields_of(seg, 0..0),
            })
        })
    }
}

fn fields_of<'s, 'a>(
    seg: &'s Segment<'a>,
    range: Range<usize>,
) -> impl Iterator<Item = Field<'a>> + 's {
    seg.fields[range].iter().map(|&(k, v)| Field {
        key: seg.str(k),
        value: seg.value(v),
    })
}

/// A key and its typed value: a log field, span tag or attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    /// Name.
    pub key: &'a str,
    /// Value.
    pub value: Value<'a>,
}

/// A metric family, as declared in the segment of a metric record.
#[derive(Debug, Clone, Copy)]
pub struct FamilyRef<'s, 'a> {
    seg: &'s Segment<'a>,
    f: &'s FamilyData,
}

impl<'s, 'a> FamilyRef<'s, 'a> {
    /// Metric name.
    pub fn name(&self) -> &'a str {
        self.seg.str(self.f.name)
    }
    /// Type.
    pub fn kind(&self) -> MetricKind {
        self.f.kind
    }
    /// Description.
    pub fn help(&self) -> &'a str {
        self.seg.str(self.f.help)
    }
    /// Label names, in the order of the records' values.
    pub fn label_names(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a, 's> {
        let seg = self.seg;
        seg.idx[self.f.labels.clone()]
            .iter()
            .map(move |&i| seg.str(i))
    }
    /// Histogram buckets (empty: default).
    pub fn buckets(&self) -> &'s [f64] {
        &self.f.buckets
    }
}

/// Iterates the metric records of one segment, decoding each from the validated bytes.
struct Metrics<'s, 'a> {
    seg: &'s Segment<'a>,
    rd: Reader<'a>,
    left: usize,
    /// The previous record's label bytes (a record may repeat them).
    previous: &'a [u8],
}

impl<'s, 'a> Iterator for Metrics<'s, 'a> {
    type Item = MetricRef<'s, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let head = self.rd.varint();
        let family = u32::try_from(head / 2).unwrap_or(u32::MAX);
        let value = self.rd.f64();
        let time = self.rd.varint();
        let n = self
            .seg
            .families
            .get(family as usize)
            .map_or(0, |f| f.labels.len());
        // Validated at parse time: a repeat follows a record with as many labels.
        let labels = if head % 2 == 1 {
            self.previous
        } else {
            self.rd.skip_varints(n)
        };
        self.previous = labels;
        Some(MetricRef {
            seg: self.seg,
            family,
            value,
            time,
            labels,
            n,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// One metric record: a view into the batch bytes.
#[derive(Debug, Clone)]
pub struct MetricRef<'s, 'a> {
    seg: &'s Segment<'a>,
    family: u32,
    value: f64,
    time: u64,
    /// The label-value string indices, as varints.
    labels: &'a [u8],
    n: usize,
}

impl<'s, 'a> MetricRef<'s, 'a> {
    /// The record's family.
    pub fn family(&self) -> FamilyRef<'s, 'a> {
        FamilyRef {
            seg: self.seg,
            // Checked at parse time.
            f: &self.seg.families[self.family as usize],
        }
    }
    /// The value: an increment (counter), the new value (gauge) or an observation (histogram).
    pub fn value(&self) -> f64 {
        self.value
    }
    /// When it was recorded, ns since the epoch.
    pub fn time_nanos(&self) -> u64 {
        self.time
    }
    /// Label values, in the family's label order.
    pub fn label_values(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a, 's> {
        LabelValues {
            seg: self.seg,
            rd: Reader {
                buf: self.labels,
                pos: 0,
            },
            left: self.n,
        }
    }
    /// The label values' indices in the segment's string table, in the family's label order. Two records of
    /// one segment with the same indices have the same label values, so an adapter can key per-batch state
    /// by them without comparing strings.
    pub fn label_indices(&self) -> impl ExactSizeIterator<Item = u32> + use<'a> {
        Indices {
            rd: Reader {
                buf: self.labels,
                pos: 0,
            },
            left: self.n,
        }
    }
    /// (label name, label value) pairs.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 's {
        self.family().label_names().zip(self.label_values())
    }
    /// Identifies the record's family within the batch: equal ids mean the same family declaration.
    pub fn family_id(&self) -> FamilyId {
        FamilyId {
            segment: self.seg.seq,
            family: self.family,
        }
    }
    /// Identifies the record's series within the batch without reading a string: records with equal keys
    /// have the same family and the same label values (records of different segments may be the same
    /// series under different keys).
    pub fn series_key(&self) -> SeriesKey<'a> {
        SeriesKey {
            family: self.family_id(),
            labels: self.labels,
        }
    }
}

/// A family declaration of a batch ([`MetricRef::family_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FamilyId {
    segment: u32,
    family: u32,
}

impl FamilyId {
    /// The segment of the batch that declares the family: label bytes ([`SeriesKey::label_bytes`]) of one
    /// segment name the same strings, so records of one segment with equal label bytes have the same label
    /// values, whatever their family.
    pub fn segment(&self) -> u32 {
        self.segment
    }
}

/// A series of a batch ([`MetricRef::series_key`]): cheap to hash and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesKey<'a> {
    family: FamilyId,
    labels: &'a [u8],
}

impl<'a> SeriesKey<'a> {
    /// The key's family.
    pub fn family(&self) -> FamilyId {
        self.family
    }
    /// The bytes that identify the label values within the family's segment.
    pub fn label_bytes(&self) -> &'a [u8] {
        self.labels
    }
}

/// The label values of one metric record.
struct LabelValues<'s, 'a> {
    seg: &'s Segment<'a>,
    rd: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for LabelValues<'_, 'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(
            self.seg
                .str(u32::try_from(self.rd.varint()).unwrap_or(u32::MAX)),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for LabelValues<'_, '_> {}

/// The label-value string indices of one metric record.
struct Indices<'a> {
    rd: Reader<'a>,
    left: usize,
}

impl Iterator for Indices<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(u32::try_from(self.rd.varint()).unwrap_or(u32::MAX))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Indices<'_> {}

/// Reads bytes that [`Cursor`] already validated: total, never fails (a short read yields zeros).
#[derive(Debug, Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> u8 {
        let b = self.buf.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    #[inline]
    fn varint(&mut self) -> u64 {
        let b = self.byte();
        if b < 0x80 {
            return u64::from(b);
        }
        let mut v = u64::from(b & 0x7f);
        for shift in (7..64).step_by(7) {
            let b = self.byte();
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
        }
        v
    }

    fn f64(&mut self) -> f64 {
        let mut a = [0u8; 8];
        if let Some(s) = self.buf.get(self.pos..self.pos + 8) {
            a.copy_from_slice(s);
        }
        self.pos += 8;
        f64::from_le_bytes(a)
    }

    /// Skips `n` varints, returning their bytes.
    #[inline]
    fn skip_varints(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.buf.len());
        let mut left = n;
        while left > 0 && self.pos < self.buf.len() {
            if self.buf[self.pos] < 0x80 {
                left -= 1;
            }
            self.pos += 1;
        }
        &self.buf[start..self.pos.min(self.buf.len())]
    }
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct LogRef<'s, 'a> {
    seg: &'s Segment<'a>,
    name: u32,
    severity: Severity,
    time: u64,
    fields: Range<usize>,
}

impl<'s, 'a> LogRef<'s, 'a> {
    /// The log's name (from the Telemetry resource).
    pub fn name(&self) -> &'a str {
        self.seg.str(self.name)
    }
    /// Severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// When, ns since the epoch.
    pub fn time_nanos(&self) -> u64 {
        self.time
    }
    /// The entry's fields, in the Telemetry resource's order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'a>> + 's {
        fields_of(self.seg, self.fields.clone())
    }
}

/// One span.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'s, 'a> {
    seg: &'s Segment<'a>,
    rec: &'s Record,
}

impl<'s, 'a> SpanRef<'s, 'a> {
    /// The span's fixed fields.
    pub fn span(&self) -> Span<'a> {
        match *self.rec {
            Record::Span {
                trace_id,
                span_id,
                parent_id,
                name,
                kind,
                start,
                end,
                flags,
                service,
                peer,
                ..
            } => Span {
                trace_id,
                span_id,
                parent_id,
                name: self.seg.str(name),
                kind,
                start_nanos: start,
                end_nanos: end,
                flags,
                service: self.seg.str(service),
                peer_service: self.seg.str(peer),
            },
            _ => Span {
                trace_id: [0; 16],
                span_id: [0; 8],
                parent_id: [0; 8],
                name: "",
                kind: SpanKind::Unspecified,
                start_nanos: 0,
                end_nanos: 0,
                flags: 0,
                service: "",
                peer_service: "",
            },
        }
    }
    /// The span's tags.
    pub fn tags(&self) -> impl Iterator<Item = Field<'a>> + 's {
        let range = match self.rec {
            Record::Span { fields, .. } => fields.clone(),
            _ => 0..0,
        };
        fields_of(self.seg, range)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole buffer, for error positions.
    base: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.base + self.pos,
            what,
        }
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let s = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    /// A varint of more than one byte, read from the slice directly (a timestamp takes nine).
    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let mut v = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() < 10 {
            self.err("unexpected end")
        } else {
            self.err("varint longer than 10 bytes")
        })
    }

    fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A count of items that each take at least `min` bytes: bounded by what is left, so a hostile count
    /// cannot make us allocate.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) / min.max(1);
        if n > left as u64 {
            return Err(self.err("count larger than the remaining bytes"));
        }
        Ok(n as usize)
    }

    fn str_idx(&mut self, strings: usize) -> Result<u32, DecodeError> {
        let i = self.varint()?;
        if i >= strings as u64 {
            return Err(self.err("string index out of range"));
        }
        Ok(i as u32)
    }

    /// Checks `n` string indices. Fast path: the next `n` bytes are all one-byte indices in range (a segment
    /// with fewer than 128 strings).
    #[inline]
    fn string_indices(&mut self, n: usize, strings: usize) -> Result<(), DecodeError> {
        let limit = strings.min(0x80);
        if let Some(s) = self.buf.get(self.pos..self.pos.saturating_add(n))
            && s.iter().all(|&b| usize::from(b) < limit)
        {
            self.pos += n;
            return Ok(());
        }
        for _ in 0..n {
            self.str_idx(strings)?;
        }
        Ok(())
    }

    fn value(&mut self, strings: usize) -> Result<RawValue<'a>, DecodeError> {
        Ok(match self.u8()? {
            0 => RawValue::Null,
            1 => RawValue::Str(self.str_idx(strings)?),
            2 => RawValue::Int(self.zigzag()?),
            3 => RawValue::Double(self.f64()?),
            4 => RawValue::Bool(self.u8()? != 0),
            5 => {
                let n = self.count(1)?;
                RawValue::Bytes(self.take(n)?)
            }
            6 => RawValue::Timestamp(self.zigzag()?),
            7 => RawValue::Duration(self.zigzag()?),
            _ => return Err(self.err("unknown value tag")),
        })
    }

    fn fields(
        &mut self,
        strings: usize,
        out: &mut Vec<(u32, RawValue<'a>)>,
    ) -> Result<Range<usize>, DecodeError> {
        let n = self.count(2)?;
        let start = out.len();
        for _ in 0..n {
            let k = self.str_idx(strings)?;
            let v = self.value(strings)?;
            out.push((k, v));
        }
        Ok(start..out.len())
    }

    fn segment(&mut self, kind: BatchKind) -> Result<Segment<'a>, DecodeError> {
        let n = self.count(1)?;
        let mut strings = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.count(1)?;
            let at = self.pos;
            let bytes = self.take(len)?;
            let s = std::str::from_utf8(bytes).map_err(|_| DecodeError {
                offset: self.base + at,
                what: "invalid UTF-8",
            })?;
            strings.push(s);
        }
        let ns = strings.len();
        if ns == 0 {
            return Err(self.err("string table lacks the empty string"));
        }

        let mut idx = Vec::new();
        let nf = self.count(4)?;
        let mut families = Vec::with_capacity(nf);
        for _ in 0..nf {
            let name = self.str_idx(ns)?;
            let kind =
                MetricKind::from_u8(self.u8()?).ok_or_else(|| self.err("unknown metric kind"))?;
            let help = self.str_idx(ns)?;
            let nl = self.count(1)?;
            let start = idx.len();
            for _ in 0..nl {
                idx.push(self.str_idx(ns)?);
            }
            let labels = start..idx.len();
            let nb = self.count(8)?;
            let mut buckets = Vec::with_capacity(nb);
            for _ in 0..nb {
                buckets.push(self.f64()?);
            }
            families.push(FamilyData {
                name,
                kind,
                help,
                labels,
                buckets,
            });
        }

        let nr = self.count(1)?;
        if kind == BatchKind::Metrics {
            let start = self.pos;
            // Label count of the previous record, for a record that repeats its labels.
            let mut previous: Option<usize> = None;
            for _ in 0..nr {
                let head = self.varint()?;
                let f = families
                    .get((head / 2) as usize)
                    .ok_or_else(|| self.err("family index out of range"))?;
                let nl = f.labels.len();
                self.take(8)?;
                self.varint()?;
                if head % 2 == 1 {
                    if previous != Some(nl) {
                        return Err(self.err(
                            "a record repeats the labels of a previous record that has another label count or does not exist",
                        ));
                    }
                } else {
                    self.string_indices(nl, ns)?;
                }
                previous = Some(nl);
            }
            return Ok(Segment {
                seq: 0,
                strings,
                families,
                idx,
                fields: Vec::new(),
                records: Records::Metrics {
                    bytes: &self.buf[start..self.pos],
                    count: nr,
                },
            });
        }
        let mut records = Vec::with_capacity(nr);
        let mut fields = Vec::new();
        for _ in 0..nr {
            let rec = match kind {
                // Handled above; kept total rather than panicking.
                BatchKind::Metrics => return Err(self.err("metric records in an indexed segment")),
                BatchKind::Logs => {
                    let name = self.str_idx(ns)?;
                    let severity = Severity::from_u8(self.u8()?)
                        .ok_or_else(|| self.err("unknown severity"))?;
                    let time = self.varint()?;
                    let fields = self.fields(ns, &mut fields)?;
                    Record::Log {
                        name,
                        severity,
                        time,
                        fields,
                    }
                }
                BatchKind::Spans => {
                    let trace_id = self.array()?;
                    let span_id = self.array()?;
                    let parent_id = self.array()?;
                    let name = self.str_idx(ns)?;
                    let kind = SpanKind::from_u8(self.u8()?)
                        .ok_or_else(|| self.err("unknown span kind"))?;
                    let start = self.varint()?;
                    let end = self.varint()?;
                    let flags = self.u8()?;
                    let service = self.str_idx(ns)?;
                    let peer = self.str_idx(ns)?;
                    let fields = self.fields(ns, &mut fields)?;
                    Record::Span {
                        trace_id,
                        span_id,
                        parent_id,
                        name,
                        kind,
                        start,
                        end,
                        flags,
                        service,
                        peer,
                        fields,
                    }
                }
                BatchKind::Attributes => Record::Attributes {
                    fields: self.fields(ns, &mut fields)?,
                },
            };
            records.push(rec);
        }
        Ok(Segment {
            seq: 0,
            strings,
            families,
            idx,
            fields,
            records: Records::Indexed(records),
        })
    }
}
