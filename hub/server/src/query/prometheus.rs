//! The query API answered from Prometheus: PromQL over the metrics every hub of a fleet exports — Istio's
//! standard `istio_requests_total` and `istio_request_duration_milliseconds` (the default Telemetry, on the
//! adapters' exposition) and the hub's own `sextant_hub_ratelimit_denials_total` (admin `/metrics`) — mapped
//! to the same JSON the window answers (`hub-window`), so the dashboard reads either.
//!
//! Like the window, only the destination's reports count (`reporter="destination"`), so a request both
//! sidecars reported counts once. Each answer is three queries at most, run together: the requests by edge
//! and outcome (response code, gRPC status, mTLS), the latency histogram's buckets by edge, and when the
//! data starts (rates are over the part of the window with data, as the window's); the fractions and
//! quantiles are computed here, so that a node's or a service's stats are its edges' summed as the window
//! sums them. What is not in the metrics is `unknown`: the caller's version, unless a Telemetry adds
//! `source_version` (the default one has none).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hub_window::{Callers, Workload};
use serde_json::{Value, json};

use super::client::{Answer, Client, QueryFailed, Series};

/// The labels of a graph edge: caller → workload of a service.
const EDGE: &str = "source_workload, source_workload_namespace, source_version, destination_workload, \
                    destination_workload_namespace, destination_version, destination_service_name";
/// The labels of a request's outcome.
const OUTCOME: &str = "response_code, grpc_response_status, connection_security_policy";
/// Requests as the destination's sidecar reported them.
const REQUESTS: &str = "istio_requests_total";
/// Their latency histogram's buckets.
const LATENCY: &str = "istio_request_duration_milliseconds_bucket";
/// The hub's refusals by RateLimit (`ratelimit="namespace/name"`).
const REFUSALS: &str = "sextant_hub_ratelimit_denials_total";
/// Edges kept at most (the busiest), as the window keeps 2000.
pub const MAX_EDGES: usize = 2_000;
/// RateLimits listed at most, as the window counts 500.
pub const MAX_RATE_LIMITS: usize = 500;
/// Points of a RED answer at most (the window has 120 of 5 s).
const MAX_POINTS: u64 = 120;
/// The shortest RED step.
const MIN_STEP: u64 = 5;
/// The shortest range a RED point's rates are taken over: four samples of a 15 s scrape.
const MIN_RATE_RANGE: u64 = 60;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Edge {
    pub(super) source: Workload,
    pub(super) destination: Workload,
    pub(super) service: String,
    pub(super) service_namespace: String,
}

impl Edge {
    fn of(s: &Series) -> Edge {
        let w = |ns: &str, name: &str, version: &str| Workload {
            namespace: s.label(ns).to_string(),
            name: s.label(name).to_string(),
            version: s.label(version).to_string(),
        };
        let destination = w(
            "destination_workload_namespace",
            "destination_workload",
            "destination_version",
        );
        Edge {
            source: w(
                "source_workload_namespace",
                "source_workload",
                "source_version",
            ),
            // Istio's metrics have no service namespace: the workload's is the service's (bookinfo's
            // services are in their workloads' namespace; the window reads `destination.service.namespace`).
            service_namespace: destination.namespace.clone(),
            destination,
            service: s.label("destination_service_name").to_string(),
        }
    }
}

/// Requests (or a rate of them) and their outcomes, and the latency histogram's cumulative buckets.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    requests: f64,
    errors: f64,
    denied: f64,
    limited: f64,
    mtls: f64,
    /// Cumulative count per upper bound (`le`, its bits: non-negative floats order as their bits).
    latency: BTreeMap<u64, f64>,
}

impl Counts {
    /// Adds a series of requests with outcome labels, `value` of them.
    fn outcome(&mut self, s: &Series, value: f64) {
        let code: i64 = s.label("response_code").parse().unwrap_or(0);
        let grpc = !matches!(s.label("grpc_response_status"), "0" | "unknown");
        self.requests += value;
        if code >= 500 || grpc {
            self.errors += value;
        }
        if code == 403 {
            self.denied += value;
        }
        if code == 429 {
            self.limited += value;
        }
        if s.label("connection_security_policy") == "mutual_tls" {
            self.mtls += value;
        }
    }

