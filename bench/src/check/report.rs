//! Printing: the set-up, one progress line per run, then the tables, the ratios and the goals.

use hdrhistogram::Histogram;
use sextant_bench::cpu;
use sextant_bench::load::Shape;

use crate::config::{RATE_LIMITS, RULES_PER_POLICY, SERVICES, USERS};
use crate::load::{ClosedResult, Counts, OpenResult, Role, Target};

/// Throughput goal: hub ÷ empty server.
const GOAL_RATIO: f64 = 0.6;
/// Latency goal at the common open-loop rate: p99 in ns.
const GOAL_P99_NS: u64 = 1_000_000;
/// Goal against OPA: hub ÷ OPA decisions per server CPU-second.
const GOAL_OPA: f64 = 5.0;

/// What the run is made of.
pub struct Header {
    /// Logical cores of the machine.
    pub cores: usize,
    /// The CPUs the server and the client side are pinned to, if they are.
    pub pinned: Option<(usize, usize)>,
    /// Worker threads of the client runtime.
    pub client_threads: usize,
    /// Load shape.
    pub shape: Shape,
    /// The open loops' rate as a fraction of a maximum.
    pub open_at: f64,
    /// Policies loaded in the hub.
    pub policies: usize,
    /// Rules loaded in the hub.
    pub rules: usize,
    /// Rate limits loaded in the hub.
    pub rate_limits: usize,
    /// Distinct requests.
    pub variants: usize,
    /// Fraction of requests the policies deny.
    pub expected_deny: f64,
    /// OPA, or why it is not compared.
    pub opa: Result<(), String>,
}

/// Prints the set-up.
pub fn print_header(h: &Header) {
    println!("Sextant hub Check benchmark (check-bench)");
    println!(
        "  machine: {} logical cores (std::thread::available_parallelism)",
        h.cores
    );
    println!(
        "  servers: empty tonic server and hub in this process (loopback TCP) on a tokio runtime with 1 worker"
    );
    println!(
        "          (threads \"{}\"); OPA a child process started on the same CPU",
        cpu::SERVER_THREADS
    );
    println!(
        "  client: a tokio runtime with {} workers (threads \"{}\") and, in open loops, a pacer thread; requests",
        h.client_threads,
        cpu::CLIENT_THREADS
    );
    println!("          encoded once, sent on hyper HTTP/2 connections (h2c), no tonic client");
    match h.pinned {
        Some((server, client)) => {
            println!("  pinned: server side (and OPA) to CPU {server}, client side to CPU {client}")
        }
        None => println!("  not pinned: the kernel places every thread"),
    }
    println!(
        "  hub config: {} Policy with {} rules over {} services (generated {}×{}), {} RateLimit (expected {}), all",
        h.policies, h.rules, SERVICES, SERVICES, RULES_PER_POLICY, h.rate_limits, RATE_LIMITS
    );
    println!("          selecting the traffic, limits too high to refuse (decisions uncacheable)");
    match &h.opa {
        Ok(()) => println!(
            "  OPA {}: the same {} rules in Rego written from the same description (no RateLimits: OPA has no
          counterpart), asked through its {}",
            crate::opa::VERSION,
            h.rules,
            crate::opa::DOOR
        ),
        Err(why) => println!("  OPA: not compared ({why})"),
    }
    println!(
        "  traffic: {} variants ({} services × {} users), 80% GET/15% POST/5% DELETE, 90% /api/.., {:.1}% denied by policy",
        h.variants,
        SERVICES,
        USERS,
        h.expected_deny * 100.0
    );
    println!(
        "  closed loop: {} calls in flight over {} HTTP/2 connections; warm-up {}, measured {} per target",
        h.shape.concurrency,
        h.shape.connections,
        humantime::format_duration(h.shape.warmup),
        humantime::format_duration(h.shape.duration)
    );
    println!(
        "  open loops: evenly spaced arrivals at {:.0}% of the empty server's maximum for every target but OPA, and at",
        h.open_at * 100.0
    );
    println!(
        "          {:.0}% of OPA's maximum for OPA and the hub's ext_authz door; latency from each call's intended",
        h.open_at * 100.0
    );
    println!("          send time (no coordinated omission)");
    println!("  the empty server is sent the same plain native requests as \"hub native plain\"");
    println!();
}

