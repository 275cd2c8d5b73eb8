//! The sample encoding: what an adapter hands the host's metrics registry in one `record` call.
//!
//! ```text
//! samples := n × (handle:varint value:f64 set:varint [labels])
//! set     := 2 × n_labels      a new label set; `labels` follow: n_labels × (varint len, utf-8 bytes)
//!          | 2 × k + 1         the same label values as the k-th new label set of this buffer (from 0)
//! ```
//!
//! A label set that repeats within one call (the same series, or another family with the same labels) is
//! sent once, and the host resolves it to a series once: an adapter writes it with [`SampleWriter::sample`],
//! which returns a [`LabelSet`], and refers to it afterwards with [`SampleWriter::sample_with`].

use crate::read::DecodeError;
use crate::write::put_varint;

/// A label set written earlier into the same [`SampleWriter`] (valid until [`SampleWriter::clear`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelSet(pub u32);

/// Encodes samples for the host's `metrics.record`.
#[derive(Debug, Default)]
pub struct SampleWriter {
    buf: Vec<u8>,
    count: usize,
    sets: u32,
}

impl SampleWriter {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one sample of the family `handle` with its label values in the family's order, and returns
    /// the label set for [`SampleWriter::sample_with`].
    pub fn sample<'s, I>(&mut self, handle: u32, value: f64, label_values: I) -> LabelSet
    where
        I: IntoIterator<Item = &'s str>,
        I::IntoIter: ExactSizeIterator,
    {
        let values = label_values.into_iter();
        put_varint(&mut self.buf, u64::from(handle));
        self.buf.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.buf, 2 * values.len() as u64);
        for v in values {
            put_varint(&mut self.buf, v.len() as u64);
            self.buf.extend_from_slice(v.as_bytes());
        }
        self.count += 1;
        self.sets += 1;
        LabelSet(self.sets - 1)
    }

    /// Appends one sample of the family `handle` with the label values of `set`, written earlier into this
    /// buffer.
    pub fn sample_with(&mut self, handle: u32, value: f64, set: LabelSet) {
        debug_assert!(set.0 < self.sets, "label set from another buffer");
        put_varint(&mut self.buf, u64::from(handle));
        self.buf.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.buf, 2 * u64::from(set.0) + 1);
        self.count += 1;
    }

    /// Samples written.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded samples.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the buffer, keeping its allocation. Label sets written before are no longer valid.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.sets = 0;
    }
}

/// One decoded sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The family handle returned by `metrics.define`.
    pub handle: u32,
    /// The value.
    pub value: f64,
    /// The label values.
    pub label_values: Vec<&'a str>,
}

/// A decoded sample whose labels are given by reference ([`SampleReader::labels_of`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSample {
    /// The family handle returned by `metrics.define`.
    pub handle: u32,
    /// The value.
    pub value: f64,
    /// The sample's label set: the same number means the same label values within one buffer.
    pub set: LabelSet,
}

/// Iterates samples; stops at the first malformed one, returning its error.
#[derive(Debug)]
pub struct SampleReader<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
    /// Where the labels of every new label set read so far start in `labels`, and how many there are.
    sets: Vec<(usize, usize)>,
    /// The label values of every new label set read so far, validated when read.
    labels: Vec<&'a str>,
}

impl<'a> SampleReader<'a> {
    /// Reads `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
            sets: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Decodes the next sample without its label values; [`SampleReader::labels_of`] gives them.
    pub fn next_raw(&mut self) -> Option<Result<RawSample, DecodeError>> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.decode();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }

    /// The label values of `set` (a set returned by [`SampleReader::next_raw`]) into `labels` (cleared
    /// first).
    pub fn labels_of(&self, set: LabelSet, labels: &mut Vec<&'a str>) {
        labels.clear();
        if let Some(&(at, n)) = self.sets.get(set.0 as usize) {
            labels.extend_from_slice(&self.labels[at..at + n]);
        }
    }

    /// Decodes the next sample into `labels` (cleared first), avoiding an allocation per sample.
    pub fn next_into(
        &mut self,
        labels: &mut Vec<&'a str>,
    ) -> Option<Result<(u32, f64), DecodeError>> {
        let r = self.next_raw()?;
        Some(r.map(|s| {
            self.labels_of(s.set, labels);
            (s.handle, s.value)
        }))
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what,
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let (v, next) = varint_at(self.buf, self.pos).ok_or_else(|| self.err("bad varint"))?;
        self.pos = next;
        Ok(v)
    }

    fn decode(&mut self) -> Result<RawSample, DecodeError> {
        let handle = u32::try_from(self.varint()?).map_err(|_| self.err("handle out of range"))?;
        let raw = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("unexpected end"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(raw);
        self.pos += 8;
        let value = f64::from_le_bytes(a);
        let tag = self.varint()?;
        if tag % 2 == 1 {
            let k = tag / 2;
            if k >= self.sets.len() as u64 {
                return Err(self.err("label set reference to a set not written before"));
            }
            return Ok(RawSample {
                handle,
                value,
                set: LabelSet(k as u32),
            });
        }
        let n = tag / 2;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(self.err("label count larger than the remaining bytes"));
        }
        let start = self.labels.len();
        for _ in 0..n {
            let len = self.varint()? as usize;
            let at = self.pos;
            let bytes = self
                .buf
                .get(at..at.saturating_add(len))
                .ok_or_else(|| self.err("unexpected end"))?;
            let text = std::str::from_utf8(bytes).map_err(|_| DecodeError {
                offset: at,
                what: "invalid UTF-8",
            })?;
            self.labels.push(text);
            self.pos += len;
        }
        let set = u32::try_from(self.sets.len()).map_err(|_| self.err("too many label sets"))?;
        self.sets.push((start, n as usize));
        Ok(RawSample {
            handle,
            value,
            set: LabelSet(set),
        })
    }
}

/// The varint at `at` and the offset after it; `None` when truncated or longer than 10 bytes.
fn varint_at(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let b = *buf.get(at + i)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, at + i + 1));
        }
    }
    None
}

impl<'a> Iterator for SampleReader<'a> {
    type Item = Result<Sample<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut labels = Vec::new();
        self.next_into(&mut labels).map(|r| {
            r.map(|(handle, value)| Sample {
                handle,
                value,
                label_values: labels,
            })
        })
    }
}