    /// Adds a histogram bucket series (`le`), `value` observations at or under its bound.
    fn bucket(&mut self, s: &Series, value: f64) {
        if let Ok(le) = s.label("le").parse::<f64>()
            && le >= 0.0
        {
            *self.latency.entry(le.to_bits()).or_default() += value;
        }
    }

    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.denied += other.denied;
        self.limited += other.limited;
        self.mtls += other.mtls;
        for (le, n) in &other.latency {
            *self.latency.entry(*le).or_default() += n;
        }
    }

    /// The `q` quantile in milliseconds, interpolated linearly within its bucket as Prometheus's
    /// `histogram_quantile` does (the lowest bucket from 0, the unbounded one answering its lower bound);
    /// `None` without observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = Vec::with_capacity(self.latency.len());
        for (le, n) in &self.latency {
            // Cumulative counts from several scrapes may dip; they cannot.
            let n = buckets.last().map_or(*n, |(_, prev)| n.max(*prev));
            buckets.push((f64::from_bits(*le), n));
        }
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for (le, n) in buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let share = if n > lower.1 {
                    (rank - lower.1) / (n - lower.1)
                } else {
                    0.0
                };
                return Some(lower.0 + (le - lower.0) * share.clamp(0.0, 1.0));
            }
            lower = (le, n);
        }
        Some(lower.0)
    }

    /// The window's `stats` over `secs` seconds: requests (Prometheus's `increase` extrapolates: rounded,
    /// and 1 for any traffic at all), rates, fractions and quantiles.
    pub fn stats(&self, secs: f64) -> Value {
        let share = |n: f64| {
            if self.requests > 0.0 {
                (n / self.requests).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let requests = if self.requests > 0.0 {
            self.requests.round().max(1.0) as u64
        } else {
            0
        };
        json!({
            "requests": requests,
            "rps": self.requests / secs.max(f64::EPSILON),
            "error_rate": share(self.errors),
            "denied_rate": share(self.denied),
            "rate_limited_rate": share(self.limited),
            "mtls_share": share(self.mtls),
            "p50_ms": self.quantile_ms(0.5),
            "p90_ms": self.quantile_ms(0.9),
            "p99_ms": self.quantile_ms(0.99),
        })
    }
}

/// A PromQL string literal of `s` (JSON's escapes are Go's, which PromQL reads).
fn literal(s: &str) -> String {
    Value::from(s).to_string()
}

/// `sum by (…) (increase(METRIC{reporter="destination",EXTRA}[RANGE])) > 0`, or `rate` for `function`.
fn inbound(function: &str, metric: &str, extra: &str, by: &str, range: u64) -> String {
    format!("sum by ({by}) ({function}({metric}{{reporter=\"destination\"{extra}}}[{range}s])) > 0")
}

/// The instant queries of the graph and services: requests by edge and outcome, latency by edge.
pub fn edge_queries(window: u64) -> (String, String) {
    (
        inbound(
            "increase",
            REQUESTS,
            "",
            &format!("{EDGE}, {OUTCOME}"),
            window,
        ),
        inbound("increase", LATENCY, "", &format!("{EDGE}, le"), window),
    )
}

/// The range queries of service `namespace/name`'s RED: requests per second by outcome, latency.
pub fn red_queries(namespace: &str, name: &str, range: u64) -> (String, String) {
    let only = format!(
        ",destination_service_name={},destination_workload_namespace={}",
        literal(name),
        literal(namespace)
    );
    (
        inbound("rate", REQUESTS, &only, OUTCOME, range),
        inbound("rate", LATENCY, &only, "le", range),
    )
}

/// The instant query of the refusals per RateLimit.
pub fn refusals_query(window: u64) -> String {
    format!("topk({MAX_RATE_LIMITS}, sum by (ratelimit) (increase({REFUSALS}[{window}s])) > 0)")
}

/// The instant query of when the mesh's data starts in the last `window` seconds: the first of its
/// `step`-second steps at which any request series existed.
pub fn start_query(window: u64, step: u64) -> String {
    format!(
        "min_over_time(timestamp(count({REQUESTS}{{reporter=\"destination\"}}))[{window}s:{step}s])"
    )
}

/// The seconds of the last `window` the data covers, from the answer to [`start_query`] at `time`: as the
/// window's, rates are over the part of the window that has data (from the first step with any, the one
/// under way included), not diluted by the time before a mesh (or its Prometheus) started. No step with
/// data yet (none at all, or only since the step under way began) is that one step, as in the window.
pub(super) fn covered(start: &Answer, window: u64, step: u64, time: f64) -> f64 {
    let (window, step) = (window as f64, step as f64);
    match start.series.first().and_then(|s| s.samples.first()) {
        Some(&(_, first)) => (time - first + step).clamp(step.min(window), window),
        None => step.min(window),
    }
}

/// The edges of the answers to [`edge_queries`], at most [`MAX_EDGES`] (the busiest), and whether any
/// were left out.
pub(super) fn edges(requests: &Answer, latency: &Answer) -> (Vec<(Edge, Counts)>, bool) {
    let mut by: HashMap<Edge, Counts> = HashMap::new();
    for s in &requests.series {
        by.entry(Edge::of(s)).or_default().outcome(s, s.value());
    }
    for s in &latency.series {
        // Latency of an edge without requests in the window: nothing to show it on.
        if let Some(c) = by.get_mut(&Edge::of(s)) {
            c.bucket(s, s.value());
        }
    }
    let mut all: Vec<(Edge, Counts)> = by.into_iter().filter(|(_, c)| c.requests > 0.0).collect();
    let truncated = requests.truncated || latency.truncated || all.len() > MAX_EDGES;
    if all.len() > MAX_EDGES {
        all.sort_by(|a, b| b.1.requests.total_cmp(&a.1.requests));
        all.truncate(MAX_EDGES);
    }
    (all, truncated)
}

/// The graph answer (the window's shape) of `edges` over `secs` seconds.
pub(super) fn graph_of(edges: &[(Edge, Counts)], secs: f64) -> Value {
    let callers = Callers::new(edges.iter().map(|(e, _)| &e.destination));
    let mut nodes: BTreeMap<String, (Workload, Counts, Vec<String>)> = BTreeMap::new();
    let mut out = Vec::with_capacity(edges.len());
    for (e, c) in edges {
        let source = callers.node(&e.source);
        nodes
            .entry(source.id())
            .or_insert_with(|| (source.clone(), Counts::default(), Vec::new()));
        let node = nodes
            .entry(e.destination.id())
            .or_insert_with(|| (e.destination.clone(), Counts::default(), Vec::new()));
        node.1.add(c);
        if !node.2.contains(&e.service) {
            node.2.push(e.service.clone());
        }
        out.push(json!({
            "source": source.id(),
            "destination": e.destination.id(),
            "service": e.service,
            "service_namespace": e.service_namespace,
            "stats": c.stats(secs),
        }));
    }
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|(id, (w, c, services))| {
            json!({
                "id": id, "namespace": w.namespace, "workload": w.name, "version": w.version,
                "services": services, "stats": c.stats(secs),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a["source"].as_str(), a["destination"].as_str())
            .cmp(&(b["source"].as_str(), b["destination"].as_str()))
    });
    json!({"window_seconds": secs, "nodes": nodes, "edges": out})
}

/// The services answer (the window's shape) of `edges` over `secs` seconds.
pub(super) fn services_of(edges: &[(Edge, Counts)], secs: f64) -> Value {
    type Versions = BTreeMap<String, Counts>;
    let mut by: BTreeMap<(String, String), (Counts, Versions)> = BTreeMap::new();
    for (e, c) in edges {
        let entry = by
            .entry((e.service_namespace.clone(), e.service.clone()))
            .or_default();
        entry.0.add(c);
        entry
            .1
            .entry(e.destination.version.clone())
            .or_default()
            .add(c);
    }
    let services: Vec<Value> = by
        .into_iter()
        .map(|((namespace, name), (total, versions))| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(v, c)| json!({"version": v, "stats": c.stats(secs)}))
                .collect();
            json!({"namespace": namespace, "name": name, "stats": total.stats(secs), "versions": versions})
        })
        .collect();
    json!({"window_seconds": secs, "services": services})
}

