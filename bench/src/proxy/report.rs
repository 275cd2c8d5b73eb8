//! The proxy-bench output: per setup one table (a row per proxy and protocol, then the sextant/Envoy ratios),
//! the details that say where a number came from (CPU busy, upstream connections, errors), and the goals of
//! issue 14 (reported, never asserted): at least 2× Envoy's requests per CPU-second, p99 at the fixed rate no
//! higher than Envoy's, resident memory at most a quarter of Envoy's.

use std::time::Duration;

use crate::backend::Served;
use crate::load::Protocol;
use crate::parse::{Outcome, Percentiles};
use crate::process::Kind;
use crate::sample;

/// Goal: sextant's requests per CPU-second over Envoy's.
const THROUGHPUT_GOAL: f64 = 2.0;
/// Goal: sextant's resident memory over Envoy's.
const RSS_GOAL: f64 = 0.25;

/// One measured load phase.
#[derive(Clone, Debug)]
pub struct Phase {
    /// What the load generator saw.
    pub outcome: Outcome,
    /// Proxy CPU seconds (user + system) during the phase.
    pub cpu: Option<f64>,
    /// Wall time of the phase.
    pub wall: Duration,
    /// How busy each CPU of the machine was.
    pub busy: Vec<f64>,
    /// What reached the backend during the phase.
    pub backend: Served,
    /// Peak proxy VmRSS during the phase, bytes.
    pub rss_peak: Option<u64>,
}

impl Phase {
    /// 2xx responses per proxy CPU-second.
    pub fn per_cpu_second(&self) -> Option<f64> {
        self.cpu
            .filter(|c| *c > 0.0)
            .map(|c| self.outcome.ok as f64 / c)
    }

    /// Responses that were not 2xx, and requests without a response.
    pub fn failures(&self) -> u64 {
        self.outcome.responses.saturating_sub(self.outcome.ok) + self.outcome.errors
    }
}

/// A proxy's results for one protocol.
#[derive(Clone, Debug)]
pub struct Row {
    /// Which proxy.
    pub proxy: Kind,
    /// Which protocol.
    pub protocol: Protocol,
    /// Closed loop; the error text if the phase could not run.
    pub max: Result<Phase, String>,
    /// At the fixed rate; the error text if the phase could not run.
    pub fixed: Result<Phase, String>,
    /// VmRSS after the configuration was applied, before any load.
    pub rss_idle: Option<u64>,
    /// The anonymous part of it (RssAnon): what the proxy allocated, not its binary's mapped pages.
    pub anon_idle: Option<u64>,
    /// The file-backed part of it (RssFile): the binary's and libraries' pages it touched.
    pub file_idle: Option<u64>,
}

impl Row {
    /// Peak VmRSS over this protocol's two phases.
    pub fn rss_load(&self) -> Option<u64> {
        [&self.max, &self.fixed]
            .iter()
            .filter_map(|p| p.as_ref().ok()?.rss_peak)
            .max()
    }

    fn latency(&self) -> Option<Percentiles> {
        self.fixed.as_ref().ok()?.outcome.latency
    }
}

/// Bytes as `12.3 MB`.
pub fn mb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "?".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

/// Milliseconds with three decimals, `-` when unknown.
pub fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
}

fn count(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}×"))
}

/// Whether a goal holds: `met`, `NOT met`, or `unknown` when it could not be measured.
pub fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "unknown",
    }
}

/// Prints one setup's table, ratios, details and goals; `rates` are the fixed rates per protocol.
pub fn print(setup: &str, rows: &[Row], rates: &[(Protocol, f64)]) {
    println!();
    println!("== {setup}");
    println!(
        "{:<8} {:<8} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "proxy",
        "protocol",
        "max rps",
        "CPU s",
        "rps/CPU-s",
        "rate",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "RSS idle",
        "RSS load",
        "failures"
    );
    for r in rows {
        let max = r.max.as_ref().ok();
        let rate = rates.iter().find(|(p, _)| *p == r.protocol).map(|x| x.1);
        let lat = r.latency();
        let failures = [&r.max, &r.fixed]
            .iter()
            .map(|p| {
                p.as_ref()
                    .map_or_else(|_| "n/a".into(), |p| p.failures().to_string())
            })
            .collect::<Vec<_>>()
            .join("+");
        println!(
            "{:<8} {:<8} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8}",
            r.proxy.name(),
            r.protocol.name(),
            count(max.map(|m| m.outcome.rps)),
            max.and_then(|m| m.cpu)
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            count(max.and_then(Phase::per_cpu_second)),
            count(rate),
            ms(lat.map(|l| l.p50)),
            ms(lat.map(|l| l.p99)),
            ms(lat.and_then(|l| l.p999)),
            mb(r.rss_idle),
            mb(r.rss_load()),
            failures
        );
    }
    for protocol in [Protocol::H1, Protocol::H2] {
        let find = |k: Kind| rows.iter().find(|r| r.proxy == k && r.protocol == protocol);
        let (Some(e), Some(s)) = (find(Kind::Envoy), find(Kind::Sextant)) else {
            continue;
        };
        ratios(protocol, e, s);
    }
    println!(
        "failures = non-2xx responses + requests without a response, closed loop + fixed rate"
    );
    for (i, r) in rows.iter().enumerate() {
        details(r, i == 0 || rows[i - 1].proxy != r.proxy);
    }
}

