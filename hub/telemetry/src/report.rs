//! Turning reported bags into records, written straight into one batch segment per adapter and kind.

use std::borrow::Cow;

use hub_policy::{BagResolver, ReadSet};
use sextant_attributes::{AttrId, Bag, Changes, Value};
use sextant_batch::{BatchKind, BatchWriter, Family, SPAN_ERROR, SPAN_SAMPLED, Span};

use crate::eval::{CelScope, Eval, Out, out_of};
use crate::rules::{CompiledTelemetry, CompiledTrace, Rules, SeverityOf};
use crate::tracectx;

/// What one adapter receives from the bags recorded so far.
#[derive(Debug)]
struct AdapterOut {
    metrics: BatchWriter,
    /// Family index → index in the current metrics segment (`u32::MAX`: not declared yet).
    declared: Vec<u32>,
    logs: BatchWriter,
    spans: BatchWriter,
}

/// Per-adapter segments being filled; reused across reports.
#[derive(Debug)]
pub struct Batches {
    out: Vec<AdapterOut>,
    /// Per Telemetry resource, what the previous bag computed that the next one may keep.
    memo: Vec<Memo>,
    /// A metric record's label strings, reused.
    labels: Vec<u32>,
}

/// What one Telemetry resource computed for the previous bag recorded into the current segments.
#[derive(Debug, Default)]
struct Memo {
    /// Whether the selector held.
    selector: Option<bool>,
    /// Per target adapter (outer) and dimension (inner): the dimension value's string index in the target's
    /// metrics segment; `u32::MAX`: not computed.
    strings: Vec<u32>,
    /// Whether every entry of `strings` is `u32::MAX` since the selector was found not to hold.
    dims_forgotten: bool,
}

impl Memo {
    fn new(t: &CompiledTelemetry) -> Self {
        Memo {
            selector: None,
            strings: vec![u32::MAX; t.dims.len() * t.targets.len()],
            dims_forgotten: false,
        }
    }

    /// Drops what depends on an attribute in `changes` (or on anything not known statically).
    fn forget(&mut self, t: &CompiledTelemetry, changes: Changes<'_>) {
        let stale = |e: &Eval| e.reads().is_none_or(|r| changes.touches(r));
        if t.selector.as_ref().is_some_and(stale) {
            self.selector = None;
        }
        // A resource whose selector is known not to hold writes nothing for this bag: its dimensions are
        // forgotten all at once, when the selector is first found not to hold, rather than checked on every bag
        // (another resource's traffic, e.g. HTTP requests for the TCP metrics).
        if self.selector == Some(false) {
            if !self.dims_forgotten {
                self.strings.iter_mut().for_each(|s| *s = u32::MAX);
                self.dims_forgotten = true;
            }
            return;
        }
        self.dims_forgotten = false;
        let n = t.dims.len();
        if n == 0 {
            return;
        }
        for (d, e) in t.dims.iter().enumerate() {
            if stale(e) {
                self.strings
                    .iter_mut()
                    .skip(d)
                    .step_by(n)
                    .for_each(|s| *s = u32::MAX);
            }
        }
    }

    /// Forgets everything (the segments the strings index were finished).
    fn reset(&mut self) {
        self.selector = None;
        self.strings.iter_mut().for_each(|s| *s = u32::MAX);
        self.dims_forgotten = true;
    }
}

/// One finished segment for one adapter.
#[derive(Debug)]
pub struct Segment {
    /// Index into [`Rules::adapters`].
    pub adapter: usize,
    /// Record kind.
    pub kind: BatchKind,
    /// The encoded segment.
    pub bytes: Vec<u8>,
    /// Records in it.
    pub records: usize,
}

/// What happened to the expressions of one or more bags.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecordStats {
    /// Metric records written (once per adapter).
    pub metrics: u64,
    /// Log entries written.
    pub logs: u64,
    /// Spans written.
    pub spans: u64,
    /// Instances skipped because a value could not be computed (metric value, span fields).
    pub failures: u64,
    /// Reports without trace context, or not sampled, for a Telemetry with traces.
    pub untraced: u64,
}

