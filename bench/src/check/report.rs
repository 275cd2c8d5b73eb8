//! Printing: the set-up, one progress line per run, then the tables, the ratios and the goals.

use hdrhistogram::Histogram;
use sextant_bench::cpu;
use sextant_bench::load::Shape;

use crate::config::{RATE_LIMITS, RULES_PER_POLICY, SERVICES, USERS};
use crate::load::{ClosedResult, Counts, OpenResult, Role, Target};

/// Throughput goal: hub ÷ empty server.
const GOAL_RATIO: f64 = 0.6;
/// Latency goal at half load: p99 in ns.
const GOAL_P99_NS: u64 = 1_000_000;

/// What the run is made of.
pub struct Header {
    /// Logical cores of the machine.
    pub cores: usize,
    /// The CPUs the server and the client side are pinned to, if they are.
    pub pinned: Option<(usize, usize)>,
    /// Load shape.
    pub shape: Shape,
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
}

/// Prints the set-up.
pub fn print_header(h: &Header) {
    println!("Sextant hub Check benchmark (check-bench)");
    println!(
        "  machine: {} logical cores (std::thread::available_parallelism)",
        h.cores
    );
    println!(
        "  layout: one process; servers (empty tonic server and hub, loopback TCP) on a tokio multi-thread runtime"
    );
    println!(
        "          with 1 worker (threads \"{}\"), load client on a separate runtime with 1 worker",
        cpu::SERVER_THREADS
    );
    match h.pinned {
        Some((server, client)) => println!(
            "          (threads \"{}\"): server side pinned to CPU {server}, client side to CPU {client}",
            cpu::CLIENT_THREADS
        ),
        None => println!(
            "          (threads \"{}\"): not pinned, the kernel places them",
            cpu::CLIENT_THREADS
        ),
    }
    println!(
        "  hub config: {} Policy with {} rules over {} services (generated {}×{}), {} RateLimit (expected {}), all",
        h.policies, h.rules, SERVICES, SERVICES, RULES_PER_POLICY, h.rate_limits, RATE_LIMITS
    );
    println!("          selecting the traffic, limits too high to refuse (decisions uncacheable)");
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
        "  open loop: evenly spaced arrivals at half of each target's closed-loop rate, same warm-up/duration;"
    );
    println!(
        "          latency from each call's intended send time (no coordinated omission); the dispatcher"
    );
    println!(
        "          yields between sends instead of sleeping (tokio timers are 1 ms), so the client core stays busy"
    );
    println!("  the empty server is sent the same plain native requests as \"hub native plain\"");
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

/// Decision counts as `ok/deny/429/other/err`.
pub fn counts(c: &Counts) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        c.ok, c.denied, c.exhausted, c.other, c.errors
    )
}

fn deny_share(c: &Counts) -> String {
    let total = c.total();
    if total == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", c.denied as f64 * 100.0 / total as f64)
    }
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

/// Server CPU time per call in µs (server runtime busy share ÷ rate), when known.
fn server_us_per_call(cpu: Option<f64>, rate: f64) -> Option<f64> {
    cpu.filter(|_| rate > 0.0).map(|c| c * 1e6 / rate)
}

