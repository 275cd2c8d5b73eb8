//! A bounded in-memory window of recent telemetry, what the hub's query API (and the dashboard) reads
//! without any other backend: fed by every reported request and every decision the hub makes, it keeps
//!
//! - per edge of the service graph (source workload → destination workload of a service, from the
//!   destination sidecar's reports) a ring of per-step buckets: requests, 5xx, 403, 429, mTLS, and a
//!   latency histogram, from which rates, error rates and p50/p90/p99 come ([`series`]);
//! - the most recent decisions with the policy and rule that decided, and counts per policy, rule and
//!   outcome;
//! - rate-limit refusals per RateLimit over the window;
//! - recent traces: the spans of reported requests grouped by trace id.
//!
//! Memory is fixed by [`WindowOptions`]: a new edge, decision count, trace or span past its limit is not
//! kept, and each such eviction is counted ([`Window::evictions`]), never an unbounded map.

pub mod series;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sextant_attributes::{Bag, Value, attr};

use series::{Bucket, Outcome, Series};

/// Limits and resolution of the window.
#[derive(Clone, Debug)]
pub struct WindowOptions {
    /// How far back it reaches.
    pub span: Duration,
    /// The resolution of its series.
    pub step: Duration,
    /// Graph edges kept at most.
    pub max_edges: usize,
    /// Recent decisions kept.
    pub max_decisions: usize,
    /// Distinct (policy, rule, outcome) counts kept.
    pub max_decision_counts: usize,
    /// RateLimits whose refusals are counted.
    pub max_rate_limits: usize,
    /// Traces kept.
    pub max_traces: usize,
    /// Spans kept per trace.
    pub max_spans: usize,
}

impl Default for WindowOptions {
    fn default() -> WindowOptions {
        WindowOptions {
            span: Duration::from_secs(600),
            step: Duration::from_secs(5),
            max_edges: 2_000,
            max_decisions: 500,
            max_decision_counts: 1_000,
            max_rate_limits: 500,
            max_traces: 200,
            max_spans: 64,
        }
    }
}

/// A workload as the graph names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Workload {
    /// Its namespace (`unknown` when not reported).
    pub namespace: String,
    /// Its name (`unknown` for callers outside the mesh).
    pub name: String,
    /// Its `version` label (`unknown` when it has none).
    pub version: String,
}

impl Workload {
    /// `namespace/name/version`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.version)
    }
}

/// The node a caller is drawn as: its workload in the version reported, or, where its version is unknown
/// (a server's proxy that knows only its caller's workload, as Envoy's access log), the one version its
/// workload serves in when there is only one.
pub struct Callers<'a>(HashMap<(&'a str, &'a str), Vec<&'a str>>);

