//! Encoding one segment.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::{BatchKind, Family, MAGIC, SEGMENT_HEADER_LEN, Span, VERSION, Value};

/// Builds one segment: interns strings, declares families, appends records. Reusable: [`BatchWriter::finish_into`]
/// resets it and keeps its buffers.
#[derive(Debug)]
pub struct BatchWriter {
    kind: BatchKind,
    /// Interned strings. foldhash rather than SipHash: strings are hashed for every label value of every
    /// record, and foldhash's per-map seed still keeps a client from choosing colliding values in advance.
    strings: HashMap<Box<str>, u32, RandomState>,
    string_bytes: Vec<u8>,
    families: Vec<u8>,
    family_count: u32,
    /// Label count of each declared family, to check metric records.
    family_labels: Vec<usize>,
    records: Vec<u8>,
    record_count: u32,
    /// Reused buffer for a record's fields (their count is written before them).
    scratch: Vec<u8>,
    /// The label strings of the previous metric record of this segment (if `has_last`), which the next one
    /// repeats by reference when it has the same.
    last_labels: Vec<u32>,
    has_last: bool,
}

impl BatchWriter {
    /// An empty segment of `kind`.
    pub fn new(kind: BatchKind) -> Self {
        let mut w = Self {
            kind,
            strings: HashMap::with_hasher(RandomState::default()),
            string_bytes: Vec::new(),
            families: Vec::new(),
            family_count: 0,
            family_labels: Vec::new(),
            records: Vec::new(),
            record_count: 0,
            scratch: Vec::new(),
            last_labels: Vec::new(),
            has_last: false,
        };
        w.intern("");
        w
    }

    /// The kind of records this writer takes.
    pub fn kind(&self) -> BatchKind {
        self.kind
    }

    /// Records written since the last finish.
    pub fn len(&self) -> usize {
        self.record_count as usize
    }

    /// True when no record was written since the last finish.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// Bytes the finished segment will take (approximately: varint widths aside).
    pub fn encoded_len(&self) -> usize {
        SEGMENT_HEADER_LEN + self.string_bytes.len() + self.families.len() + self.records.len() + 15
    }