/// The sextant/Envoy ratios of one protocol and whether the goals hold.
fn ratios(protocol: Protocol, e: &Row, s: &Row) {
    let max_rps = |r: &Row| r.max.as_ref().ok().map(|m| m.outcome.rps);
    let per_cpu = |r: &Row| r.max.as_ref().ok().and_then(Phase::per_cpu_second);
    let p = |r: &Row, f: fn(&Percentiles) -> Option<Duration>| {
        r.latency().as_ref().and_then(f).map(|d| d.as_secs_f64())
    };
    let p99 = |r: &Row| p(r, |l| Some(l.p99));
    let rss = |r: &Row| r.rss_load().map(|b| b as f64);
    let idle = |r: &Row| r.rss_idle.map(|b| b as f64);
    println!(
        "{:<8} {:<8} {:>9} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "s/envoy",
        protocol.name(),
        times(ratio(max_rps(s), max_rps(e))),
        "",
        times(ratio(per_cpu(s), per_cpu(e))),
        "",
        times(ratio(p(s, |l| Some(l.p50)), p(e, |l| Some(l.p50)))),
        times(ratio(p99(s), p99(e))),
        times(ratio(p(s, |l| l.p999), p(e, |l| l.p999))),
        times(ratio(idle(s), idle(e))),
        times(ratio(rss(s), rss(e))),
    );
    let cpu = ratio(per_cpu(s), per_cpu(e));
    let lat = p99(s).zip(p99(e));
    let mem = ratio(rss(s), rss(e));
    println!(
        "  goals {}: rps per CPU-second ≥ {THROUGHPUT_GOAL}× Envoy's: {} ({}); p99 at the fixed rate ≤ Envoy's: {} \
         ({} vs {} ms); RSS under load ≤ ¼ of Envoy's: {} ({})",
        protocol.name(),
        verdict(cpu.map(|c| c >= THROUGHPUT_GOAL)),
        times(cpu),
        verdict(lat.map(|(s, e)| s <= e)),
        ms(p99(s).map(Duration::from_secs_f64)),
        ms(p99(e).map(Duration::from_secs_f64)),
        verdict(mem.map(|m| m <= RSS_GOAL)),
        times(mem),
    );
}

/// Where one row's numbers came from, and what failed.
fn details(r: &Row, first_of_proxy: bool) {
    if first_of_proxy {
        println!(
            "  {} idle: VmRSS {}, of which anonymous (RssAnon) {}, file-backed (RssFile) {}",
            r.proxy.name(),
            mb(r.rss_idle),
            mb(r.anon_idle),
            mb(r.file_idle)
        );
    }
    for (what, phase) in [("closed loop", &r.max), ("fixed rate", &r.fixed)] {
        match phase {
            Ok(p) => {
                let lat = p.outcome.latency.map_or_else(String::new, |l| {
                    format!(
                        "; latency p50 {} / p99 {} ms over {} 2xx responses",
                        ms(Some(l.p50)),
                        ms(Some(l.p99)),
                        l.samples
                    )
                });
                println!(
                    "  {} {} {what}: {:.0} rps, {} responses ({} 2xx) in {:.1} s; proxy CPU {} s; {}; backend saw {} \
                     requests on {} new connections{lat}{}",
                    r.proxy.name(),
                    r.protocol.name(),
                    p.outcome.rps,
                    p.outcome.responses,
                    p.outcome.ok,
                    p.wall.as_secs_f64(),
                    p.cpu.map_or_else(|| "?".into(), |c| format!("{c:.2}")),
                    sample::describe_busy(&p.busy),
                    p.backend.requests,
                    p.backend.connections,
                    if p.outcome.error_detail.is_empty() {
                        String::new()
                    } else {
                        format!("; FAILURES: {}", p.outcome.error_detail)
                    }
                );
            }
            Err(e) => println!(
                "  {} {} {what}: FAILED: {e}",
                r.proxy.name(),
                r.protocol.name()
            ),
        }
    }
}