/// Prints the hub-vs-OPA decision check.
pub fn print_agreement(a: &crate::opa::Agreement) {
    println!(
        "Decisions compared before measuring: all {} requests asked once of the hub (ext_authz) and of OPA: {} disagreement(s)",
        a.checked,
        a.disagreements.len()
    );
    println!(
        "  ({} denied by the hub; against the benchmark's expectation: hub {} off, OPA {} off; compared: allowed/denied",
        a.denied, a.unexpected.0, a.unexpected.1
    );
    println!("   and the staff header the `staff` rule sets)");
    for (req, hub, opa) in a.disagreements.iter().take(20) {
        println!("  - {req}: hub {hub}, OPA {opa}");
    }
    if a.disagreements.len() > 20 {
        println!("  - … {} more", a.disagreements.len() - 20);
    }
    println!();
}

/// Formats nanoseconds as µs or ms.
pub fn fmt_ns(ns: u64) -> String {
    if ns < 1_000_000 {
        format!("{:.0}µs", ns as f64 / 1e3)
    } else {
        format!("{:.2}ms", ns as f64 / 1e6)
    }
}

/// The value at `quantile` of `h`.
pub fn q(h: &Histogram<u64>, quantile: f64) -> u64 {
    h.value_at_quantile(quantile)
}

/// A share as a percentage, `n/a` when unknown.
pub fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{:.0}%", v * 100.0))
}

/// Decision counts as `ok/deny/429/other/err` (err: every failed call, shed ones included).
pub fn counts(c: &Counts) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        c.ok,
        c.denied,
        c.exhausted,
        c.other,
        c.failed()
    )
}

/// One line after a closed-loop run.
pub fn print_closed_progress(target: &Target, r: &ClosedResult) {
    eprintln!(
        "[closed] {:<22} {:>9.0} calls/s  p50 {}  p99 {}",
        target.name,
        r.rate,
        fmt_ns(q(&r.latency, 0.5)),
        fmt_ns(q(&r.latency, 0.99))
    );
}

/// One line after an open-loop run.
pub fn print_open_progress(target: &Target, r: &OpenResult) {
    eprintln!(
        "[open]   {:<22} {:>9.0} calls/s target, {:.0} achieved  p50 {}  p99 {}",
        target.name,
        r.target_rate,
        r.achieved,
        fmt_ns(q(&r.latency, 0.5)),
        fmt_ns(q(&r.latency, 0.99))
    );
}