impl<'a> Callers<'a> {
    /// From the workloads that serve (the edges' destinations).
    pub fn new(destinations: impl IntoIterator<Item = &'a Workload>) -> Callers<'a> {
        let mut versions: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for d in destinations {
            let known = versions.entry((&d.namespace, &d.name)).or_default();
            if !known.contains(&d.version.as_str()) {
                known.push(&d.version);
            }
        }
        Callers(versions)
    }

    /// The node of caller `w`.
    pub fn node(&self, w: &Workload) -> Workload {
        match self
            .0
            .get(&(w.namespace.as_str(), w.name.as_str()))
            .map(Vec::as_slice)
        {
            Some([only]) if w.version == "unknown" => Workload {
                version: (*only).to_string(),
                ..w.clone()
            },
            _ => w.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct EdgeKey {
    source: Workload,
    destination: Workload,
    service: String,
    service_namespace: String,
}

/// A decision as the hub made it, for the window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecisionEvent {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// `allow`, `deny` or `rate_limited`.
    pub result: &'static str,
    /// `namespace/name` of the policy whose rule decided (or the RateLimit), empty when none applied.
    pub policy: String,
    /// The rule, `(default)` for a policy's default action, empty when none applied.
    pub rule: String,
    /// The rule's action (`ALLOW`, `DENY`, `AUDIT`), or `RATE_LIMIT`.
    pub action: String,
    /// google.rpc code.
    pub code: i32,
    /// HTTP status answered.
    pub http_status: u16,
    /// The message for the caller.
    pub message: String,
    /// The destination service checked.
    pub service: String,
    /// The caller: its SPIFFE principal, else its workload, else `unknown`.
    pub source: String,
    /// The request's path, when it had one.
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct DecisionKey {
    result: &'static str,
    policy: String,
    rule: String,
    action: String,
}

/// One span of a trace.
#[derive(Clone, Debug, Serialize)]
pub struct SpanRecord {
    /// This hop's span id (hex).
    pub span_id: String,
    /// Its parent's (hex), empty for a root.
    pub parent_id: String,
    /// The workload that served it.
    pub workload: Workload,
    /// The service called.
    pub service: String,
    /// `METHOD path`.
    pub name: String,
    /// Start, seconds since the Unix epoch.
    pub start: f64,
    /// Milliseconds.
    pub duration_ms: f64,
    /// Response code.
    pub code: i64,
}

struct Trace {
    id: String,
    spans: Vec<SpanRecord>,
}

/// Evictions by kind, since start.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Evictions {
    /// Reports of an edge not kept (the edge limit was reached).
    pub edges: u64,
    /// Decisions pushed out of the recent list (expected: it is a ring).
    pub decisions: u64,
    /// Decision counts not kept.
    pub decision_counts: u64,
    /// Rate-limit refusals not counted.
    pub rate_limits: u64,
    /// Traces pushed out (expected: a ring).
    pub traces: u64,
    /// Spans not kept (their trace was full).
    pub spans: u64,
}

#[derive(Default)]
struct Inner {
    edges: HashMap<EdgeKey, Series>,
    decisions: VecDeque<DecisionEvent>,
    decision_counts: HashMap<DecisionKey, u64>,
    rate_limits: HashMap<String, Series>,
    traces: HashMap<String, Trace>,
    /// Trace ids, oldest first.
    trace_order: VecDeque<String>,
    evictions: Evictions,
    last_sweep: u64,
}

/// The window. Cheap to feed: one short lock per report or decision.
pub struct Window {
    options: WindowOptions,
    steps: usize,
    inner: Mutex<Inner>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn text(bag: &Bag, id: sextant_attributes::AttrId) -> Option<&str> {
    match bag.get(id) {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn label<'a>(bag: &'a Bag, id: sextant_attributes::AttrId, key: &str) -> Option<&'a str> {
    match bag.get(id) {
        Some(Value::StringMap(m)) => m.get(key).map(String::as_str),
        _ => None,
    }
}

fn workload(bag: &Bag, source: bool) -> Workload {
    let (name, namespace, labels) = if source {
        (
            attr!("source.workload.name", String),
            attr!("source.workload.namespace", String),
            attr!("source.labels", StringMap),
        )
    } else {
        (
            attr!("destination.workload.name", String),
            attr!("destination.workload.namespace", String),
            attr!("destination.labels", StringMap),
        )
    };
    let unknown = || "unknown".to_string();
    Workload {
        namespace: text(bag, namespace).map_or_else(unknown, str::to_string),
        name: text(bag, name).map_or_else(unknown, str::to_string),
        version: label(bag, labels, "version").map_or_else(unknown, str::to_string),
    }
}

impl Window {
    /// An empty window.
    pub fn new(options: WindowOptions) -> Window {
        let steps = usize::try_from(options.span.as_millis() / options.step.as_millis().max(1))
            .unwrap_or(1)
            .max(1);
        Window {
            options,
            steps,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn step_of(&self, secs: f64) -> u64 {
        (secs / self.options.step.as_secs_f64()) as u64
    }

    /// The window's options.
    pub fn options(&self) -> &WindowOptions {
        &self.options
    }

    /// Takes in one reported request. Only the destination's report (inbound) counts for the graph, so a
    /// request seen by both sidecars is counted once; both sidecars' spans join its trace.
    pub fn observe(&self, bag: &Bag) {
        let inbound = text(bag, attr!("context.reporter.kind", String)) == Some("inbound");
        let code = match bag.get(attr!("response.code", Int64)) {
            Some(Value::Int64(c)) => *c,
            _ => return,
        };
        let latency = match bag.get(attr!("response.duration", Duration)) {
            Some(Value::Duration(d)) => Some(Duration::new(
                u64::try_from(d.seconds).unwrap_or(0),
                u32::try_from(d.nanos).unwrap_or(0),
            )),
            _ => None,
        };
        let now = now_secs();
        let step = self.step_of(now);
        let destination = workload(bag, false);
        let service = text(bag, attr!("destination.service.name", String))
            .unwrap_or("unknown")
            .to_string();
        let span = self.span_of(bag, &destination, &service, code, latency, now);
        let mut inner = self.lock();
        self.sweep(&mut inner, step);
        if inbound {
            let grpc =
                matches!(text(bag, attr!("response.grpc_status", String)), Some(s) if s != "0");
            let outcome = Outcome {
                error: code >= 500 || grpc,
                denied: code == 403,
                limited: code == 429,
                mtls: matches!(
                    bag.get(attr!("connection.mtls", Bool)),
                    Some(Value::Bool(true))
                ),
                latency,
            };
            let key = EdgeKey {
                source: workload(bag, true),
                service_namespace: text(bag, attr!("destination.service.namespace", String))
                    .unwrap_or(&destination.namespace)
                    .to_string(),
                destination,
                service,
            };
            let limit = self.options.max_edges;
            let steps = self.steps;
            let known = inner.edges.len();
            match inner.edges.get_mut(&key) {
                Some(s) => s.record(step, outcome),
                None if known < limit => {
                    let mut s = Series::new(steps);
                    s.record(step, outcome);
                    inner.edges.insert(key, s);
                }
                None => inner.evictions.edges += 1,
            }
        }
        if let Some((trace_id, record)) = span {
            self.keep_span(&mut inner, trace_id, record);
        }
    }

    fn span_of(
        &self,
        bag: &Bag,
        destination: &Workload,
        service: &str,
        code: i64,
        latency: Option<Duration>,
        now: f64,
    ) -> Option<(String, SpanRecord)> {
        let Some(Value::StringMap(headers)) = bag.get(attr!("request.headers", StringMap)) else {
            return None;
        };
        let context = sextant_tracectx::read(|n| headers.get(n).map(String::as_str))?;
        // Only sampled traces: the others are context without a trace anyone keeps (and most requests).
        if !context.sampled {
            return None;
        }
        let duration_ms = latency.map_or(0.0, |l| l.as_secs_f64() * 1000.0);
        let method = text(bag, attr!("request.method", String)).unwrap_or("GET");
        let path = text(bag, attr!("request.url_path", String)).unwrap_or("/");
        let outbound = text(bag, attr!("context.reporter.kind", String)) == Some("outbound");
        let served_by = if outbound {
            workload(bag, true)
        } else {
            destination.clone()
        };
        Some((
            sextant_tracectx::hex(&context.trace_id),
            SpanRecord {
                span_id: sextant_tracectx::hex(&context.span_id),
                parent_id: context
                    .parent_id
                    .map(|p| sextant_tracectx::hex(&p))
                    .unwrap_or_default(),
                workload: served_by,
                service: service.to_string(),
                name: format!("{}{method} {path}", if outbound { "→ " } else { "" }),
                // When the request started, as its sidecar saw it (reports arrive in batches, later).
                start: match bag.get(attr!("request.time", Timestamp)) {
                    Some(Value::Timestamp(t)) => t.seconds as f64 + f64::from(t.nanos) / 1e9,
                    _ => now - duration_ms / 1000.0,
                },
                duration_ms,
                code,
            },
        ))
    }

    fn keep_span(&self, inner: &mut Inner, trace_id: String, record: SpanRecord) {
        if let Some(t) = inner.traces.get_mut(&trace_id) {
            if t.spans.len() < self.options.max_spans {
                t.spans.push(record);
            } else {
                inner.evictions.spans += 1;
            }
            return;
        }
        if inner.trace_order.len() >= self.options.max_traces
            && let Some(oldest) = inner.trace_order.pop_front()
        {
            inner.traces.remove(&oldest);
            inner.evictions.traces += 1;
        }
        inner.trace_order.push_back(trace_id.clone());
        inner.traces.insert(
            trace_id.clone(),
            Trace {
                id: trace_id,
                spans: vec![record],
            },
        );
    }

    /// Edges without traffic for longer than the window go (at most once a step).
    fn sweep(&self, inner: &mut Inner, step: u64) {
        if inner.last_sweep == step {
            return;
        }
        inner.last_sweep = step;
        let oldest = step.saturating_sub(self.steps as u64);
        inner.edges.retain(|_, s| s.last_step() > oldest);
        inner.rate_limits.retain(|_, s| s.last_step() > oldest);
    }

    /// Takes in one decision.
    pub fn decision(&self, event: DecisionEvent) {
        let step = self.step_of(event.time);
        let mut inner = self.lock();
        self.sweep(&mut inner, step);
        let key = DecisionKey {
            result: event.result,
            policy: event.policy.clone(),
            rule: event.rule.clone(),
            action: event.action.clone(),
        };
        let known = inner.decision_counts.len();
        match inner.decision_counts.get_mut(&key) {
            Some(n) => *n += 1,
            None if known < self.options.max_decision_counts => {
                inner.decision_counts.insert(key, 1);
            }
            None => inner.evictions.decision_counts += 1,
        }
        if event.result == "rate_limited" {
            let steps = self.steps;
            let known = inner.rate_limits.len();
            match inner.rate_limits.get_mut(&event.policy) {
                Some(s) => s.record(step, Outcome::default()),
                None if known < self.options.max_rate_limits => {
                    let mut s = Series::new(steps);
                    s.record(step, Outcome::default());
                    inner.rate_limits.insert(event.policy.clone(), s);
                }
                None => inner.evictions.rate_limits += 1,
            }
        }
        if inner.decisions.len() >= self.options.max_decisions {
            inner.decisions.pop_front();
            inner.evictions.decisions += 1;
        }
        inner.decisions.push_back(event);
    }

    /// Evictions so far.
    pub fn evictions(&self) -> Evictions {
        self.lock().evictions
    }

    /// The steps `(from, to)` of the last `window` (at most the whole span).
    fn range(&self, window: Duration) -> (u64, u64, f64) {
        let to = self.step_of(now_secs());
        let n = (window.min(self.options.span).as_secs_f64() / self.options.step.as_secs_f64())
            .ceil()
            .max(1.0) as u64;
        (
            to + 1 - n.min(to + 1),
            to,
            n as f64 * self.options.step.as_secs_f64(),
        )
    }

    /// The seconds the data in `from..=to` covers: from the earliest step with traffic (a window reaching
    /// back before the hub started, or before any traffic, is not averaged over time without data).
    fn covered<'a>(&self, series: impl Iterator<Item = &'a Series>, from: u64, to: u64) -> f64 {
        let first = series
            .filter_map(|s| s.first_step_since(from))
            .min()
            .unwrap_or(to);
        (to + 1 - first.min(to)) as f64 * self.options.step.as_secs_f64()
    }

    /// The service graph over the last `window`: workloads as nodes, caller → workload edges per service.
    pub fn graph(&self, window: Duration) -> serde_json::Value {
        let (from, to, _) = self.range(window);
        let inner = self.lock();
        let secs = self.covered(inner.edges.values(), from, to);
        let callers = Callers::new(inner.edges.keys().map(|k| &k.destination));
        let mut nodes: HashMap<String, (Workload, Bucket, Vec<String>)> = HashMap::new();
        let mut edges = Vec::new();
        for (key, series) in &inner.edges {
            let b = series.sum(from, to);
            if b.requests == 0 {
                continue;
            }
            let source = callers.node(&key.source);
            nodes
                .entry(source.id())
                .or_insert_with(|| (source.clone(), Bucket::default(), Vec::new()));
            let node = nodes
                .entry(key.destination.id())
                .or_insert_with(|| (key.destination.clone(), Bucket::default(), Vec::new()));
            node.1.add(&b);
            if !node.2.contains(&key.service) {
                node.2.push(key.service.clone());
            }
            edges.push(serde_json::json!({
                "source": source.id(),
                "destination": key.destination.id(),
                "service": key.service,
                "service_namespace": key.service_namespace,
                "stats": stats(&b, secs),
            }));
        }
        let mut nodes: Vec<serde_json::Value> = nodes
            .into_iter()
            .map(|(id, (w, b, services))| {
                serde_json::json!({
                    "id": id, "namespace": w.namespace, "workload": w.name, "version": w.version,
                    "services": services, "stats": stats(&b, secs),
                })
            })
            .collect();
        nodes.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        edges.sort_by(|a, b| {
            (a["source"].as_str(), a["destination"].as_str())
                .cmp(&(b["source"].as_str(), b["destination"].as_str()))
        });
        serde_json::json!({"window_seconds": secs, "nodes": nodes, "edges": edges})
    }

    /// Each destination service over the last `window`: its traffic, and per version.
    pub fn services(&self, window: Duration) -> serde_json::Value {
        let (from, to, _) = self.range(window);
        let inner = self.lock();
        let secs = self.covered(inner.edges.values(), from, to);
        let mut by: HashMap<(String, String), (Bucket, HashMap<String, Bucket>)> = HashMap::new();
        for (key, series) in &inner.edges {
            let b = series.sum(from, to);
            if b.requests == 0 {
                continue;
            }
            let entry = by
                .entry((key.service_namespace.clone(), key.service.clone()))
                .or_default();
            entry.0.add(&b);
            entry
                .1
                .entry(key.destination.version.clone())
                .or_default()
                .add(&b);
        }
        let mut out: Vec<serde_json::Value> = by
            .into_iter()
            .map(|((namespace, name), (total, versions))| {
                let mut versions: Vec<serde_json::Value> = versions
                    .into_iter()
                    .map(|(v, b)| serde_json::json!({"version": v, "stats": stats(&b, secs)}))
                    .collect();
                versions.sort_by(|a, b| a["version"].as_str().cmp(&b["version"].as_str()));
                serde_json::json!({"namespace": namespace, "name": name, "stats": stats(&total, secs), "versions": versions})
            })
            .collect();
        out.sort_by(|a, b| {
            (a["namespace"].as_str(), a["name"].as_str())
                .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
        });
        serde_json::json!({"window_seconds": secs, "services": out})
    }

    /// Rate, errors and duration of service `namespace/name`, per step over the last `window`.
    pub fn red(&self, namespace: &str, name: &str, window: Duration) -> serde_json::Value {
        let (from, to, secs) = self.range(window);
        let step = self.options.step.as_secs_f64();
        let inner = self.lock();
        let mut steps: Vec<Bucket> = (from..=to)
            .map(|s| Bucket {
                step: s,
                ..Bucket::default()
            })
            .collect();
        for (key, series) in &inner.edges {
            if key.service == name && key.service_namespace == namespace {
                for (acc, b) in steps.iter_mut().zip(series.steps(from, to)) {
                    acc.add(&b);
                }
            }
        }
        let points: Vec<serde_json::Value> = steps
            .iter()
            .map(|b| {
                let mut s = stats(b, step);
                s["time"] = serde_json::json!(b.step as f64 * step);
                s
            })
            .collect();
        serde_json::json!({"namespace": namespace, "name": name, "window_seconds": secs, "step_seconds": step, "points": points})
    }

    /// The `limit` most recent decisions (newest first) and the counts per policy, rule and outcome.
    pub fn decisions(&self, limit: usize) -> serde_json::Value {
        let inner = self.lock();
        let recent: Vec<&DecisionEvent> = inner.decisions.iter().rev().take(limit).collect();
        let mut counts: Vec<serde_json::Value> = inner
            .decision_counts
            .iter()
            .map(|(k, n)| {
                serde_json::json!({"result": k.result, "policy": k.policy, "rule": k.rule, "action": k.action, "count": n})
            })
            .collect();
        counts.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
        serde_json::json!({"recent": recent, "counts": counts})
    }

    /// Refusals per RateLimit over the last `window`.
    pub fn rate_limits(&self, window: Duration) -> serde_json::Value {
        let (from, to, _) = self.range(window);
        let inner = self.lock();
        let secs = self.covered(inner.edges.values(), from, to);
        let mut out: Vec<serde_json::Value> = inner
            .rate_limits
            .iter()
            .map(|(name, s)| {
                let b = s.sum(from, to);
                serde_json::json!({"ratelimit": name, "refused": b.requests, "per_second": b.requests as f64 / secs})
            })
            .filter(|v| v["refused"].as_u64() > Some(0))
            .collect();
        out.sort_by(|a, b| b["refused"].as_u64().cmp(&a["refused"].as_u64()));
        serde_json::json!({"window_seconds": secs, "rate_limits": out})
    }

    /// The `limit` most recent traces, newest first, each with its spans by start.
    pub fn traces(&self, limit: usize) -> serde_json::Value {
        let inner = self.lock();
        let out: Vec<serde_json::Value> = inner
            .trace_order
            .iter()
            .rev()
            .filter_map(|id| inner.traces.get(id))
            .take(limit)
            .map(|t| {
                let mut spans = t.spans.clone();
                spans.sort_by(|a, b| a.start.total_cmp(&b.start));
                let start = spans.iter().map(|s| s.start).fold(f64::INFINITY, f64::min);
                let end = spans
                    .iter()
                    .map(|s| s.start + s.duration_ms / 1000.0)
                    .fold(0.0, f64::max);
                let root = spans
                    .iter()
                    .find(|s| !spans.iter().any(|p| p.span_id == s.parent_id))
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                serde_json::json!({
                    "trace_id": t.id, "root": root, "start": start,
                    "duration_ms": ((end - start) * 1000.0).max(0.0), "spans": spans,
                })
            })
            .collect();
        serde_json::json!({"traces": out})
    }

    /// How full it is, and its evictions.
    pub fn status(&self) -> serde_json::Value {
        let inner = self.lock();
        serde_json::json!({
            "edges": inner.edges.len(), "max_edges": self.options.max_edges,
            "decisions": inner.decisions.len(), "max_decisions": self.options.max_decisions,
            "traces": inner.traces.len(), "max_traces": self.options.max_traces,
            "span_seconds": self.options.span.as_secs_f64(), "step_seconds": self.options.step.as_secs_f64(),
            "evictions": inner.evictions,
        })
    }
}

/// Rates over `secs` seconds and latency quantiles of `b`.
fn stats(b: &Bucket, secs: f64) -> serde_json::Value {
    let share = |n: u64| {
        if b.requests == 0 {
            0.0
        } else {
            n as f64 / b.requests as f64
        }
    };
    serde_json::json!({
        "requests": b.requests,
        "rps": b.requests as f64 / secs.max(f64::EPSILON),
        "error_rate": share(b.errors),
        "denied_rate": share(b.denied),
        "rate_limited_rate": share(b.limited),
        "mtls_share": share(b.mtls),
        "p50_ms": b.quantile_ms(0.5),
        "p90_ms": b.quantile_ms(0.9),
        "p99_ms": b.quantile_ms(0.99),
    })
}

#[cfg(test)]
mod tests;
