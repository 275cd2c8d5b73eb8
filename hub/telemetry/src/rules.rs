//! Validation: Telemetry resources compiled against the vocabulary and their Adapter references resolved.
//! Pure: nothing runs, nothing is loaded; `sextant validate` and every reload call it before anything changes.

use std::collections::HashMap;

use hub_config::{ConfigError, ConfigSet, MetricSpec, Resource, TelemetrySpec, TraceSpanKind};
use sextant_batch::{MetricKind, Severity};

use crate::eval::{Eval, Want};

/// A metric family: one name with one kind, label set and buckets across every Telemetry resource.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDef {
    /// Metric name.
    pub name: String,
    /// Kind.
    pub kind: MetricKind,
    /// HELP text.
    pub help: String,
    /// Label names, sorted.
    pub label_names: Vec<String>,
    /// Histogram buckets.
    pub buckets: Vec<f64>,
    /// The resource that defined it first (for error messages).
    pub(crate) defined_by: String,
}

#[derive(Debug)]
pub(crate) struct CompiledMetric {
    pub family: usize,
    /// None: 1.
    pub value: Option<Eval>,
    /// Indexes into [`CompiledTelemetry::dims`], in the family's label order.
    pub dimensions: Vec<usize>,
    pub when: Option<Eval>,
}

#[derive(Debug)]
pub(crate) enum SeverityOf {
    Fixed(Severity),
    Computed(Box<Eval>),
}

#[derive(Debug)]
pub(crate) struct CompiledLog {
    pub name: String,
    pub severity: SeverityOf,
    pub fields: Vec<(String, Eval)>,
    pub when: Option<Eval>,
}

#[derive(Debug)]
pub(crate) struct CompiledTrace {
    pub name: Eval,
    pub kind: sextant_batch::SpanKind,
    pub service: Eval,
    pub peer_service: Eval,
    pub start: Eval,
    pub end: Option<Eval>,
    pub duration: Eval,
    pub error: Eval,
    pub tags: Vec<(String, Eval)>,
    pub when: Option<Eval>,
}

#[derive(Debug)]
pub(crate) struct CompiledTelemetry {
    pub key: String,
    pub selector: Option<Eval>,
    /// The distinct dimension expressions of the resource's metrics (by source text): evaluated once per bag
    /// however many metrics share them (Istio's HTTP metrics share all their labels).
    pub dims: Vec<Eval>,
    pub metrics: Vec<CompiledMetric>,
    pub logs: Vec<CompiledLog>,
    pub trace: Option<CompiledTrace>,
    /// Indexes into [`Rules::adapters`].
    pub targets: Vec<usize>,
}

/// Compiled Telemetry resources: what a reported bag turns into and where it goes.
#[derive(Debug, Default)]
pub struct Rules {
    pub(crate) telemetry: Vec<CompiledTelemetry>,
    /// Every metric family, by index.
    pub families: Vec<FamilyDef>,
    /// The adapters (`namespace/name`) that receive something, by index.
    pub adapters: Vec<String>,
}

impl Rules {
    /// How many Telemetry resources are compiled.
    pub fn len(&self) -> usize {
        self.telemetry.len()
    }

    /// True when there is no Telemetry resource.
    pub fn is_empty(&self) -> bool {
        self.telemetry.is_empty()
    }

    /// The Telemetry resources (`namespace/name`) that send to adapter `index`.
    pub fn sources_of(&self, index: usize) -> impl Iterator<Item = &str> {
        self.telemetry
            .iter()
            .filter(move |t| t.targets.contains(&index))
            .map(|t| t.key.as_str())
    }
}

const KIND: &str = "Telemetry";