impl std::ops::AddAssign for RecordStats {
    fn add_assign(&mut self, o: Self) {
        self.metrics += o.metrics;
        self.logs += o.logs;
        self.spans += o.spans;
        self.failures += o.failures;
        self.untraced += o.untraced;
    }
}

const UNKNOWN: &str = "unknown";

impl Rules {
    /// Empty segments for every adapter of these rules.
    pub fn batches(&self) -> Batches {
        Batches {
            out: self
                .adapters
                .iter()
                .map(|_| AdapterOut {
                    metrics: BatchWriter::new(BatchKind::Metrics),
                    declared: vec![u32::MAX; self.families.len()],
                    logs: BatchWriter::new(BatchKind::Logs),
                    spans: BatchWriter::new(BatchKind::Spans),
                })
                .collect(),
            memo: self.telemetry.iter().map(Memo::new).collect(),
            labels: Vec::new(),
        }
    }

    /// Evaluates every Telemetry resource on `bag` and writes the records into `batches`. `now_nanos` is the
    /// time of records whose bag has no `response.time` / `context.time`.
    pub fn record(&self, bag: &Bag, now_nanos: u64, batches: &mut Batches) -> RecordStats {
        self.record_changed(bag, Changes::All, now_nanos, batches)
    }

    /// Like [`Rules::record`] for a bag that differs from the previous bag recorded into `batches` only as
    /// `changes` says (the next bag of a delta-encoded Report): selectors and dimensions that read none of the
    /// changed attributes keep the value (and interned string) they had for the previous bag. The records are
    /// the same as [`Rules::record`]'s.
    pub fn record_changed(
        &self,
        bag: &Bag,
        changes: Changes<'_>,
        now_nanos: u64,
        batches: &mut Batches,
    ) -> RecordStats {
        let mut stats = RecordStats::default();
        let reads = ReadSet::default();
        let resolver = BagResolver::new(bag, &reads);
        let mut cel = CelScope::new(&resolver);
        let time = record_time(bag).unwrap_or(now_nanos);
        // Per resource, each distinct dimension's string index in each target adapter's segment: kept from the
        // previous bag (`Memo`) or computed on first use.
        let mut fields: Vec<(&str, Out<'_>)> = Vec::new();
        let Batches {
            out: outs,
            memo,
            labels,
        } = batches;
        for (t, memo) in self.telemetry.iter().zip(memo.iter_mut()) {
            memo.forget(t, changes);
            if t.targets.is_empty() {
                continue;
            }
            if let Some(s) = &t.selector {
                let holds = match memo.selector {
                    Some(h) => h,
                    None => {
                        let h = s.holds(bag, &mut cel);
                        if s.reads().is_some() {
                            memo.selector = Some(h);
                        }
                        h
                    }
                };
                if !holds {
                    continue;
                }
            }
            // The dimensions of the last metric record written for this resource: with one target, a metric
            // with the same dimensions has the same labels (the resource's strings are set for this bag) and is
            // written as a repeat without building and comparing them again.
            let mut written_dims: Option<&[usize]> = None;
            for m in &t.metrics {
                if m.when.as_ref().is_some_and(|w| !w.holds(bag, &mut cel)) {
                    continue;
                }
                let value = match &m.value {
                    None => 1.0,
                    Some(v) => match v.eval(bag, &mut cel).and_then(|o| o.number()) {
                        Some(n) => n,
                        None => {
                            stats.failures += 1;
                            continue;
                        }
                    },
                };
                let fam = &self.families[m.family];
                for (ti, &a) in t.targets.iter().enumerate() {
                    let out = &mut outs[a];
                    let mut local = out.declared[m.family];
                    if local == u32::MAX {
                        let names: Vec<&str> = fam.label_names.iter().map(String::as_str).collect();
                        local = out.metrics.family(&Family {
                            name: &fam.name,
                            kind: fam.kind,
                            help: &fam.help,
                            label_names: &names,
                            buckets: &fam.buckets,
                        });
                        out.declared[m.family] = local;
                    }
                    if t.targets.len() == 1 && written_dims == Some(&m.dimensions[..]) {
                        out.metrics.metric_repeat(local, value, time);
                        stats.metrics += 1;
                        continue;
                    }
                    labels.clear();
                    let strings = &mut memo.strings[ti * t.dims.len()..];
                    for &d in &m.dimensions {
                        if strings[d] == u32::MAX {
                            strings[d] = match t.dims[d].eval(bag, &mut cel) {
                                Some(Out::Str(s)) => out.metrics.intern(&s),
                                Some(o) => out.metrics.intern(&o.text()),
                                None => out.metrics.intern(UNKNOWN),
                            };
                        }
                        labels.push(strings[d]);
                    }
                    out.metrics.metric_interned(local, value, time, labels);
                    stats.metrics += 1;
                }
                written_dims = Some(&m.dimensions);
            }
            for l in &t.logs {
                if l.when.as_ref().is_some_and(|w| !w.holds(bag, &mut cel)) {
                    continue;
                }
                let severity = match &l.severity {
                    SeverityOf::Fixed(s) => *s,
                    SeverityOf::Computed(e) => e
                        .eval(bag, &mut cel)
                        .and_then(|o| sextant_batch::Severity::parse(&o.text()))
                        .unwrap_or(sextant_batch::Severity::Info),
                };
                fields.clear();
                for (k, e) in &l.fields {
                    if let Some(v) = e.eval(bag, &mut cel) {
                        fields.push((k.as_str(), v));
                    }
                }
                for &a in &t.targets {
                    outs[a].logs.log(
                        &l.name,
                        severity,
                        time,
                        fields.iter().map(|(k, v)| (*k, batch_value(v))),
                    );
                    stats.logs += 1;
                }
            }
            if let Some(tr) = &t.trace {
                if tr.when.as_ref().is_some_and(|w| !w.holds(bag, &mut cel)) {
                    continue;
                }
                match span(tr, bag, &mut cel) {
                    SpanResult::Span(p) => {
                        let s = Span {
                            trace_id: p.ids.trace_id,
                            span_id: p.ids.span_id,
                            parent_id: p.ids.parent_id,
                            name: &p.name,
                            kind: tr.kind,
                            start_nanos: p.start,
                            end_nanos: p.end,
                            flags: p.flags,
                            service: &p.service,
                            peer_service: &p.peer,
                        };
                        let tags = &p.tags;
                        for &a in &t.targets {
                            outs[a]
                                .spans
                                .span(&s, tags.iter().map(|(k, v)| (*k, batch_value(v))));
                            stats.spans += 1;
                        }
                    }
                    SpanResult::Untraced => stats.untraced += 1,
                    SpanResult::Failed => stats.failures += 1,
                }
            }
        }
        stats
    }
}

impl Batches {
    /// Records written and not yet taken.
    pub fn pending(&self) -> usize {
        self.out
            .iter()
            .map(|o| o.metrics.len() + o.logs.len() + o.spans.len())
            .sum()
    }