/// Microseconds with one decimal, `n/a` when unknown.
pub fn us(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

/// One target's runs: its closed loop and its open loops (one or two rates).
pub struct Measured {
    /// The target.
    pub target: Target,
    /// Its closed loop.
    pub closed: ClosedResult,
    /// Its open loops, in the order of their rates.
    pub open: Vec<OpenResult>,
}

impl Measured {
    /// Decisions per server CPU-second at the maximum.
    pub fn per_cpu_second(&self) -> Option<f64> {
        per_cpu_second(&self.closed.cpu, self.closed.rate)
    }

    /// The open loop at `rate`, if it ran one.
    fn open_at(&self, rate: f64) -> Option<&OpenResult> {
        self.open
            .iter()
            .find(|o| (o.target_rate - rate).abs() <= rate * 1e-9)
    }
}

/// Calls per server CPU-second: the rate over the server's CPU-seconds per second.
fn per_cpu_second(cpu: &cpu::Usage, rate: f64) -> Option<f64> {
    cpu.server.filter(|s| *s > 0.0).map(|s| rate / s)
}

/// A count per second in thousands.
fn k(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{:.1}k", v / 1e3))
}

/// CPU-seconds per second (cores), two decimals.
fn cores(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
}

/// The table, the ratios and the goals.
pub fn print_summary(measured: &[Measured], open_at: f64) {
    let base = measured.iter().find(|m| m.target.role == Role::Baseline);
    let base_per_cpu = base.and_then(Measured::per_cpu_second);
    println!();
    println!(
        "{:<22} {:>5} | {:>8} {:>5} {:>5} {:>5} {:>8} {:>6} | {:>7} {:>8} {:>8} {:>5} {:>5} {:>5} {:>8}  ok/deny/429/other/err",
        "", "", "maximum", "", "", "", "", "", "open loop", "", "", "", "", "", ""
    );
    println!(
        "{:<22} {:>5} | {:>8} {:>5} {:>5} {:>5} {:>8} {:>6} | {:>7} {:>8} {:>8} {:>5} {:>5} {:>5} {:>8}  (open loop)",
        "target",
        "req B",
        "calls/s",
        "srv",
        "cli",
        "cli 1",
        "per srv",
        "×empty",
        "rate",
        "p50",
        "p99",
        "srv",
        "cli",
        "cli 1",
        "lag p99",
    );
    for m in measured {
        let c = &m.closed;
        let per_cpu = m.per_cpu_second();
        let vs_empty = match (per_cpu, base_per_cpu) {
            (Some(h), Some(b)) if m.target.role != Role::Baseline => format!("{:.2}×", h / b),
            _ => "-".to_string(),
        };
        let closed_cols = format!(
            "{:>8.0} {:>5} {:>5} {:>5} {:>8} {:>6}",
            c.rate,
            cores(c.cpu.server),
            cores(c.cpu.client),
            pct(c.client_busiest),
            k(per_cpu),
            vs_empty
        );
        let blank = format!(
            "{:>8} {:>5} {:>5} {:>5} {:>8} {:>6}",
            "", "", "", "", "", ""
        );
        if m.open.is_empty() {
            println!(
                "{:<22} {:>5} | {closed_cols} |",
                m.target.name, m.target.request_bytes
            );
        }
        for (i, o) in m.open.iter().enumerate() {
            let (name, bytes, cols) = if i == 0 {
                (
                    m.target.name.to_string(),
                    m.target.request_bytes.to_string(),
                    &closed_cols,
                )
            } else {
                ("  (at OPA's rate)".to_string(), String::new(), &blank)
            };
            println!(
                "{name:<22} {bytes:>5} | {cols} | {:>7.0} {:>8} {:>8} {:>5} {:>5} {:>5} {:>8}  {}",
                o.target_rate,
                fmt_ns(q(&o.latency, 0.5)),
                fmt_ns(q(&o.latency, 0.99)),
                cores(o.cpu.server),
                cores(o.cpu.client),
                pct(o.client_busiest),
                fmt_ns(q(&o.lag, 0.99)),
                counts(&o.counts)
            );
        }
    }
    println!(
        "  maximum: closed loop; srv / cli: the server's and the client's CPU-seconds per second (1.00 = one core busy;"
    );
    println!(
        "  OPA's from /proc/PID/stat); cli 1: the busiest client thread's share of a core; per srv: calls per server"
    );
    println!(
        "  CPU-second; ×empty: that against the empty server's. Open loop: at {:.0}% of the empty server's maximum (OPA",
        open_at * 100.0
    );
    println!(
        "  and the ext_authz row below it: of OPA's); p50/p99 from each call's intended send time; lag: how late the"
    );
    println!("  pacer sent; counts: ok/denied/rate-limited/other codes/failed calls");
    println!();
    print_ratios(measured, base);
    print_notes(measured);
}

/// The ratios to the empty server and to OPA, and the goals.
fn print_ratios(measured: &[Measured], base: Option<&Measured>) {
    println!(
        "Ratios and goals (same run; goals: throughput ≥ {GOAL_RATIO:.1}× empty server, p99 ≤ 1 ms at the common rate,"
    );
    println!(
        "  ≥ {GOAL_OPA:.0}× OPA's decisions per server CPU-second with a lower p99 at the same rate)"
    );
    let mut all_met = true;
    let hubs = measured.iter().filter(|m| m.target.role == Role::Hub);
    for m in hubs {
        let common = m.open.first();
        let p99 = common.map(|o| q(&o.latency, 0.99));
        let p99_ok =
            common.is_some_and(|o| q(&o.latency, 0.99) <= GOAL_P99_NS && o.unfinished == 0);
        all_met &= p99_ok;
        let Some(b) = base else {
            println!(
                "  {:<22} p99 at {:.0}/s: {}: {}",
                m.target.name,
                common.map_or(0.0, |o| o.target_rate),
                p99.map_or_else(|| "n/a".to_string(), fmt_ns),
                met(p99_ok)
            );
            continue;
        };
        let ratio = m.closed.rate / b.closed.rate.max(f64::MIN_POSITIVE);
        all_met &= ratio >= GOAL_RATIO;
        let per_cpu = match (m.per_cpu_second(), b.per_cpu_second()) {
            (Some(h), Some(e)) => format!("{:.2}× ({}/{})", h / e, k(Some(h)), k(Some(e))),
            _ => "n/a".to_string(),
        };
        let base_p99 = b.open.first().map(|o| q(&o.latency, 0.99));
        println!(
            "  {:<22} throughput {:.2}× empty: {:<7} per server CPU-second {}; p99 at {:.0}/s {} (empty {}): {}",
            m.target.name,
            ratio,
            met(ratio >= GOAL_RATIO),
            per_cpu,
            common.map_or(0.0, |o| o.target_rate),
            p99.map_or_else(|| "n/a".to_string(), fmt_ns),
            base_p99.map_or_else(|| "n/a".to_string(), fmt_ns),
            met(p99_ok)
        );
    }
    let hub_authz = measured.iter().find(|m| m.target.name == "hub ext_authz");
    let peer = measured.iter().find(|m| m.target.role == Role::Peer);
    if let (Some(h), Some(p)) = (hub_authz, peer) {
        let at = p.open.first().map(|o| o.target_rate);
        let (hp, pp) = (
            at.and_then(|r| h.open_at(r)).map(|o| q(&o.latency, 0.99)),
            p.open.first().map(|o| q(&o.latency, 0.99)),
        );
        let (hc, pc) = (h.per_cpu_second(), p.per_cpu_second());
        let ratio = hc.zip(pc).map(|(h, p)| h / p);
        let cpu_ok = ratio.is_some_and(|r| r >= GOAL_OPA);
        let p99_ok = matches!((hp, pp), (Some(h), Some(p)) if h < p);
        all_met &= cpu_ok && p99_ok;
        println!(
            "  hub ext_authz vs OPA     decisions per server CPU-second {} ({} / {}): {}; p99 at {:.0}/s {} vs {}: {}",
            ratio.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}×")),
            k(hc),
            k(pc),
            met(cpu_ok),
            at.unwrap_or(0.0),
            hp.map_or_else(|| "n/a".to_string(), fmt_ns),
            pp.map_or_else(|| "n/a".to_string(), fmt_ns),
            met(p99_ok)
        );
        println!(
            "    (maximum {:.0} vs {:.0} calls/s; p50 at that rate {} vs {})",
            h.closed.rate,
            p.closed.rate,
            at.and_then(|r| h.open_at(r))
                .map_or_else(|| "n/a".to_string(), |o| fmt_ns(q(&o.latency, 0.5))),
            p.open
                .first()
                .map_or_else(|| "n/a".to_string(), |o| fmt_ns(q(&o.latency, 0.5)))
        );
    }
    println!(
        "  overall: {}",
        if all_met {
            "all goals met"
        } else {
            "goals NOT all met"
        }
    );
}

