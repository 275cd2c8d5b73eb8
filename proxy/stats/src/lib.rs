//! Counters, gauges and histograms named as Envoy names them (`cluster.NAME.upstream_rq_total`,
//! `http.PREFIX.downstream_rq_total`, `cluster.NAME.upstream_rq_time`, `listener.ADDRESS.downstream_cx_total`),
//! so dashboards and alerts written for Envoy keep working. Each stat is atomics behind an `Arc`: the data path
//! holds its handles and only adds.
//!
//! Stat names come from configuration (cluster, listener and route names), never from requests, and the
//! registry is bounded: past [`MAX_STATS`] new stats are not registered (their handles still count, unseen) and
//! the refusals are counted in `server.stats_overflow`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The most stats registered.
pub const MAX_STATS: usize = 200_000;

/// Where a stat belongs: Envoy's scope, and the tag its Prometheus form carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `cluster.NAME.…` → `envoy_cluster_…{envoy_cluster_name="NAME"}`.
    Cluster(String),
    /// `http.PREFIX.…` → `envoy_http_…{envoy_http_conn_manager_prefix="PREFIX"}`.
    Http(String),
    /// `listener.ADDRESS.…` → `envoy_listener_…{envoy_listener_address="ADDRESS"}`.
    Listener(String),
    /// `tcp.PREFIX.…` → `envoy_tcp_…{envoy_tcp_prefix="PREFIX"}`.
    Tcp(String),
    /// A network RBAC filter's `PREFIX.rbac.…`, holding `PREFIX.rbac.` (made by [`Scope::rbac`]); its
    /// Prometheus form is Envoy 1.40's tag extraction of the name (see [`Scope::rbac`]).
    Rbac(String),
    /// An HTTP RBAC filter's `http.PREFIX.rbac.[RULES.]…` (made by [`Scope::http_rbac`]): the connection
    /// manager's prefix and the filter's `rules_stat_prefix` (empty: none).
    HttpRbac {
        /// The connection manager's `stat_prefix`.
        manager: String,
        /// The filter's `rules_stat_prefix`.
        rules: String,
    },
    /// A process-wide stat: `NAME` → `envoy_NAME` (dots become underscores).
    Server,
}

/// Envoy's tags of a name's first segment followed by the tagged one (`tcp.PREFIX.…`), as Envoy 1.40
/// extracts them from names it does not build itself (an RBAC filter's configured prefix).
const SEGMENT_TAGS: &[(&str, &str)] = &[
    ("tcp", "envoy_tcp_prefix"),
    ("http", "envoy_http_conn_manager_prefix"),
    ("cluster", "envoy_cluster_name"),
    ("listener", "envoy_listener_address"),
    ("vhost", "envoy_virtual_host"),
];

impl Scope {
    /// The scope of a network RBAC filter's stats: Envoy joins its `stat_prefix` to `rbac.` with one dot
    /// (`tcp.` → `tcp.rbac.allowed`, `inbound` → `inbound.rbac.allowed`).
    ///
    /// Their Prometheus names are what Envoy 1.40's default tag extraction makes of them: a single segment
    /// before `rbac.` becomes `envoy_rbac_prefix`, and the segment after a leading `tcp`, `http`, `cluster`,
    /// `listener` or `vhost` that family's tag, both taken out of the name: `myprefix.rbac.allowed` →
    /// `envoy_rbac_allowed{envoy_rbac_prefix="myprefix"}`, Istio's `tcp.rbac.allowed` →
    /// `envoy_allowed{envoy_rbac_prefix="tcp",envoy_tcp_prefix="rbac"}`, `a.b.rbac.allowed` →
    /// `envoy_a_b_rbac_allowed` (checked against Envoy 1.40's `/stats/prometheus`).
    pub fn rbac(stat_prefix: &str) -> Scope {
        Scope::Rbac(if stat_prefix.is_empty() || stat_prefix.ends_with('.') {
            format!("{stat_prefix}rbac.")
        } else {
            format!("{stat_prefix}.rbac.")
        })
    }

    /// The scope of an HTTP RBAC filter's `allowed`/`denied` counters, as Envoy 1.40 joins its names (each
    /// part joined to the next with one dot unless it ends in one): `http.PREFIX.rbac.allowed`, and with a
    /// `rules_stat_prefix` of `p` or `p.`, `http.PREFIX.rbac.p.allowed`. (Its shadow counters take an empty
    /// `rules`: `http.PREFIX.rbac.shadow_allowed`.)
    ///
    /// Prometheus, as Envoy 1.40's default tags take them out of the name: `envoy_http_rbac_allowed` with
    /// `envoy_rbac_http_prefix="p"` (when the rules prefix is one segment) and
    /// `envoy_http_conn_manager_prefix="PREFIX"`.
    pub fn http_rbac(manager: &str, rules_stat_prefix: &str) -> Scope {
        Scope::HttpRbac {
            manager: manager.to_string(),
            // `p.` and `p` join to the same names: one key, so one counter.
            rules: rules_stat_prefix
                .strip_suffix('.')
                .unwrap_or(rules_stat_prefix)
                .to_string(),
        }
    }