/// Compiles every Telemetry resource of `set`. All errors are returned, each naming file, line and field.
pub fn validate(set: &ConfigSet) -> Result<Rules, Vec<ConfigError>> {
    let mut rules = Rules::default();
    let mut errors = Vec::new();
    let adapters: HashMap<String, ()> = set.adapters.iter().map(|a| (a.key(), ())).collect();
    let mut families: HashMap<String, usize> = HashMap::new();
    for t in &set.telemetry {
        match compile(t, &adapters, &mut rules, &mut families) {
            Ok(c) => rules.telemetry.push(c),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

fn compile(
    t: &Resource<TelemetrySpec>,
    adapters: &HashMap<String, ()>,
    rules: &mut Rules,
    families: &mut HashMap<String, usize>,
) -> Result<CompiledTelemetry, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let spec = &t.spec;
    let expr =
        |field: String, src: &str, want: Want, errors: &mut Vec<ConfigError>| -> Option<Eval> {
            Eval::compile(src, want)
                .map_err(|e| errors.push(t.invalid(KIND, &field, e.to_string())))
                .ok()
        };
    let selector = spec
        .selector
        .as_deref()
        .and_then(|s| expr("spec.selector".into(), s, Want::Bool, &mut errors));

    let mut targets = Vec::new();
    for (i, a) in spec.adapters.iter().enumerate() {
        let key = t.qualify(a);
        if !adapters.contains_key(&key) {
            let known: Vec<&str> = adapters.keys().map(String::as_str).collect();
            let hint = match known.iter().min_by_key(|k| strsim::levenshtein(k, &key)) {
                Some(k) if strsim::levenshtein(k, &key) <= 3 => format!(" (did you mean {k}?)"),
                _ if known.is_empty() => " (no Adapter resource is loaded)".to_string(),
                _ => format!(" (known: {})", known.join(", ")),
            };
            errors.push(t.invalid(
                KIND,
                &format!("spec.adapters[{i}]"),
                format!("no Adapter named {key}{hint}"),
            ));
            continue;
        }
        let idx = match rules.adapters.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                rules.adapters.push(key);
                rules.adapters.len() - 1
            }
        };
        if !targets.contains(&idx) {
            targets.push(idx);
        }
    }

    let mut metrics = Vec::new();
    let mut dims: Vec<Eval> = Vec::new();
    for (i, m) in spec.metrics.iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        let family = match family(t, &at, m, rules, families) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let value = match (&m.value, m.kind) {
            (Some(v), _) => expr(format!("{at}.value"), v, Want::Number, &mut errors),
            (None, hub_config::MetricKind::Counter) => None,
            (None, _) => {
                errors.push(t.invalid(
                    KIND,
                    &format!("{at}.value"),
                    "required for GAUGE and HISTOGRAM metrics",
                ));
                None
            }
        };
        let mut dimensions = Vec::with_capacity(m.dimensions.len());
        for (k, v) in &m.dimensions {
            if let Some(d) = dims.iter().position(|d| d.source == *v) {
                dimensions.push(d);
            } else if let Some(e) =
                expr(format!("{at}.dimensions.{k}"), v, Want::Scalar, &mut errors)
            {
                dims.push(e);
                dimensions.push(dims.len() - 1);
            }
        }
        let when = m
            .when
            .as_deref()
            .and_then(|w| expr(format!("{at}.when"), w, Want::Bool, &mut errors));
        metrics.push(CompiledMetric {
            family,
            value,
            dimensions,
            when,
        });
    }

    let mut logs = Vec::new();
    for (i, l) in spec.logs.iter().enumerate() {
        let at = format!("spec.logs[{i}]");
        if l.name.is_empty() {
            errors.push(t.invalid(KIND, &format!("{at}.name"), "a log needs a name"));
        }
        let severity = match l.severity.as_deref() {
            None => SeverityOf::Fixed(Severity::Info),
            Some(s) => match Severity::parse(s) {
                Some(sev) => SeverityOf::Fixed(sev),
                None => match expr(format!("{at}.severity"), s, Want::String, &mut errors) {
                    Some(e) => SeverityOf::Computed(Box::new(e)),
                    None => SeverityOf::Fixed(Severity::Info),
                },
            },
        };
        let fields = l
            .fields
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.clone(),
                    expr(format!("{at}.fields.{k}"), v, Want::Scalar, &mut errors)?,
                ))
            })
            .collect();
        let when = l
            .when
            .as_deref()
            .and_then(|w| expr(format!("{at}.when"), w, Want::Bool, &mut errors));
        logs.push(CompiledLog {
            name: l.name.clone(),
            severity,
            fields,
            when,
        });
    }

    let trace = spec.traces.as_ref().and_then(|tr| {
        let at = "spec.traces";
        let (kind, service, peer) = match tr.kind {
            TraceSpanKind::Server => (
                sextant_batch::SpanKind::Server,
                "destination.service.name",
                "source.workload.name",
            ),
            TraceSpanKind::Client => (
                sextant_batch::SpanKind::Client,
                "source.workload.name",
                "destination.service.name",
            ),
        };
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
        let dflt = |d: &str| format!("has({d}) ? {d} : \"unknown\"");
        let name = expr(
            format!("{at}.name"),
            &or(&tr.name, r#"request.method + " " + request.url_path"#),
            Want::String,
            &mut errors,
        );
        let service = expr(
            format!("{at}.service"),
            &or(&tr.service, &dflt(service)),
            Want::String,
            &mut errors,
        );
        let peer_service = expr(
            format!("{at}.peerService"),
            &or(&tr.peer_service, &dflt(peer)),
            Want::String,
            &mut errors,
        );
        let start = expr(
            format!("{at}.start"),
            &or(&tr.start, "request.time"),
            Want::Timestamp,
            &mut errors,
        );
        let end = match &tr.end {
            Some(e) => expr(format!("{at}.end"), e, Want::Timestamp, &mut errors),
            None => expr(
                format!("{at}.end"),
                "response.time",
                Want::Timestamp,
                &mut errors,
            ),
        };
        let duration = expr(
            format!("{at}.end"),
            "response.duration",
            Want::Number,
            &mut errors,
        );
        let error = expr(
            format!("{at}.error"),
            &or(&tr.error, "response.code >= 500"),
            Want::Bool,
            &mut errors,
        );
        let tags = tr
            .tags
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.clone(),
                    expr(format!("{at}.tags.{k}"), v, Want::Scalar, &mut errors)?,
                ))
            })
            .collect();
        let when = tr
            .when
            .as_deref()
            .and_then(|w| expr(format!("{at}.when"), w, Want::Bool, &mut errors));
        Some(CompiledTrace {
            name: name?,
            kind,
            service: service?,
            peer_service: peer_service?,
            start: start?,
            end,
            duration: duration?,
            error: error?,
            tags,
            when,
        })
    });

    if spec.adapters.is_empty() && (!metrics.is_empty() || !logs.is_empty() || trace.is_some()) {
        errors.push(t.invalid(
            KIND,
            "spec.adapters",
            "name at least one Adapter to deliver to",
        ));
    }
    if errors.is_empty() {
        Ok(CompiledTelemetry {
            key: t.key(),
            selector,
            dims,
            metrics,
            logs,
            trace,
            targets,
        })
    } else {
        Err(errors)
    }
}

