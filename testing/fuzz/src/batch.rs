//! The batch encoding at the hub↔adapter boundary (`sextant-batch`): what an adapter reads from the hub, and
//! the samples an adapter hands the host's metrics registry.

use std::collections::HashMap;

use sextant_batch::{
    Batch, BatchKind, BatchWriter, Family, LabelSet, MetricKind, SampleReader, SampleWriter,
    Severity, Span, SpanKind, Value,
};

/// Parses arbitrary bytes as a batch and as samples and reads everything through every view (no panic; the
/// readers bound what they allocate by the input's length, which libFuzzer's memory limit checks). What
/// parses, written again by [`BatchWriter`] / [`SampleWriter`], must read back the same; records with equal
/// series keys must have equal label values.
pub fn batch(data: &[u8]) {
    samples(data);
    let Ok(b) = Batch::parse(data) else {
        return;
    };
    let records = read(&b);
    let counted = records
        .iter()
        .filter(|r| !matches!(r, Rec::Attribute(..)))
        .count();
    assert!(counted <= b.len(), "len() counts every record");
    let again = rewrite(&b);
    let b2 = Batch::parse(&again).expect("BatchWriter's output parses");
    assert_eq!(read(&b2), records, "BatchWriter round trip");
}

/// An owned copy of a record, doubles as bits (a NaN reads back as the same NaN).
#[derive(Debug, PartialEq)]
enum Rec {
    Metric {
        family: (String, MetricKind, String, Vec<String>, Vec<u64>),
        value: u64,
        time: u64,
        labels: Vec<String>,
    },
    Log {
        name: String,
        severity: Severity,
        time: u64,
        fields: Vec<(String, Val)>,
    },
    Span {
        ids: ([u8; 16], [u8; 8], [u8; 8]),
        name: String,
        kind: SpanKind,
        times: (u64, u64),
        flags: u8,
        services: (String, String),
        tags: Vec<(String, Val)>,
    },
    Attribute(String, Val),
}

#[derive(Debug, PartialEq)]
enum Val {
    Null,
    Str(String),
    Int(i64),
    Double(u64),
    Bool(bool),
    Bytes(Vec<u8>),
    Timestamp(i64),
    Duration(i64),
}

fn val(v: Value<'_>) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Str(s) => Val::Str(s.to_string()),
        Value::Int(i) => Val::Int(i),
        Value::Double(d) => Val::Double(d.to_bits()),
        Value::Bool(b) => Val::Bool(b),
        Value::Bytes(b) => Val::Bytes(b.to_vec()),
        Value::Timestamp(t) => Val::Timestamp(t),
        Value::Duration(d) => Val::Duration(d),
    }
}

fn fields<'a>(f: impl Iterator<Item = sextant_batch::Field<'a>>) -> Vec<(String, Val)> {
    f.map(|f| (f.key.to_string(), val(f.value))).collect()
}

/// Everything `b` holds, through every view.
fn read(b: &Batch<'_>) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut series: HashMap<sextant_batch::SeriesKey<'_>, Vec<&str>> = HashMap::new();
    for m in b.metrics() {
        let f = m.family();
        let names: Vec<String> = f.label_names().map(str::to_string).collect();
        let values: Vec<&str> = m.label_values().collect();
        assert_eq!(values.len(), names.len(), "a value per label");
        assert_eq!(m.label_indices().count(), names.len(), "an index per label");
        assert_eq!(m.labels().count(), names.len(), "a pair per label");
        let seen = series
            .entry(m.series_key())
            .or_insert_with(|| values.clone());
        assert_eq!(*seen, values, "one series key, one set of label values");
        assert_eq!(m.series_key().family(), m.family_id(), "the key's family");
        out.push(Rec::Metric {
            family: (
                f.name().to_string(),
                f.kind(),
                f.help().to_string(),
                names,
                f.buckets().iter().map(|b| b.to_bits()).collect(),
            ),
            value: m.value().to_bits(),
            time: m.time_nanos(),
            labels: values.into_iter().map(str::to_string).collect(),
        });
    }
    for l in b.logs() {
        out.push(Rec::Log {
            name: l.name().to_string(),
            severity: l.severity(),
            time: l.time_nanos(),
            fields: fields(l.fields()),
        });
    }
    for s in b.spans() {
        let span = s.span();
        out.push(Rec::Span {
            ids: (span.trace_id, span.span_id, span.parent_id),
            name: span.name.to_string(),
            kind: span.kind,
            times: (span.start_nanos, span.end_nanos),
            flags: span.flags,
            services: (span.service.to_string(), span.peer_service.to_string()),
            tags: fields(s.tags()),
        });
    }
    for a in b.attributes() {
        out.push(Rec::Attribute(a.key.to_string(), val(a.value)));
    }
    out
}

/// `b` written again: one segment per kind (the attributes as one record).
fn rewrite(b: &Batch<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let mut declared = HashMap::new();
    for m in b.metrics() {
        let f = m.family();
        let index = *declared.entry(m.family_id()).or_insert_with(|| {
            let names: Vec<&str> = f.label_names().collect();
            w.family(&Family {
                name: f.name(),
                kind: f.kind(),
                help: f.help(),
                label_names: &names,
                buckets: f.buckets(),
            })
        });
        w.metric(index, m.value(), m.time_nanos(), m.label_values());
    }
    w.finish_into(&mut out);
    let mut w = BatchWriter::new(BatchKind::Logs);
    for l in b.logs() {
        let f = l.fields().map(|f| (f.key, f.value));
        w.log(l.name(), l.severity(), l.time_nanos(), f);
    }
    w.finish_into(&mut out);
    let mut w = BatchWriter::new(BatchKind::Spans);
    for s in b.spans() {
        let span: Span<'_> = s.span();
        w.span(&span, s.tags().map(|f| (f.key, f.value)));
    }
    w.finish_into(&mut out);
    let mut w = BatchWriter::new(BatchKind::Attributes);
    w.attributes(b.attributes().map(|f| (f.key, f.value)));
    w.finish_into(&mut out);
    out
}

/// Reads `data` as samples up to the first malformed one; what was read, written again by
/// [`SampleWriter`] (label sets referred to again as such), reads back the same.
fn samples(data: &[u8]) {
    let mut r = SampleReader::new(data);
    let mut read = Vec::new();
    let mut labels = Vec::new();
    while let Some(Ok(s)) = r.next_raw() {
        r.labels_of(s.set, &mut labels);
        read.push((s.handle, s.value.to_bits(), s.set, labels.clone()));
    }
    let mut w = SampleWriter::new();
    let mut sets: HashMap<LabelSet, LabelSet> = HashMap::new();
    for (handle, value, set, labels) in &read {
        let value = f64::from_bits(*value);
        match sets.get(set) {
            Some(&again) => w.sample_with(*handle, value, again),
            None => {
                let new = w.sample(*handle, value, labels.iter().copied());
                sets.insert(*set, new);
            }
        }
    }
    assert_eq!(w.len(), read.len(), "a sample written per sample read");
    let back: Vec<_> = SampleReader::new(w.as_bytes())
        .map(|s| {
            let s = s.expect("SampleWriter's output reads");
            (s.handle, s.value.to_bits(), s.label_values)
        })
        .collect();
    let want: Vec<_> = read.into_iter().map(|(h, v, _, l)| (h, v, l)).collect();
    assert_eq!(back, want, "SampleWriter round trip");
}