    fn parts(&self) -> (&'static str, &'static str, Option<&str>) {
        match self {
            Scope::Cluster(n) => ("cluster", "envoy_cluster_name", Some(n)),
            Scope::Http(n) => ("http", "envoy_http_conn_manager_prefix", Some(n)),
            Scope::Listener(n) => ("listener", "envoy_listener_address", Some(n)),
            Scope::Tcp(n) => ("tcp", "envoy_tcp_prefix", Some(n)),
            Scope::Rbac(_) | Scope::HttpRbac { .. } | Scope::Server => ("", "", None),
        }
    }

    /// The Envoy name of stat `name` in this scope.
    pub fn stat_name(&self, name: &str) -> String {
        match (self, self.parts()) {
            (Scope::Rbac(base), _) => format!("{base}{name}"),
            (Scope::HttpRbac { manager, rules }, _) => {
                let dot = if rules.is_empty() { "" } else { "." };
                format!("http.{manager}.rbac.{rules}{dot}{name}")
            }
            (_, (family, _, Some(tag))) => format!("{family}.{tag}.{name}"),
            _ => name.to_string(),
        }
    }

    /// The Prometheus metric name of stat `name` (before sanitizing) and its labels, in Envoy's order.
    fn prometheus_form<'a>(&'a self, name: &str) -> (String, Vec<(&'static str, &'a str)>) {
        if let Scope::HttpRbac { manager, rules } = self {
            let mut labels = Vec::new();
            let mut metric = String::from("envoy_http_rbac_");
            if !rules.is_empty() {
                if rules.contains('.') {
                    // Not one segment: no tag takes it, it stays in the name.
                    metric.push_str(rules);
                    metric.push('_');
                } else {
                    labels.push(("envoy_rbac_http_prefix", rules.as_str()));
                }
            }
            labels.push(("envoy_http_conn_manager_prefix", manager.as_str()));
            metric.push_str(name);
            return (metric, labels);
        }
        let Scope::Rbac(base) = self else {
            return match self.parts() {
                ("", _, _) => (format!("envoy_{name}"), Vec::new()),
                (family, label, tag) => (
                    format!("envoy_{family}_{name}"),
                    tag.map(|t| (label, t)).into_iter().collect(),
                ),
            };
        };
        let segments: Vec<&str> = base.split('.').filter(|s| !s.is_empty()).collect();
        let mut kept: Vec<bool> = vec![true; segments.len()];
        let mut labels = Vec::new();
        // `PREFIX.rbac.…`: one segment before `rbac`.
        if segments.len() >= 2 && segments[1] == "rbac" {
            labels.push(("envoy_rbac_prefix", segments[0]));
            kept[0] = false;
        }
        if segments.len() >= 2
            && let Some((_, label)) = SEGMENT_TAGS.iter().find(|(f, _)| *f == segments[0])
        {
            labels.push((*label, segments[1]));
            kept[1] = false;
        }
        let mut metric = String::from("envoy");
        for (segment, _) in segments.iter().zip(&kept).filter(|(_, k)| **k) {
            metric.push('_');
            metric.push_str(segment);
        }
        metric.push('_');
        metric.push_str(name);
        (metric, labels)
    }
}

/// A monotonically growing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Takes one away.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets it.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Envoy's default histogram bucket bounds, in milliseconds (Envoy's `stats_config.histogram_bucket_settings`
/// defaults, which its Prometheus output uses).
pub const BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The quantiles Envoy's `/stats` text shows for a histogram.
const QUANTILES: [(f64, &str); 10] = [
    (0.0, "P0"),
    (0.25, "P25"),
    (0.5, "P50"),
    (0.75, "P75"),
    (0.9, "P90"),
    (0.95, "P95"),
    (0.99, "P99"),
    (0.995, "P99.5"),
    (0.999, "P99.9"),
    (1.0, "P100"),
];

#[derive(Debug, Default)]
struct Buckets {
    /// Observations at most each bound (not cumulative); the last slot counts those above every bound.
    counts: [AtomicU64; BUCKETS_MS.len() + 1],
    /// The sum of the observations, microseconds.
    sum_us: AtomicU64,
}