/// Microseconds with one decimal, `n/a` when unknown.
pub fn us(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

/// The tables, ratios and goals.
pub fn print_summary(targets: &[Target], closed: &[ClosedResult], open: &[OpenResult]) {
    println!();
    println!("Closed loop (maximum throughput)");
    println!(
        "{:<22} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5}  ok/deny/429/other/err",
        "target",
        "req B",
        "calls/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "srv cpu",
        "cli cpu",
        "srv µs",
        "deny"
    );
    for (tg, r) in targets.iter().zip(closed) {
        println!(
            "{:<22} {:>5} {:>8.0} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>5}  {}",
            tg.name,
            tg.request_bytes,
            r.rate,
            fmt_ns(q(&r.latency, 0.5)),
            fmt_ns(q(&r.latency, 0.99)),
            fmt_ns(q(&r.latency, 0.999)),
            fmt_ns(r.latency.max()),
            pct(r.cpu.server),
            pct(r.cpu.client),
            us(server_us_per_call(r.cpu.server, r.rate)),
            deny_share(&r.counts),
            counts(&r.counts)
        );
    }
    println!(
        "  (req B: mean request size; cpu: busy share of one core by that runtime's threads, 100% = one core"
    );
    println!("   saturated; srv µs: server CPU time per call)");
    println!();
    println!("Open loop at half of each target's maximum");
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5}  ok/deny/429/other/err",
        "target",
        "rate",
        "achieved",
        "p50",
        "p99",
        "p99.9",
        "max",
        "send p99",
        "lag p99",
        "srv cpu",
        "cli cpu",
        "unans"
    );
    for (tg, r) in targets.iter().zip(open) {
        println!(
            "{:<22} {:>8.0} {:>8.0} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>5}  {}",
            tg.name,
            r.target_rate,
            r.achieved,
            fmt_ns(q(&r.latency, 0.5)),
            fmt_ns(q(&r.latency, 0.99)),
            fmt_ns(q(&r.latency, 0.999)),
            fmt_ns(r.latency.max()),
            fmt_ns(q(&r.service, 0.99)),
            fmt_ns(q(&r.lag, 0.99)),
            pct(r.cpu.server),
            pct(r.cpu.client),
            r.unfinished,
            counts(&r.counts)
        );
    }
    println!(
        "  (p50..max: from each call's intended send time; send p99: from its actual send; lag p99: how late"
    );
    println!(
        "   the client sent; cli cpu includes the dispatcher's yield loop; unans: never answered)"
    );
    println!();

    let Some(base) = targets
        .iter()
        .position(|t| t.role == Role::Baseline)
        .and_then(|i| closed.get(i))
    else {
        return;
    };
    let base_us = server_us_per_call(base.cpu.server, base.rate);
    println!(
        "Ratios and goals (same run; goals: throughput ≥ {GOAL_RATIO:.1}× empty server, p99 ≤ 1 ms at half load)"
    );
    let mut all_met = true;
    let hubs = targets
        .iter()
        .zip(closed)
        .zip(open)
        .filter(|((t, _), _)| t.role == Role::Hub);
    for ((tg, c), o) in hubs {
        let ratio = if base.rate > 0.0 {
            c.rate / base.rate
        } else {
            0.0
        };
        let p99 = q(&o.latency, 0.99);
        let ratio_ok = ratio >= GOAL_RATIO;
        let p99_ok = p99 <= GOAL_P99_NS && o.unfinished == 0;
        all_met &= ratio_ok && p99_ok;
        let cpu_ratio = match (base_us, server_us_per_call(c.cpu.server, c.rate)) {
            (Some(b), Some(h)) if h > 0.0 => format!("{:.2}× ({b:.1}/{h:.1} µs)", b / h),
            _ => "n/a".to_string(),
        };
        println!(
            "  {:<22} throughput {:.2}× empty ({:.0}/{:.0}): {:<7}  p99 at {:.0}/s: {:>7}: {:<7}  CPU-normalised {}",
            tg.name,
            ratio,
            c.rate,
            base.rate,
            met(ratio_ok),
            o.target_rate,
            fmt_ns(p99),
            met(p99_ok),
            cpu_ratio
        );
    }
    let others = targets
        .iter()
        .zip(closed)
        .zip(open)
        .filter(|((t, _), _)| t.role != Role::Hub);
    for ((tg, c), o) in others {
        println!(
            "  ({} itself: {:.0} calls/s, p99.9 {} closed loop; p99 {} at half load)",
            tg.name,
            c.rate,
            fmt_ns(q(&c.latency, 0.999)),
            fmt_ns(q(&o.latency, 0.99))
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

    let mut notes = Vec::new();
    if base.cpu.client.is_some_and(|c| c >= 0.9) {
        notes.push(format!(
            "the client runtime was {} busy against the empty server, so that rate is partly client-bound and the \
             throughput ratios flatter the hub; the CPU-normalised ratio (empty's server µs per call ÷ the hub's) does not depend on the client",
            pct(base.cpu.client)
        ));
    }
    for (tg, c) in targets.iter().zip(closed) {
        if c.counts.exhausted > 0 || c.counts.errors > 0 || c.counts.other > 0 {
            notes.push(format!(
                "{}: {} rate-limited, {} other codes, {} failed calls (expected none)",
                tg.name, c.counts.exhausted, c.counts.other, c.counts.errors
            ));
        }
    }
    for (tg, o) in targets.iter().zip(open) {
        if o.achieved < o.target_rate * 0.97 {
            notes.push(format!(
                "{}: the open loop achieved {:.0} of {:.0} calls/s",
                tg.name, o.achieved, o.target_rate
            ));
        }
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