/// The RED answer (the window's shape): a point per step from `first`, `steps` of them, `step` seconds
/// apart, of the rates the answers to [`red_queries`] hold at each step's end.
pub(super) fn red_of(
    namespace: &str,
    name: &str,
    (first, step, steps): (f64, f64, usize),
    requests: &Answer,
    latency: &Answer,
) -> Value {
    let mut points = vec![Counts::default(); steps];
    let index = |t: f64| {
        let i = ((t - step - first) / step).round();
        (i >= 0.0 && i < steps as f64).then_some(i as usize)
    };
    for s in &requests.series {
        for &(t, rate) in &s.samples {
            if let Some(i) = index(t) {
                // Requests in the step, at the rate measured at its end.
                points[i].outcome(s, rate * step);
            }
        }
    }
    for s in &latency.series {
        for &(t, rate) in &s.samples {
            if let Some(i) = index(t) {
                points[i].bucket(s, rate * step);
            }
        }
    }
    let points: Vec<Value> = points
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = c.stats(step);
            p["time"] = json!(first + i as f64 * step);
            p
        })
        .collect();
    json!({
        "namespace": namespace, "name": name, "window_seconds": steps as f64 * step,
        "step_seconds": step, "points": points,
        "truncated": requests.truncated || latency.truncated,
    })
}