/// What to read the numbers with: a saturated client, failed calls, open loops that fell short.
fn print_notes(measured: &[Measured]) {
    let mut notes = Vec::new();
    for m in measured {
        let c = &m.closed;
        if c.cpu.client.is_some_and(|x| x >= 0.9) || c.client_busiest.is_some_and(|x| x >= 0.7) {
            notes.push(format!(
                "{}: the client used {} of its core (busiest thread {}) at the maximum, so that rate may be partly \
                 the client's; calls per server CPU-second do not depend on it",
                m.target.name,
                cores(c.cpu.client),
                pct(c.client_busiest)
            ));
        }
        if c.counts.exhausted > 0 || c.counts.failed() > 0 || c.counts.other > 0 {
            notes.push(format!(
                "{}: {} rate-limited, {} other codes, {} failed calls in the closed loop (expected none)",
                m.target.name,
                c.counts.exhausted,
                c.counts.other,
                c.counts.failed()
            ));
        }
        for o in &m.open {
            if o.achieved < o.target_rate * 0.97 || o.unfinished > 0 {
                notes.push(format!(
                    "{}: the open loop achieved {:.0} of {:.0} calls/s, {} unanswered",
                    m.target.name, o.achieved, o.target_rate, o.unfinished
                ));
            }
            if o.cpu.client.is_some_and(|x| x >= 0.9) {
                notes.push(format!(
                    "{}: the client's core was {} busy in the open loop at {:.0}/s (its threads {} at most): \
                     latency at that rate is partly the client's",
                    m.target.name,
                    cores(o.cpu.client),
                    o.target_rate,
                    pct(o.client_busiest)
                ));
            }
            if o.client_busiest.is_some_and(|x| x >= 0.7) {
                notes.push(format!(
                    "{}: a client thread was {} busy in the open loop at {:.0}/s",
                    m.target.name,
                    pct(o.client_busiest),
                    o.target_rate
                ));
            }
        }
    }
    if let Some(e) = crate::wire::first_error() {
        notes.push(format!("the first call that failed without an answer: {e}"));
    }
    if !notes.is_empty() {
        println!();
        println!("Notes");
        for n in notes {
            println!("  - {n}");
        }
    }
}