fn family(
    t: &Resource<TelemetrySpec>,
    at: &str,
    m: &MetricSpec,
    rules: &mut Rules,
    families: &mut HashMap<String, usize>,
) -> Result<usize, ConfigError> {
    if !valid_name(&m.name, true) {
        return Err(t.invalid(
            KIND,
            &format!("{at}.name"),
            format!(
                "{:?} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                m.name
            ),
        ));
    }
    for k in m.dimensions.keys() {
        if !valid_name(k, false) || k.starts_with("__") {
            return Err(t.invalid(
                KIND,
                &format!("{at}.dimensions.{k}"),
                format!("{k:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
            ));
        }
    }
    if m.buckets.iter().any(|b| !b.is_finite()) || m.buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(t.invalid(
            KIND,
            &format!("{at}.buckets"),
            "buckets must be finite and strictly ascending",
        ));
    }
    let def = FamilyDef {
        name: m.name.clone(),
        kind: match m.kind {
            hub_config::MetricKind::Counter => MetricKind::Counter,
            hub_config::MetricKind::Gauge => MetricKind::Gauge,
            hub_config::MetricKind::Histogram => MetricKind::Histogram,
        },
        help: m.help.clone().unwrap_or_default(),
        label_names: m.dimensions.keys().cloned().collect(),
        buckets: m.buckets.clone(),
        defined_by: t.key(),
    };
    match families.get(&m.name) {
        Some(&i) => {
            let old = &rules.families[i];
            if old.kind != def.kind
                || old.label_names != def.label_names
                || old.buckets != def.buckets
            {
                return Err(t.invalid(
                    KIND,
                    &format!("{at}.name"),
                    format!(
                        "metric {} is also defined by {} with a different kind, dimensions or buckets",
                        m.name, old.defined_by
                    ),
                ));
            }
            Ok(i)
        }
        None => {
            rules.families.push(def);
            families.insert(m.name.clone(), rules.families.len() - 1);
            Ok(rules.families.len() - 1)
        }
    }
}

fn valid_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}