    /// Finishes the non-empty segments and hands them out; the writers are reset for the next report.
    pub fn take(&mut self) -> Vec<Segment> {
        let mut segments = Vec::new();
        for (adapter, o) in self.out.iter_mut().enumerate() {
            for (kind, w) in [
                (BatchKind::Metrics, &mut o.metrics),
                (BatchKind::Logs, &mut o.logs),
                (BatchKind::Spans, &mut o.spans),
            ] {
                if w.is_empty() {
                    continue;
                }
                let records = w.len();
                let mut bytes = Vec::with_capacity(w.encoded_len());
                w.finish_into(&mut bytes);
                segments.push(Segment {
                    adapter,
                    kind,
                    bytes,
                    records,
                });
            }
            o.declared.iter_mut().for_each(|d| *d = u32::MAX);
        }
        self.memo.iter_mut().for_each(Memo::reset);
        segments
    }
}

struct SpanParts<'b> {
    ids: tracectx::TraceIds,
    name: Cow<'b, str>,
    service: Cow<'b, str>,
    peer: Cow<'b, str>,
    start: u64,
    end: u64,
    flags: u8,
    tags: Vec<(&'b str, Out<'b>)>,
}

enum SpanResult<'b> {
    Span(SpanParts<'b>),
    Untraced,
    Failed,
}

