//! Prometheus text exposition read into metric families, for both dialects a role renders: OpenMetrics
//! (prometheus-client: `# TYPE x counter` with samples `x_total`, `# UNIT`, `# EOF`) and the 0.0.4 text
//! format (Envoy-style stats: `# TYPE x_total counter` with samples `x_total`, samples without `# TYPE`).
//!
//! Lenient and bounded: a line that does not parse is skipped and counted, never an error; samples past
//! [`MAX_SAMPLES`] and families past [`MAX_FAMILIES`] are skipped and counted. Sample timestamps and
//! exemplars are ignored (the export stamps every point with its own time).

use std::collections::HashMap;

/// Samples kept per render at most; the rest are skipped (counted in [`Parsed::over_cap`]).
pub(super) const MAX_SAMPLES: usize = 100_000;
/// Families kept per render at most.
pub(super) const MAX_FAMILIES: usize = 20_000;

/// Every suffix a sample name may add to its family's name, the exact name first.
const SUFFIXES: [&str; 9] = [
    "", "_total", "_created", "_bucket", "_sum", "_count", "_info", "_gcount", "_gsum",
];

/// A sample's labels, unescaped, in the order written.
pub(super) type Labels = Vec<(String, String)>;

/// A family's `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics; samples `x_info`).
    Info,
    /// `unknown` (OpenMetrics), `untyped` (0.0.4), or no `# TYPE` at all.
    Unknown,
    /// `stateset`, `gaugehistogram`: read so their samples are not mistaken for others, never exported.
    Other,
}

impl Kind {
    fn from_type(t: &str) -> Option<Self> {
        Some(match t {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "info" => Self::Info,
            "unknown" | "untyped" => Self::Unknown,
            "stateset" | "gaugehistogram" => Self::Other,
            _ => return None,
        })
    }

    /// The suffixes a sample name may add to its family's name, the exact name first.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Self::Counter => &["", "_total", "_created"],
            Self::Gauge | Self::Unknown => &[""],
            Self::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Self::Summary => &["", "_sum", "_count", "_created"],
            Self::Info => &["_info", ""],
            Self::Other => &["", "_bucket", "_gcount", "_gsum", "_created"],
        }
    }
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Sample {
    /// What the sample name adds to the family's (`""`, `_total`, `_bucket`, `_sum`, …).
    pub suffix: &'static str,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// One metric family: its metadata and samples.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Family {
    /// The name `# TYPE` gave (or the sample's, for samples without metadata).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// `# HELP`, unescaped.
    pub help: String,
    /// `# UNIT` (OpenMetrics).
    pub unit: String,
    /// Its samples, in order.
    pub samples: Vec<Sample>,
}

/// What a render held.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    /// The families, in the order they first appeared.
    pub families: Vec<Family>,
    /// Lines that did not parse.
    pub malformed: usize,
    /// Samples (or families) skipped because a cap was reached.
    pub over_cap: usize,
}

/// Reads `text`; never fails.
pub(super) fn parse(text: &str) -> Parsed {
    let mut reader = Reader::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let ok = match line.strip_prefix('#') {
            Some(rest) => reader.comment(rest),
            None => reader.sample(line),
        };
        if !ok {
            reader.parsed.malformed += 1;
        }
    }
    reader.parsed
}

#[derive(Default)]
struct Reader {
    parsed: Parsed,
    /// Index of each family by name, so samples of a family met again join it.
    by_name: HashMap<String, usize>,
    /// The family the last metadata line or sample belonged to.
    current: Option<usize>,
    samples: usize,
}

impl Reader {
    /// A `#` line: `TYPE`, `HELP`, `UNIT` or `EOF`; any other comment is allowed and ignored.
    fn comment(&mut self, rest: &str) -> bool {
        let rest = rest.trim_start();
        let (word, rest) = split_word(rest);
        match word {
            "TYPE" | "HELP" | "UNIT" => {}
            _ => return true,
        }
        let (name, value) = split_word(rest);
        if !is_metric_name(name) {
            return false;
        }
        let kind = match word {
            "TYPE" => match Kind::from_type(value.trim()) {
                Some(kind) => Some(kind),
                None => return false,
            },
            _ => None,
        };
        let Some(i) = self.family(name) else {
            return true;
        };
        let family = &mut self.parsed.families[i];
        match (word, kind) {
            ("TYPE", Some(kind)) if family.samples.is_empty() => family.kind = kind,
            ("TYPE", Some(kind)) => return kind == family.kind,
            ("HELP", _) => family.help = unescape(value),
            _ => family.unit = value.trim().to_string(),
        }
        true
    }