/// The middle value of `v` (the upper one of an even count); the default when empty.
fn median<T: Ord + Copy + Default>(v: &[T]) -> T {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms_list(v: &[u64]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|ns| format!("{:.2}", *ns as f64 / 1e6))
        .collect();
    items.join(" ")
}

/// `met` or `NOT met`.
pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// The reload scenario's run, split into its two kinds of window.
pub struct Reloads {
    /// Policies in the rewritten configuration.
    pub policies: usize,
    /// How long its first load took (write to serving revision).
    pub first_load: std::time::Duration,
    /// For each rewrite, how long until the hub served it.
    pub reload_times: Vec<std::time::Duration>,
    /// p99 of each window, quiet and reloading, in order.
    pub window_p99: (Vec<u64>, Vec<u64>),
    /// The calls of the windows where it was left alone.
    pub quiet: OpenResult,
    /// The calls of the windows where it was reloaded.
    pub reloading: OpenResult,
}

/// Prints the reload scenario: p99 while reloading against p99 left alone, in the same run.
pub fn print_reloads(r: &Reloads) {
    let (quiet, reloading) = (q(&r.quiet.latency, 0.99), q(&r.reloading.latency, 0.99));
    let ratio = reloading as f64 / quiet.max(1) as f64;
    println!();
    println!(
        "Reloads: {} more policies ({} rules; first load {:.2?}); {} reloads under load, write to serving p50 {:.2?}, max {:.2?}",
        r.policies,
        r.policies * 5,
        r.first_load,
        r.reload_times.len(),
        median(&r.reload_times),
        r.reload_times.iter().max().copied().unwrap_or_default(),
    );
    println!(
        "  hub native plain at {:.0}/s, {} / {} calls in quiet / reloading windows (alternating, each as long as the reload before it + 250 ms)",
        r.quiet.target_rate,
        r.quiet.counts.total(),
        r.reloading.counts.total(),
    );
    println!(
        "  p99 {} left alone, {} while reloading: {ratio:.2}× (goal ≤ 1.20×: {}); p99.9 {} / {}",
        fmt_ns(quiet),
        fmt_ns(reloading),
        met(ratio <= 1.2),
        fmt_ns(q(&r.quiet.latency, 0.999)),
        fmt_ns(q(&r.reloading.latency, 0.999)),
    );
    let (mq, mr) = (median(&r.window_p99.0), median(&r.window_p99.1));
    println!(
        "  median of the windows' p99 (a machine stall spoils one window, not the median): {} left alone, {} while reloading: {:.2}×; each window's p99 (ms): quiet {}, reloading {}",
        fmt_ns(mq),
        fmt_ns(mr),
        mr as f64 / mq.max(1) as f64,
        ms_list(&r.window_p99.0),
        ms_list(&r.window_p99.1),
    );
    println!(
        "  left alone / reloading: p99 from actual send {} / {}, client lag p99 {} / {}, server CPU {} / {}, client CPU {} / {}",
        fmt_ns(q(&r.quiet.service, 0.99)),
        fmt_ns(q(&r.reloading.service, 0.99)),
        fmt_ns(q(&r.quiet.lag, 0.99)),
        fmt_ns(q(&r.reloading.lag, 0.99)),
        pct(r.quiet.cpu.server),
        pct(r.reloading.cpu.server),
        pct(r.quiet.cpu.client),
        pct(r.reloading.cpu.client),
    );
    println!(
        "  waiting for a CPU (share of wall time), left alone / reloading: server {} / {}, client {} / {}",
        pct(r.quiet.cpu.server_waiting),
        pct(r.reloading.cpu.server_waiting),
        pct(r.quiet.cpu.client_waiting),
        pct(r.reloading.cpu.client_waiting),
    );
}
