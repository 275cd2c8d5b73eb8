//! The sample encoding: what an adapter hands the host's metrics registry in one `record` call.
//!
//! ```text
//! samples := n × (handle:varint value:f64 n_labels:varint, n_labels × (varint len, utf-8 bytes))
//! ```

use crate::read::DecodeError;
use crate::write::put_varint;

/// Encodes samples for the host's `metrics.record`.
#[derive(Debug, Default)]
pub struct SampleWriter {
    buf: Vec<u8>,
    count: usize,
}

impl SampleWriter {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one sample of the family `handle` with its label values in the family's order.
    pub fn sample<'s, I>(&mut self, handle: u32, value: f64, label_values: I)
    where
        I: IntoIterator<Item = &'s str>,
        I::IntoIter: ExactSizeIterator,
    {
        let values = label_values.into_iter();
        put_varint(&mut self.buf, u64::from(handle));
        self.buf.extend_from_slice(&value.to_le_bytes());
        put_varint(&mut self.buf, values.len() as u64);
        for v in values {
            put_varint(&mut self.buf, v.len() as u64);
            self.buf.extend_from_slice(v.as_bytes());
        }
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

    /// Empties the buffer, keeping its allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
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

/// Iterates samples; stops at the first malformed one, returning its error.
#[derive(Debug)]
pub struct SampleReader<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> SampleReader<'a> {
    /// Reads `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }

    /// Decodes the next sample into `labels` (cleared first), avoiding an allocation per sample.
    pub fn next_into(
        &mut self,
        labels: &mut Vec<&'a str>,
    ) -> Option<Result<(u32, f64), DecodeError>> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        labels.clear();
        let r = self.decode(labels);
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }

    fn err(&self, what: &'static str) -> DecodeError {
        DecodeError {
            offset: self.pos,
            what,
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn decode(&mut self, labels: &mut Vec<&'a str>) -> Result<(u32, f64), DecodeError> {
        let handle = u32::try_from(self.varint()?).map_err(|_| self.err("handle out of range"))?;
        let raw = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("unexpected end"))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(raw);
        self.pos += 8;
        let n = self.varint()?;
        if n > (self.buf.len() - self.pos) as u64 {
            return Err(self.err("label count larger than the remaining bytes"));
        }
        for _ in 0..n {
            let len = self.varint()? as usize;
            let at = self.pos;
            let bytes = self
                .buf
                .get(at..at.saturating_add(len))
                .ok_or_else(|| self.err("unexpected end"))?;
            self.pos += len;
            labels.push(std::str::from_utf8(bytes).map_err(|_| DecodeError {
                offset: at,
                what: "invalid UTF-8",
            })?);
        }
        Ok((handle, f64::from_le_bytes(a)))
    }
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
