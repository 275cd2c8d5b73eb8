//! The metrics registry adapters write into through the `metrics` host interface, exposed in Prometheus text
//! format on the hub's `/metrics`.
//!
//! Families are global (one Prometheus namespace) and identified by a handle; an identical redefinition (by
//! another instance of the same adapter after a restart, or by another adapter) returns the same handle, a
//! conflicting one is refused. Everything is bounded: families, series per family, labels per family, buckets;
//! samples beyond the limits are dropped and counted.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sextant_batch::{MetricKind, SampleReader};

/// Most label names per family.
const MAX_LABELS: usize = 32;
/// Most histogram buckets per family.
const MAX_BUCKETS: usize = 64;
/// Longest label value kept; longer values are cut at a character boundary.
const MAX_LABEL_VALUE: usize = 1024;
/// Prometheus' default histogram buckets, in seconds.
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metric family as an adapter defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDef {
    /// Metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`). A counter is exposed as `<name>_total` unless the name already
    /// ends in `_total`.
    pub name: String,
    /// Description (the `# HELP` line).
    pub help: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Label names, in the order samples give their values.
    pub label_names: Vec<String>,
    /// Histogram bucket upper bounds, ascending; empty: the default buckets. Ignored for other kinds.
    pub buckets: Vec<f64>,
}

/// Why a family could not be defined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefineError {
    /// The metric name is not a valid Prometheus name.
    #[error("invalid metric name {0:?}: expected [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidName(String),
    /// A label name is invalid, reserved or repeated.
    #[error("family {family}: invalid label name {label:?}")]
    InvalidLabel {
        /// The family.
        family: String,
        /// The label name.
        label: String,
    },
    /// Too many labels or buckets, or buckets not ascending and finite.
    #[error("family {family}: {reason}")]
    InvalidShape {
        /// The family.
        family: String,
        /// Why.
        reason: String,
    },
    /// The name (or the name it is exposed under) is taken by a different family.
    #[error("metric {0} is already defined with a different type, help, labels or buckets")]
    Conflict(String),
    /// The registry has reached its family limit.
    #[error("the metrics registry is full ({0} families)")]
    Full(usize),
}

/// What one `record` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Samples applied.
    pub applied: u32,
    /// Samples skipped: unknown or foreign handle, wrong label count, invalid value, series limit.
    pub skipped: u32,
}

/// Samples the registry dropped since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryDrops {
    /// Samples that would have created a series beyond the per-family limit.
    pub series_limit: u64,
    /// Samples with an unknown handle, a wrong label count or an invalid value (negative counter increment,
    /// NaN).
    pub invalid: u64,
}