    /// Interns `s`, returning its index in this segment's string table.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.strings.len() as u32;
        put_varint(&mut self.string_bytes, s.len() as u64);
        self.string_bytes.extend_from_slice(s.as_bytes());
        self.strings.insert(s.into(), i);
        i
    }

    /// Declares a metric family and returns its index for [`BatchWriter::metric`].
    pub fn family(&mut self, f: &Family<'_>) -> u32 {
        let name = self.intern(f.name);
        let help = self.intern(f.help);
        put_varint(&mut self.families, u64::from(name));
        self.families.push(f.kind as u8);
        put_varint(&mut self.families, u64::from(help));
        put_varint(&mut self.families, f.label_names.len() as u64);
        for l in f.label_names {
            let i = self.intern(l);
            put_varint(&mut self.families, u64::from(i));
        }
        put_varint(&mut self.families, f.buckets.len() as u64);
        for b in f.buckets {
            self.families.extend_from_slice(&b.to_le_bytes());
        }
        self.family_labels.push(f.label_names.len());
        self.family_count += 1;
        self.family_count - 1
    }

    /// Appends a metric record: `labels` are the values of the family's labels, in order.
    ///
    /// # Panics
    /// When `family` was not declared or `labels` has the wrong length (a bug in the caller).
    pub fn metric<'s>(
        &mut self,
        family: u32,
        value: f64,
        time_nanos: u64,
        labels: impl IntoIterator<Item = &'s str>,
    ) {
        debug_assert_eq!(self.kind, BatchKind::Metrics);
        let want = self.family_labels[family as usize];
        let mut interned = std::mem::take(&mut self.last_labels);
        interned.clear();
        for l in labels {
            interned.push(self.intern(l));
        }
        assert_eq!(
            interned.len(),
            want,
            "metric record label count differs from its family's"
        );
        put_varint(&mut self.records, 2 * u64::from(family));
        self.records.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.records, time_nanos);
        for &i in &interned {
            put_varint(&mut self.records, u64::from(i));
        }
        self.last_labels = interned;
        self.has_last = true;
        self.record_count += 1;
    }

    /// Appends a metric record whose label values are already interned in this segment
    /// ([`BatchWriter::intern`] since the last finish): for a caller that writes the same values into several
    /// records and interns each once.
    ///
    /// # Panics
    /// When `family` was not declared, `labels` has the wrong length or names a string not interned in this
    /// segment (a bug in the caller).
    pub fn metric_interned(&mut self, family: u32, value: f64, time_nanos: u64, labels: &[u32]) {
        debug_assert_eq!(self.kind, BatchKind::Metrics);
        assert_eq!(
            labels.len(),
            self.family_labels[family as usize],
            "metric record label count differs from its family's"
        );
        let strings = self.strings.len();
        assert!(
            labels.iter().all(|&i| (i as usize) < strings),
            "label value not interned in this segment"
        );
        let repeat = self.has_last && self.last_labels == labels;
        put_varint(&mut self.records, 2 * u64::from(family) + u64::from(repeat));
        self.records.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.records, time_nanos);
        if !repeat {
            for &i in labels {
                put_varint(&mut self.records, u64::from(i));
            }
            self.last_labels.clear();
            self.last_labels.extend_from_slice(labels);
            self.has_last = true;
        }
        self.record_count += 1;
    }

    /// Appends a metric record with the labels of the previous metric record of this segment: what
    /// [`BatchWriter::metric_interned`] writes given the same labels again, for a caller that knows they are.
    ///
    /// # Panics
    /// When no metric record was written since the last finish, or `family` was not declared or has another
    /// label count (a bug in the caller).
    pub fn metric_repeat(&mut self, family: u32, value: f64, time_nanos: u64) {
        debug_assert_eq!(self.kind, BatchKind::Metrics);
        assert!(self.has_last, "no previous metric record to repeat");
        assert_eq!(
            self.last_labels.len(),
            self.family_labels[family as usize],
            "metric record label count differs from its family's"
        );
        put_varint(&mut self.records, 2 * u64::from(family) + 1);
        self.records.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.records, time_nanos);
        self.record_count += 1;
    }

    /// Appends a log entry.
    pub fn log<'s>(
        &mut self,
        name: &str,
        severity: crate::Severity,
        time_nanos: u64,
        fields: impl IntoIterator<Item = (&'s str, Value<'s>)>,
    ) {
        debug_assert_eq!(self.kind, BatchKind::Logs);
        let name = self.intern(name);
        let mut rec = std::mem::take(&mut self.records);
        put_varint(&mut rec, u64::from(name));
        rec.push(severity as u8);
        put_varint(&mut rec, time_nanos);
        self.fields(&mut rec, fields);
        self.records = rec;
        self.record_count += 1;
    }

    /// Appends a span with its tags.
    pub fn span<'s>(
        &mut self,
        span: &Span<'_>,
        tags: impl IntoIterator<Item = (&'s str, Value<'s>)>,
    ) {
        debug_assert_eq!(self.kind, BatchKind::Spans);
        let name = self.intern(span.name);
        let service = self.intern(span.service);
        let peer = self.intern(span.peer_service);
        let mut rec = std::mem::take(&mut self.records);
        rec.extend_from_slice(&span.trace_id);
        rec.extend_from_slice(&span.span_id);
        rec.extend_from_slice(&span.parent_id);
        put_varint(&mut rec, u64::from(name));
        rec.push(span.kind as u8);
        put_varint(&mut rec, span.start_nanos);
        put_varint(&mut rec, span.end_nanos);
        rec.push(span.flags);
        put_varint(&mut rec, u64::from(service));
        put_varint(&mut rec, u64::from(peer));
        self.fields(&mut rec, tags);
        self.records = rec;
        self.record_count += 1;
    }

    /// Appends one request's attributes (kind attributes).
    pub fn attributes<'s>(&mut self, attrs: impl IntoIterator<Item = (&'s str, Value<'s>)>) {
        debug_assert_eq!(self.kind, BatchKind::Attributes);
        let mut rec = std::mem::take(&mut self.records);
        self.fields(&mut rec, attrs);
        self.records = rec;
        self.record_count += 1;
    }

    fn fields<'s>(
        &mut self,
        rec: &mut Vec<u8>,
        fields: impl IntoIterator<Item = (&'s str, Value<'s>)>,
    ) {
        let mut body = std::mem::take(&mut self.scratch);
        body.clear();
        let mut n = 0u64;
        for (k, v) in fields {
            let k = self.intern(k);
            put_varint(&mut body, u64::from(k));
            self.value(&mut body, v);
            n += 1;
        }
        put_varint(rec, n);
        rec.extend_from_slice(&body);
        self.scratch = body;
    }

    fn value(&mut self, out: &mut Vec<u8>, v: Value<'_>) {
        match v {
            Value::Null => out.push(0),
            Value::Str(s) => {
                let i = self.intern(s);
                out.push(1);
                put_varint(out, u64::from(i));
            }
            Value::Int(i) => {
                out.push(2);
                put_varint(out, zigzag(i));
            }
            Value::Double(d) => {
                out.push(3);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Value::Bool(b) => {
                out.push(4);
                out.push(u8::from(b));
            }
            Value::Bytes(b) => {
                out.push(5);
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Timestamp(t) => {
                out.push(6);
                put_varint(out, zigzag(t));
            }
            Value::Duration(d) => {
                out.push(7);
                put_varint(out, zigzag(d));
            }
        }
    }

    /// Appends the finished segment to `out` and resets the writer for the next one (buffers are kept).
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(self.encoded_len());
        put_varint(&mut body, self.strings.len() as u64);
        body.extend_from_slice(&self.string_bytes);
        put_varint(&mut body, u64::from(self.family_count));
        body.extend_from_slice(&self.families);
        put_varint(&mut body, u64::from(self.record_count));
        body.extend_from_slice(&self.records);

        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);

        self.strings.clear();
        self.string_bytes.clear();
        self.families.clear();
        self.family_count = 0;
        self.family_labels.clear();
        self.records.clear();
        self.record_count = 0;
        self.has_last = false;
        self.intern("");
    }

    /// The finished segment as a new buffer.
    pub fn finish(mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
