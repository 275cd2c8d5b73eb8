//! Counters and gauges named as Envoy names them (`cluster.NAME.upstream_rq_total`,
//! `http.PREFIX.downstream_rq_total`, `listener.ADDRESS.downstream_cx_total`), so dashboards and alerts written
//! for Envoy keep working. Each stat is an atomic behind an `Arc`: the data path holds its handles and only adds.
//!
//! Stat names come from configuration (cluster, listener and route names), never from requests, and the
//! registry is bounded: past [`MAX_STATS`] new stats are not registered (their handles still count, unseen) and
//! the refusals are counted in `server.stats_overflow`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// A process-wide stat: `NAME` → `envoy_NAME` (dots become underscores).
    Server,
}

impl Scope {
    fn parts(&self) -> (&'static str, &'static str, Option<&str>) {
        match self {
            Scope::Cluster(n) => ("cluster", "envoy_cluster_name", Some(n)),
            Scope::Http(n) => ("http", "envoy_http_conn_manager_prefix", Some(n)),
            Scope::Listener(n) => ("listener", "envoy_listener_address", Some(n)),
            Scope::Tcp(n) => ("tcp", "envoy_tcp_prefix", Some(n)),
            Scope::Server => ("", "", None),
        }
    }

    /// The Envoy name of stat `name` in this scope.
    pub fn stat_name(&self, name: &str) -> String {
        match self.parts() {
            (family, _, Some(tag)) => format!("{family}.{tag}.{name}"),
            _ => name.to_string(),
        }
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

#[derive(Debug, Clone)]
enum Stat {
    Counter(Counter),
    Gauge(Gauge),
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
            Stat::Gauge(_) => Counter::default(),
        }
    }

    /// The gauge `name` of `scope`, registered on first use.
    pub fn gauge(&self, scope: &Scope, name: &str) -> Gauge {
        match self.get_or_insert(scope, name, || Stat::Gauge(Gauge::default())) {
            Stat::Gauge(g) => g,
            Stat::Counter(_) => Gauge::default(),
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

    /// Every stat as (Envoy name, value), sorted by name.
    pub fn all(&self) -> Vec<(String, i64)> {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, i64)> = stats
            .iter()
            .map(|((scope, name), stat)| (scope.stat_name(name), value(stat)))
            .collect();
        out.push((
            "server.stats_overflow".into(),
            i64::try_from(self.overflow.get()).unwrap_or(i64::MAX),
        ));
        out.sort();
        out
    }

    /// The Prometheus text exposition, in Envoy's form (`envoy_cluster_upstream_rq_total{envoy_cluster_name="…"}`).
    pub fn prometheus(&self) -> String {
        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        // Grouped by metric name so each family's TYPE line comes once.
        let mut families: BTreeMap<String, (&'static str, Vec<String>)> = BTreeMap::new();
        for ((scope, name), stat) in stats.iter() {
            let (family, label, tag) = scope.parts();
            let metric = sanitize(&if family.is_empty() {
                format!("envoy_{name}")
            } else {
                format!("envoy_{family}_{name}")
            });
            let kind = match stat {
                Stat::Counter(_) => "counter",
                Stat::Gauge(_) => "gauge",
            };
            let labels = tag.map_or_else(String::new, |t| format!("{{{label}=\"{}\"}}", escape(t)));
            families
                .entry(metric.clone())
                .or_insert((kind, Vec::new()))
                .1
                .push(format!("{metric}{labels} {}", value(stat)));
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

fn value(stat: &Stat) -> i64 {
    match stat {
        Stat::Counter(c) => i64::try_from(c.get()).unwrap_or(i64::MAX),
        Stat::Gauge(g) => g.get(),
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
}