    /// The family named `name`, made (untyped) if new; `None` past the cap.
    fn family(&mut self, name: &str) -> Option<usize> {
        if let Some(&i) = self.by_name.get(name) {
            self.current = Some(i);
            return Some(i);
        }
        if self.parsed.families.len() >= MAX_FAMILIES {
            self.parsed.over_cap += 1;
            return None;
        }
        let i = self.parsed.families.len();
        self.parsed.families.push(Family {
            name: name.to_string(),
            kind: Kind::Unknown,
            help: String::new(),
            unit: String::new(),
            samples: Vec::new(),
        });
        self.by_name.insert(name.to_string(), i);
        self.current = Some(i);
        Some(i)
    }

    /// `name{labels} value [timestamp] [# exemplar]`.
    fn sample(&mut self, line: &str) -> bool {
        let Some((name, labels, value)) = sample_line(line) else {
            return false;
        };
        if self.samples >= MAX_SAMPLES {
            self.parsed.over_cap += 1;
            return true;
        }
        let (i, suffix) = match self.owner(name) {
            Some(owner) => owner,
            None => match self.family(name) {
                Some(i) => (i, ""),
                None => return true,
            },
        };
        self.samples += 1;
        self.parsed.families[i].samples.push(Sample {
            suffix,
            labels,
            value,
        });
        true
    }

    /// The family a sample named `name` belongs to and the suffix it adds: the current family when the
    /// name is its name plus one of its type's suffixes, else a family of exactly that name.
    fn owner(&mut self, name: &str) -> Option<(usize, &'static str)> {
        let belongs = |f: &Family| {
            let tail = name.strip_prefix(f.name.as_str())?;
            f.kind.suffixes().iter().copied().find(|s| *s == tail)
        };
        if let Some(i) = self.current
            && let Some(suffix) = belongs(&self.parsed.families[i])
        {
            return Some((i, suffix));
        }
        // A family met earlier (samples not next to their metadata): by the name, or the name without one
        // of the suffixes samples add.
        let found = SUFFIXES
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .filter_map(|base| self.by_name.get(base).copied())
            .find_map(|i| Some((i, belongs(&self.parsed.families[i])?)))?;
        self.current = Some(found.0);
        Some(found)
    }
}

/// The first whitespace-separated word and the rest (leading whitespace trimmed off the rest).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample line's name, labels and value; `None` if it does not parse.
fn sample_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim_start();
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(end);
    if !is_metric_name(name) {
        return None;
    }
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (read, after) = label_set(after)?;
        labels = read;
        rest = after;
    }
    // The value must be separated from what precedes it; then an optional timestamp, then an optional
    // OpenMetrics exemplar after `#`, both ignored.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut words = rest.split_whitespace();
    let value = parse_value(words.next()?)?;
    match words.next() {
        None => {}
        Some("#") => {}
        Some(ts) => {
            ts.parse::<f64>().ok()?;
            if !matches!(words.next(), None | Some("#")) {
                return None;
            }
        }
    }
    Some((name, labels, value))
}

/// A value as both formats write it (`+Inf`, `-Inf`, `NaN`, decimal and exponent forms).
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) =>
        {
            None
        }
        _ => s.parse().ok(),
    }
}

/// The labels after `{` up to the closing `}`, and what follows it.
fn label_set(mut s: &str) -> Option<(Labels, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim();
        if !is_label_name(name) {
            return None;
        }
        let rest = s[eq + 1..].trim_start().strip_prefix('"')?;
        let (value, rest) = quoted(rest)?;
        labels.push((name.to_string(), value));
        let rest = rest.trim_start();
        s = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.starts_with('}') => rest,
            None => return None,
        };
    }
}

/// A label value after its opening quote, unescaped, and what follows the closing quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// `# HELP` text unescaped (`\\`, `\n`; `\"` too, as OpenMetrics allows it).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}