#[derive(Debug)]
enum Series {
    Scalar(f64),
    Histogram {
        /// Per-bucket (not cumulative) counts; the last slot is +Inf.
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct FamilyState {
    def: FamilyDef,
    /// The name samples are exposed under (`_total` added to counters).
    exposed: String,
    /// Label values (cut to [`MAX_LABEL_VALUE`]) and state of every series, in creation order.
    series: Vec<(Box<[Box<str>]>, Series)>,
    /// Hash of a series' label values (the registry's [`label_hash`]) → its indices in `series` (more than one
    /// only on a collision), so a sample finds its series without allocating.
    index: HashMap<u64, Vec<u32>>,
}

#[derive(Debug, Default)]
struct Inner {
    families: Vec<FamilyState>,
    by_name: HashMap<String, u32>,
    /// Exposed names of every family (so `foo` and `foo_total` counters cannot both exist).
    exposed: HashMap<String, u32>,
}

/// The adapters' metrics. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// Hashes label values for every family, so a label set shared by several families is hashed once.
    hasher: RandomState,
    max_families: usize,
    max_series: usize,
    dropped_series: AtomicU64,
    dropped_invalid: AtomicU64,
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

impl Registry {
    /// An empty registry with at most `max_families` families of at most `max_series` label sets each.
    pub fn new(max_families: usize, max_series: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            hasher: RandomState::new(),
            max_families,
            max_series,
            dropped_series: AtomicU64::new(0),
            dropped_invalid: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters for
        // exposition, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Defines a family, or returns the handle of the identical family that exists.
    pub fn define(&self, mut def: FamilyDef) -> Result<u32, DefineError> {
        if !valid_metric_name(&def.name) {
            return Err(DefineError::InvalidName(def.name));
        }
        if def.label_names.len() > MAX_LABELS {
            return Err(DefineError::InvalidShape {
                family: def.name,
                reason: format!("more than {MAX_LABELS} labels"),
            });
        }
        for (i, label) in def.label_names.iter().enumerate() {
            let reserved = def.kind == MetricKind::Histogram && label == "le";
            if !valid_label_name(label) || reserved || def.label_names[..i].contains(label) {
                return Err(DefineError::InvalidLabel {
                    family: def.name.clone(),
                    label: label.clone(),
                });
            }
        }
        if def.kind == MetricKind::Histogram {
            if def.buckets.is_empty() {
                def.buckets = DEFAULT_BUCKETS.to_vec();
            }
            let ascending = def.buckets.windows(2).all(|w| w[0] < w[1]);
            if def.buckets.len() > MAX_BUCKETS
                || !ascending
                || def.buckets.iter().any(|b| !b.is_finite())
            {
                return Err(DefineError::InvalidShape {
                    family: def.name,
                    reason: format!(
                        "buckets must be at most {MAX_BUCKETS} finite ascending bounds"
                    ),
                });
            }
        } else {
            def.buckets.clear();
        }
        let exposed = if def.kind == MetricKind::Counter && !def.name.ends_with("_total") {
            format!("{}_total", def.name)
        } else {
            def.name.clone()
        };

        let mut inner = self.lock();
        if let Some(&handle) = inner.by_name.get(&def.name) {
            return if inner.families[handle as usize].def == def {
                Ok(handle)
            } else {
                Err(DefineError::Conflict(def.name))
            };
        }
        if inner.exposed.contains_key(&exposed) || inner.exposed.contains_key(&def.name) {
            return Err(DefineError::Conflict(def.name));
        }
        if inner.families.len() >= self.max_families {
            return Err(DefineError::Full(self.max_families));
        }
        let handle = u32::try_from(inner.families.len())
            .map_err(|_| DefineError::Full(self.max_families))?;
        inner.by_name.insert(def.name.clone(), handle);
        inner.exposed.insert(exposed.clone(), handle);
        inner.families.push(FamilyState {
            def,
            exposed,
            series: Vec::new(),
            index: HashMap::new(),
        });
        Ok(handle)
    }

    /// Applies samples in the `sextant-batch` sample encoding. `allowed` says whether the caller may write a
    /// handle (an adapter may only write the families it defined). Samples before a malformed one are applied;
    /// the malformed rest is an error.
    pub fn record(
        &self,
        samples: &[u8],
        allowed: &dyn Fn(u32) -> bool,
    ) -> Result<RecordOutcome, String> {
        let mut out = RecordOutcome::default();
        let mut over_limit = 0u64;
        let mut reader = SampleReader::new(samples);
        let mut labels = Vec::new();
        // Per label set of this call: the hash of its values (computed on first use) and the series it
        // resolved to in the last few families that used it, so a set that repeats, in one family or in
        // several, is read and hashed once. Bounded by the number of sets, which the buffer's size bounds.
        let mut resolved: Vec<Resolved> = Vec::new();
        let mut inner = self.lock();
        let mut result = Ok(());
        while let Some(next) = reader.next_raw() {
            let sample = match next {
                Ok(s) => s,
                Err(e) => {
                    result = Err(format!("malformed samples: {e}"));
                    break;
                }
            };
            let handle = sample.handle;
            let Some(family) = inner
                .families
                .get_mut(handle as usize)
                .filter(|_| allowed(handle))
            else {
                out.skipped += 1;
                continue;
            };
            let set = sample.set.0 as usize;
            if resolved.len() <= set {
                resolved.resize(set + 1, Resolved::default());
            }
            let r = &mut resolved[set];
            let applied = match r.series_in(handle) {
                Some(series) => family.apply_to(series, sample.value),
                None => {
                    reader.labels_of(sample.set, &mut labels);
                    let hash = *r
                        .hash
                        .get_or_insert_with(|| label_hash(&self.hasher, &labels));
                    let (applied, series) =
                        family.apply(&labels, hash, sample.value, self.max_series);
                    if let Some(series) = series {
                        r.remember(handle, series);
                    }
                    applied
                }
            };
            match applied {
                Applied::Yes => out.applied += 1,
                Applied::Invalid => out.skipped += 1,
                Applied::OverLimit => {
                    out.skipped += 1;
                    over_limit += 1;
                }
            }
        }
        drop(inner);
        self.dropped_series.fetch_add(over_limit, Ordering::Relaxed);
        self.dropped_invalid
            .fetch_add(u64::from(out.skipped) - over_limit, Ordering::Relaxed);
        result.map(|()| out)
    }

    /// Samples dropped so far.
    pub fn dropped(&self) -> RegistryDrops {
        RegistryDrops {
            series_limit: self.dropped_series.load(Ordering::Relaxed),
            invalid: self.dropped_invalid.load(Ordering::Relaxed),
        }
    }

    /// Families defined.
    pub fn families(&self) -> usize {
        self.lock().families.len()
    }

    /// Prometheus text exposition format 0.0.4 (counters, gauges and histograms with `# HELP` and `# TYPE`;
    /// families in name order, series in label order).
    pub fn encode(&self) -> String {
        self.encode_as(false)
    }

    /// OpenMetrics text without the closing `# EOF`, to insert into the hub's own OpenMetrics exposition before
    /// its `# EOF`. Counters are declared under their name without `_total`, as OpenMetrics requires.
    pub fn encode_openmetrics(&self) -> String {
        self.encode_as(true)
    }

    fn encode_as(&self, openmetrics: bool) -> String {
        let inner = self.lock();
        let mut order: Vec<&FamilyState> = inner.families.iter().collect();
        order.sort_by(|a, b| a.exposed.cmp(&b.exposed));
        let mut out = String::new();
        for f in order {
            f.encode(&mut out, openmetrics);
        }
        out
    }
}

/// The hash a family indexes its series by: of the label values as kept (cut to [`MAX_LABEL_VALUE`]).
fn label_hash(hasher: &RandomState, labels: &[&str]) -> u64 {
    let mut h = hasher.build_hasher();
    for l in labels {
        cut(l).hash(&mut h);
    }
    h.finish()
}

/// How many families one label set of a `record` call remembers its series in.
const RESOLVED_PER_SET: usize = 4;

/// What one label set of a `record` call resolved to.
#[derive(Clone, Copy, Default)]
struct Resolved {
    hash: Option<u64>,
    /// (family handle, series) of the last families the set was applied to; the oldest is replaced.
    series: [Option<(u32, usize)>; RESOLVED_PER_SET],
    next: usize,
}

impl Resolved {
    fn series_in(&self, handle: u32) -> Option<usize> {
        self.series
            .iter()
            .flatten()
            .find(|(h, _)| *h == handle)
            .map(|(_, s)| *s)
    }

    fn remember(&mut self, handle: u32, series: usize) {
        self.series[self.next] = Some((handle, series));
        self.next = (self.next + 1) % RESOLVED_PER_SET;
    }
}

enum Applied {
    Yes,
    Invalid,
    OverLimit,
}

impl FamilyState {
    /// Applies `value` to the series of `labels`, creating it within the limit; returns the series too.
    /// `hash` is [`label_hash`] of `labels`.
    fn apply(
        &mut self,
        labels: &[&str],
        hash: u64,
        value: f64,
        max_series: usize,
    ) -> (Applied, Option<usize>) {
        if labels.len() != self.def.label_names.len() {
            return (Applied::Invalid, None);
        }
        let found = self.index.get(&hash).and_then(|candidates| {
            candidates.iter().copied().find(|&i| {
                self.series[i as usize]
                    .0
                    .iter()
                    .map(AsRef::as_ref)
                    .eq(labels.iter().map(|l| cut(l)))
            })
        });
        let at = match found {
            Some(i) => i as usize,
            None => {
                if !self.valid(value) {
                    return (Applied::Invalid, None);
                }
                if self.series.len() >= max_series {
                    return (Applied::OverLimit, None);
                }
                let Ok(i) = u32::try_from(self.series.len()) else {
                    return (Applied::OverLimit, None);
                };
                let key: Box<[Box<str>]> = labels.iter().map(|l| Box::from(cut(l))).collect();
                let state = match self.def.kind {
                    MetricKind::Histogram => Series::Histogram {
                        counts: vec![0; self.def.buckets.len() + 1],
                        sum: 0.0,
                        count: 0,
                    },
                    _ => Series::Scalar(0.0),
                };
                self.series.push((key, state));
                self.index.entry(hash).or_default().push(i);
                i as usize
            }
        };
        (self.apply_to(at, value), Some(at))
    }

    /// Whether `value` may be applied to a series of this family.
    fn valid(&self, value: f64) -> bool {
        !value.is_nan()
            && (self.def.kind != MetricKind::Counter || (value >= 0.0 && value.is_finite()))
    }

    /// Applies `value` to the existing series `at`.
    fn apply_to(&mut self, at: usize, value: f64) -> Applied {
        if !self.valid(value) {
            return Applied::Invalid;
        }
        let kind = self.def.kind;
        let Some((_, series)) = self.series.get_mut(at) else {
            return Applied::Invalid;
        };
        match (kind, series) {
            (MetricKind::Counter, Series::Scalar(v)) => *v += value,
            (MetricKind::Gauge, Series::Scalar(v)) => *v = value,
            (_, Series::Histogram { counts, sum, count }) => {
                let slot = self
                    .def
                    .buckets
                    .iter()
                    .position(|&b| value <= b)
                    .unwrap_or(counts.len() - 1);
                counts[slot] += 1;
                *sum += value;
                *count += 1;
            }
            _ => return Applied::Invalid,
        }
        Applied::Yes
    }

    fn encode(&self, out: &mut String, openmetrics: bool) {
        let (type_name, kind) = match self.def.kind {
            MetricKind::Counter if openmetrics => (
                self.exposed.strip_suffix("_total").unwrap_or(&self.exposed),
                "counter",
            ),
            MetricKind::Counter => (self.exposed.as_str(), "counter"),
            MetricKind::Gauge => (self.exposed.as_str(), "gauge"),
            MetricKind::Histogram => (self.exposed.as_str(), "histogram"),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {type_name} {}", escape(&self.def.help, false));
        let _ = writeln!(out, "# TYPE {type_name} {kind}");
        // Series in label order, as Prometheus clients expose them.
        let mut order: Vec<&(Box<[Box<str>]>, Series)> = self.series.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        for (values, series) in order {
            match series {
                Series::Scalar(v) => {
                    out.push_str(&self.exposed);
                    self.labels(out, values, None);
                    let _ = writeln!(out, " {}", number(*v));
                }
                Series::Histogram { counts, sum, count } => {
                    let mut cumulative = 0u64;
                    for (i, c) in counts.iter().enumerate() {
                        cumulative += c;
                        let le = self
                            .def
                            .buckets
                            .get(i)
                            .map_or("+Inf".to_string(), |b| number(*b));
                        let _ = write!(out, "{}_bucket", self.exposed);
                        self.labels(out, values, Some(&le));
                        let _ = writeln!(out, " {cumulative}");
                    }
                    let _ = write!(out, "{}_sum", self.exposed);
                    self.labels(out, values, None);
                    let _ = writeln!(out, " {}", number(*sum));
                    let _ = write!(out, "{}_count", self.exposed);
                    self.labels(out, values, None);
                    let _ = writeln!(out, " {count}");
                }
            }
        }
    }

    fn labels(&self, out: &mut String, values: &[Box<str>], le: Option<&str>) {
        if values.is_empty() && le.is_none() {
            return;
        }
        out.push('{');
        let mut first = true;
        let pairs = self
            .def
            .label_names
            .iter()
            .map(String::as_str)
            .zip(values.iter().map(AsRef::as_ref))
            .chain(le.map(|le| ("le", le)));
        for (name, value) in pairs {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{name}=\"{}\"", escape(value, true));
        }
        out.push('}');
    }
}

/// `s` cut to [`MAX_LABEL_VALUE`] bytes at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_LABEL_VALUE {
        return s;
    }
    let mut end = MAX_LABEL_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