/// A distribution of durations in Envoy's buckets ([`BUCKETS_MS`]); recording is a few relaxed atomic adds.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<Buckets>);

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        let slot = BUCKETS_MS.partition_point(|bound| *bound < ms);
        self.0.counts[slot].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The cumulative count at each bound of [`BUCKETS_MS`], then the total.
    fn cumulative(&self) -> [u64; BUCKETS_MS.len() + 1] {
        let mut out = [0; BUCKETS_MS.len() + 1];
        let mut total = 0;
        for (slot, c) in out.iter_mut().zip(&self.0.counts) {
            total += c.load(Ordering::Relaxed);
            *slot = total;
        }
        out
    }

    /// Quantile `q` (0–1) in milliseconds, interpolated linearly inside its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let cumulative = self.cumulative();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let slot = cumulative.partition_point(|c| (*c as f64) < rank);
        let lower = if slot == 0 { 0.0 } else { BUCKETS_MS[slot - 1] };
        let Some(&upper) = BUCKETS_MS.get(slot) else {
            // Above the last bound: the last bound is all that is known.
            return Some(lower);
        };
        let below = if slot == 0 { 0 } else { cumulative[slot - 1] };
        let inside = cumulative[slot] - below;
        let fraction = if inside == 0 {
            1.0
        } else {
            (rank - below as f64) / inside as f64
        };
        Some(lower + (upper - lower) * fraction)
    }

    /// Envoy's `/stats` text form: `P0(nan,V) P25(nan,V) …` (the cumulative quantiles; Envoy's interval
    /// values are `nan` here, as no interval is kept), or `No recorded values`.
    fn summary(&self) -> String {
        if self.count() == 0 {
            return "No recorded values".into();
        }
        QUANTILES
            .iter()
            .map(|(q, name)| format!("{name}(nan,{})", trim(self.quantile(*q).unwrap_or(0.0))))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A value as Envoy prints it: up to 6 significant decimals, no trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[derive(Debug, Clone)]
enum Stat {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// The registry.
#[derive(Debug, Default)]
pub struct Stats {
    stats: Mutex<BTreeMap<(Scope, String), Stat>>,
    overflow: Counter,
}

impl Stats {
    /// A new, empty registry.
    pub fn new() -> Arc<Stats> {
        Arc::new(Stats::default())
    }

    /// The counter `name` of `scope`, registered on first use (the same one on every later call).
    pub fn counter(&self, scope: &Scope, name: &str) -> Counter {
        match self.get_or_insert(scope, name, || Stat::Counter(Counter::default())) {
            Stat::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// The gauge `name` of `scope`, registered on first use.
    pub fn gauge(&self, scope: &Scope, name: &str) -> Gauge {
        match self.get_or_insert(scope, name, || Stat::Gauge(Gauge::default())) {
            Stat::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name` of `scope`, registered on first use.
    pub fn histogram(&self, scope: &Scope, name: &str) -> Histogram {
        match self.get_or_insert(scope, name, || Stat::Histogram(Histogram::default())) {
            Stat::Histogram(h) => h,
            _ => Histogram::default(),
        }
    }

    fn get_or_insert(&self, scope: &Scope, name: &str, new: impl FnOnce() -> Stat) -> Stat {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (scope.clone(), name.to_string());
        if let Some(stat) = stats.get(&key) {
            return stat.clone();
        }
        let stat = new();
        if stats.len() < MAX_STATS {
            stats.insert(key, stat.clone());
        } else {
            self.overflow.inc();
        }
        stat
    }

    /// The value of the stat with Envoy name `name`, if registered (for tests and `/stats?filter=`).
    pub fn value(&self, name: &str) -> Option<i64> {
        self.all()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every counter and gauge as (Envoy name, value), sorted by name.
    pub fn all(&self) -> Vec<(String, i64)> {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, i64)> = stats
            .iter()
            .filter_map(|((scope, name), stat)| Some((scope.stat_name(name), value(stat)?)))
            .collect();
        out.push((
            "server.stats_overflow".into(),
            i64::try_from(self.overflow.get()).unwrap_or(i64::MAX),
        ));
        out.sort();
        out
    }

    /// Every histogram as (Envoy name, Envoy's `/stats` text form: `P0(nan,1.2) P25(nan,…) …`), sorted by
    /// name.
    pub fn histograms(&self) -> Vec<(String, String)> {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        stats
            .iter()
            .filter_map(|((scope, name), stat)| match stat {
                Stat::Histogram(h) => Some((scope.stat_name(name), h.summary())),
                _ => None,
            })
            .collect()
    }

    /// The Prometheus text exposition, in Envoy's form (`envoy_cluster_upstream_rq_total{envoy_cluster_name="…"}`).
    pub fn prometheus(&self) -> String {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        // Grouped by metric name so each family's TYPE line comes once.
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        for ((scope, name), stat) in stats.iter() {
            let (metric, labels) = scope.prometheus_form(name);
            let metric = sanitize(&metric);
            let tags: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
                .collect();
            let braces = |extra: Option<String>| {
                let all: Vec<String> = tags.iter().cloned().chain(extra).collect();
                if all.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", all.join(","))
                }
            };
            let (kind, lines) = match stat {
                Stat::Counter(_) | Stat::Gauge(_) => (
                    if matches!(stat, Stat::Counter(_)) {
                        "counter"
                    } else {
                        "gauge"
                    },
                    vec![format!(
                        "{metric}{} {}",
                        braces(None),
                        value(stat).unwrap_or_default()
                    )],
                ),
                Stat::Histogram(h) => ("histogram", histogram_lines(&metric, h, braces)),
            };
            families
                .entry(metric.clone())
                .or_insert((kind, Vec::new()))
                .1
                .extend(lines);
        }
        let mut out = String::new();
        for (metric, (kind, lines)) in families {
            let _ = writeln!(out, "# TYPE {metric} {kind}");
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

/// A histogram's Prometheus lines: cumulative `_bucket`s with `le` in milliseconds, `_sum` (milliseconds) and
/// `_count`, as Envoy writes them; `braces` renders the labels with one more.
fn histogram_lines(
    metric: &str,
    h: &Histogram,
    braces: impl Fn(Option<String>) -> String,
) -> Vec<String> {
    let cumulative = h.cumulative();
    let mut lines: Vec<String> = BUCKETS_MS
        .iter()
        .zip(&cumulative)
        .map(|(bound, n)| {
            format!(
                "{metric}_bucket{} {n}",
                braces(Some(format!("le=\"{}\"", trim(*bound))))
            )
        })
        .collect();
    let total = cumulative.last().copied().unwrap_or(0);
    lines.push(format!(
        "{metric}_bucket{} {total}",
        braces(Some("le=\"+Inf\"".into()))
    ));
    let sum_ms = h.0.sum_us.load(Ordering::Relaxed) as f64 / 1e3;
    lines.push(format!("{metric}_sum{} {}", braces(None), trim(sum_ms)));
    lines.push(format!("{metric}_count{} {total}", braces(None)));
    lines
}

/// A counter's or gauge's value (`None` for a histogram).
fn value(stat: &Stat) -> Option<i64> {
    match stat {
        Stat::Counter(c) => Some(i64::try_from(c.get()).unwrap_or(i64::MAX)),
        Stat::Gauge(g) => Some(g.get()),
        Stat::Histogram(_) => None,
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_carry_envoys_names_in_both_forms() {
        let stats = Stats::new();
        let cluster = Scope::Cluster("outbound|9080||reviews".into());
        stats.counter(&cluster, "upstream_rq_total").add(3);
        stats.counter(&cluster, "upstream_rq_total").inc();
        stats.gauge(&Scope::Server, "live").set(1);
        assert_eq!(
            stats.value("cluster.outbound|9080||reviews.upstream_rq_total"),
            Some(4)
        );
        let prom = stats.prometheus();
        assert!(
            prom.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"),
            "{prom}"
        );
        assert!(
            prom.contains(
                "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"outbound|9080||reviews\"} 4\n"
            ),
            "{prom}"
        );
        assert!(prom.contains("envoy_live 1\n"), "{prom}");
    }

    #[test]
    fn rbac_stats_take_envoys_names_and_prometheus_tags() {
        let stats = Stats::new();
        // Two filters of one prefix share their counters, as in Envoy.
        stats.counter(&Scope::rbac("tcp."), "allowed").inc();
        stats.counter(&Scope::rbac("tcp"), "allowed").inc();
        stats.counter(&Scope::rbac("tcp."), "denied").inc();
        for prefix in [
            "myprefix",
            "a.b.",
            "tcp.allow.",
            "http.",
            "a.rbac.",
            "cluster.x.",
        ] {
            stats.counter(&Scope::rbac(prefix), "allowed");
        }
        assert_eq!(stats.value("tcp.rbac.allowed"), Some(2));
        assert_eq!(stats.value("tcp.rbac.denied"), Some(1));
        assert_eq!(stats.value("myprefix.rbac.allowed"), Some(0));
        assert_eq!(stats.value("a.b.rbac.allowed"), Some(0));
        let prom = stats.prometheus();
        // Each line as Envoy 1.40's /stats/prometheus writes it for the same stat_prefix.
        for line in [
            "# TYPE envoy_allowed counter\n",
            "envoy_allowed{envoy_rbac_prefix=\"tcp\",envoy_tcp_prefix=\"rbac\"} 2\n",
            "envoy_denied{envoy_rbac_prefix=\"tcp\",envoy_tcp_prefix=\"rbac\"} 1\n",
            "envoy_rbac_allowed{envoy_rbac_prefix=\"myprefix\"} 0\n",
            "envoy_a_b_rbac_allowed 0\n",
            "envoy_tcp_rbac_allowed{envoy_tcp_prefix=\"allow\"} 0\n",
            "envoy_allowed{envoy_rbac_prefix=\"http\",envoy_http_conn_manager_prefix=\"rbac\"} 0\n",
            "envoy_rbac_rbac_allowed{envoy_rbac_prefix=\"a\"} 0\n",
            "envoy_cluster_rbac_allowed{envoy_cluster_name=\"x\"} 0\n",
        ] {
            assert!(prom.contains(line), "{line} missing from\n{prom}");
        }
    }

    #[test]
    fn http_rbac_stats_join_the_rules_prefix_as_envoy_does() {
        let stats = Stats::new();
        stats
            .counter(&Scope::http_rbac("inbound_0.0.0.0_8080", ""), "allowed")
            .add(2);
        stats
            .counter(&Scope::http_rbac("inbound_0.0.0.0_8080", ""), "denied")
            .inc();
        stats
            .counter(&Scope::http_rbac("hcm", "deny"), "denied")
            .inc();
        stats
            .counter(&Scope::http_rbac("hcm", "deny."), "denied")
            .inc();
        stats.counter(&Scope::http_rbac("hcm", "a.b"), "allowed");
        assert_eq!(
            stats.value("http.inbound_0.0.0.0_8080.rbac.allowed"),
            Some(2)
        );
        assert_eq!(
            stats.value("http.inbound_0.0.0.0_8080.rbac.denied"),
            Some(1)
        );
        // `deny` and `deny.` name the same counter, as Envoy's join makes them.
        assert_eq!(stats.value("http.hcm.rbac.deny.denied"), Some(2));
        assert_eq!(stats.value("http.hcm.rbac.a.b.allowed"), Some(0));
        let prom = stats.prometheus();
        for line in [
            "envoy_http_rbac_allowed{envoy_http_conn_manager_prefix=\"inbound_0.0.0.0_8080\"} 2\n",
            "envoy_http_rbac_denied{envoy_http_conn_manager_prefix=\"inbound_0.0.0.0_8080\"} 1\n",
            "envoy_http_rbac_denied{envoy_rbac_http_prefix=\"deny\",envoy_http_conn_manager_prefix=\"hcm\"} 2\n",
        ] {
            assert!(prom.contains(line), "{line} missing from\n{prom}");
        }
    }

    #[test]
    fn histograms_use_envoys_buckets_and_forms() {
        let stats = Stats::new();
        let cluster = Scope::Cluster("web".into());
        let h = stats.histogram(&cluster, "upstream_rq_time");
        for us in [200, 3_000, 3_000, 7_000, 70_000_000_000] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 5);
        let prom = stats.prometheus();
        for line in [
            "# TYPE envoy_cluster_upstream_rq_time histogram\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"0.5\"} 1\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"1\"} 1\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"5\"} 3\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"10\"} 4\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"3600000\"} 4\n",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"web\",le=\"+Inf\"} 5\n",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"web\"} 5\n",
        ] {
            assert!(prom.contains(line), "{line} missing from\n{prom}");
        }
        assert!(
            prom.contains(
                "envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"web\"} 70000013.2\n"
            ),
            "{prom}"
        );
        // Not a counter: left out of the name → value list, shown as quantiles.
        assert!(stats.all().iter().all(|(n, _)| !n.contains("rq_time")));
        let (name, summary) = &stats.histograms()[0];
        assert_eq!(name, "cluster.web.upstream_rq_time");
        assert!(summary.starts_with("P0(nan,0.5) P25(nan,"), "{summary}");
        assert!(summary.ends_with("P100(nan,3600000)"), "{summary}");
        // The median lies in the (1, 5] bucket, where two of the five fall.
        let p50 = h.quantile(0.5).expect("recorded");
        assert!((1.0..=5.0).contains(&p50), "{p50}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