fn span<'b>(tr: &'b CompiledTrace, bag: &'b Bag, cel: &mut CelScope<'b>) -> SpanResult<'b> {
    let headers = match attr(bag, "request.headers") {
        Some(Value::StringMap(h)) => h,
        _ => return SpanResult::Untraced,
    };
    let salt = match attr(bag, "request.id") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let Some(ids) = tracectx::from_headers(headers, salt) else {
        return SpanResult::Untraced;
    };
    if !ids.sampled {
        return SpanResult::Untraced;
    }
    let text = |e: &'b crate::eval::Eval, cel: &mut CelScope<'b>| match e.eval(bag, cel) {
        Some(Out::Str(s)) => Some(s),
        _ => None,
    };
    let Some(Out::Time(start)) = tr.start.eval(bag, cel) else {
        return SpanResult::Failed;
    };
    let end = match tr.end.as_ref().and_then(|e| e.eval(bag, cel)) {
        Some(Out::Time(t)) => t,
        _ => match tr.duration.eval(bag, cel) {
            Some(Out::Dur(d)) => start + d,
            _ => start,
        },
    };
    let (Some(name), Some(service)) = (text(&tr.name, cel), text(&tr.service, cel)) else {
        return SpanResult::Failed;
    };
    let peer = text(&tr.peer_service, cel).unwrap_or(Cow::Borrowed(""));
    let mut flags = SPAN_SAMPLED;
    if tr.error.holds(bag, cel) {
        flags |= SPAN_ERROR;
    }
    let tags = tr
        .tags
        .iter()
        .filter_map(|(k, e)| Some((k.as_str(), e.eval(bag, cel)?)))
        .collect();
    SpanResult::Span(SpanParts {
        ids,
        name,
        service,
        peer,
        start: u64::try_from(start).unwrap_or(0),
        end: u64::try_from(end.max(start)).unwrap_or(0),
        flags,
        tags,
    })
}

fn attr<'b>(bag: &'b Bag, name: &str) -> Option<&'b Value> {
    sextant_attributes::lookup(name).and_then(|id: AttrId| bag.get(id))
}

/// The time of a bag's records: `response.time`, else `context.time`, else `request.time`.
fn record_time(bag: &Bag) -> Option<u64> {
    static TIMES: std::sync::LazyLock<Vec<AttrId>> = std::sync::LazyLock::new(|| {
        ["response.time", "context.time", "request.time"]
            .iter()
            .filter_map(|n| sextant_attributes::lookup(n))
            .collect()
    });
    TIMES.iter().find_map(|&id| match bag.get(id) {
        Some(Value::Timestamp(t)) => u64::try_from(t.seconds)
            .ok()
            .map(|s| s * 1_000_000_000 + u64::try_from(t.nanos).unwrap_or(0)),
        _ => None,
    })
}

fn batch_value<'a>(o: &'a Out<'_>) -> sextant_batch::Value<'a> {
    use sextant_batch::Value as V;
    match o {
        Out::Str(s) => V::Str(s),
        Out::Int(i) => V::Int(*i),
        Out::Double(d) => V::Double(*d),
        Out::Bool(b) => V::Bool(*b),
        Out::Time(t) => V::Timestamp(*t),
        Out::Dur(d) => V::Duration(*d),
        Out::Bytes(b) => V::Bytes(b),
        Out::Null => V::Null,
    }
}

/// One request's attributes as an attributes batch, what a policy adapter's `check` receives: every attribute
/// of the bag under its name, an IP address as text, a string map as one field per entry named
/// `ATTRIBUTE[KEY]` (e.g. `request.headers[user-agent]`).
pub fn attributes_batch(bag: &Bag) -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Attributes);
    let mut scalars = Vec::with_capacity(bag.len());
    let mut entries = Vec::new();
    for (id, v) in bag.iter() {
        match v {
            Value::StringMap(m) => entries.extend(
                m.iter()
                    .map(|(k, v)| (format!("{}[{k}]", id.name()), v.as_str())),
            ),
            other => {
                if let Some(o) = out_of(other) {
                    scalars.push((id.name(), o));
                }
            }
        }
    }
    w.attributes(
        scalars.iter().map(|(n, o)| (*n, batch_value(o))).chain(
            entries
                .iter()
                .map(|(n, v)| (n.as_str(), sextant_batch::Value::Str(v))),
        ),
    );
    w.finish()
}