/// The rate-limits answer (the window's shape) of the answer to [`refusals_query`].
pub(super) fn rate_limits_of(refusals: &Answer, secs: f64) -> Value {
    let mut out: Vec<(String, f64)> = refusals
        .series
        .iter()
        .map(|s| (s.label("ratelimit").to_string(), s.value()))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rate_limits: Vec<Value> = out
        .into_iter()
        .take(MAX_RATE_LIMITS)
        .map(|(name, n)| {
            json!({"ratelimit": name, "refused": n.round().max(1.0) as u64, "per_second": n / secs})
        })
        .collect();
    json!({"window_seconds": secs, "rate_limits": rate_limits, "truncated": refusals.truncated})
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whole seconds of `window`, at least one.
fn seconds(window: Duration) -> u64 {
    window.as_secs().max(1)
}

/// The query API over one Prometheus.
pub struct Prometheus {
    client: Client,
}

impl Prometheus {
    /// Answers from the Prometheus `client` asks.
    pub fn new(client: Client) -> Prometheus {
        Prometheus { client }
    }

    /// The Prometheus's URL.
    pub fn url(&self) -> &super::PrometheusUrl {
        self.client.url()
    }

    /// The seconds of the last `window` that have data (see [`covered`]), at `time`.
    async fn covered(&self, window: u64, time: f64) -> Result<f64, QueryFailed> {
        let step = red_steps(window).0;
        let answer = self
            .client
            .instant("the data's start", &start_query(window, step), time)
            .await?;
        Ok(covered(&answer, window, step, time))
    }

    async fn edges(
        &self,
        window: Duration,
    ) -> Result<(Vec<(Edge, Counts)>, f64, bool), QueryFailed> {
        let window = seconds(window);
        let (requests, latency) = edge_queries(window);
        let time = now();
        let (requests, latency, secs) = tokio::join!(
            self.client
                .instant("requests per edge and outcome", &requests, time),
            self.client.instant("latency per edge", &latency, time),
            self.covered(window, time),
        );
        let (edges, truncated) = edges(&requests?, &latency?);
        Ok((edges, secs?, truncated))
    }

    /// The service graph over the last `window`.
    pub async fn graph(&self, window: Duration) -> Result<Value, QueryFailed> {
        let (edges, secs, truncated) = self.edges(window).await?;
        let mut answer = graph_of(&edges, secs);
        answer["truncated"] = json!(truncated);
        Ok(answer)
    }

    /// Each destination service over the last `window`.
    pub async fn services(&self, window: Duration) -> Result<Value, QueryFailed> {
        let (edges, secs, truncated) = self.edges(window).await?;
        let mut answer = services_of(&edges, secs);
        answer["truncated"] = json!(truncated);
        Ok(answer)
    }

    /// Rate, errors and duration of service `namespace/name` per step over the last `window`: at most
    /// 120 steps of 5 s or more, each point's rates over its step or the last minute, the longer.
    pub async fn red(
        &self,
        namespace: &str,
        name: &str,
        window: Duration,
    ) -> Result<Value, QueryFailed> {
        let (step, steps) = red_steps(seconds(window));
        // As the window's, a point is its step's, from its start (the last one the step under way): the
        // rates are Prometheus's at the step's end, the last one's a moment ahead (it uses the latest samples).
        let step_f = step as f64;
        let first = ((now() / step_f).floor() - (steps - 1) as f64) * step_f;
        let (start, end) = (first + step_f, first + steps as f64 * step_f);
        let (requests, latency) = red_queries(namespace, name, step.max(MIN_RATE_RANGE));
        let (requests, latency) = tokio::join!(
            self.client.range(
                "requests per second by outcome",
                &requests,
                start,
                end,
                step as f64
            ),
            self.client
                .range("latency", &latency, start, end, step as f64),
        );
        Ok(red_of(
            namespace,
            name,
            (first, step_f, steps as usize),
            &requests?,
            &latency?,
        ))
    }

    /// Refusals per RateLimit over the last `window`, from every hub Prometheus scrapes.
    pub async fn rate_limits(&self, window: Duration) -> Result<Value, QueryFailed> {
        let (window, time) = (seconds(window), now());
        let refusals = refusals_query(window);
        let (answer, secs) = tokio::join!(
            self.client
                .instant("refusals per RateLimit", &refusals, time),
            self.covered(window, time),
        );
        Ok(rate_limits_of(&answer?, secs?))
    }
}

/// The RED step (seconds) and number of steps for a window of `window` seconds.
pub(super) fn red_steps(window: u64) -> (u64, u64) {
    let step = window.div_ceil(MAX_POINTS).max(MIN_STEP);
    (step, window.div_ceil(step).max(1))
}
