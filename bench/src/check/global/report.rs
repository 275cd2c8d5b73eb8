//! Printing for `check-bench --global`: the set-up, one table of the scenarios, the ratios against the LOCAL
//! baseline of the same run with the goals beside them (reported, never asserted), and notes.

use sextant_bench::cpu;
use sextant_bench::load::Shape;

use super::limits::{Limit, OVER_LIMIT_RATE_LIMIT};
use super::ratelimit_peer;
use super::redis_stats::{QuotaCounters, RedisDelta};
use super::setups::{Door, Regime, Servers, Setup};
use crate::load::{ClosedResult, OpenResult};
use crate::report::{counts, fmt_ns, met, pct, q, us};

/// GLOBAL p99 at half load, ns.
const GOAL_P99_NS: u64 = 1_000_000;
/// Redis commands per 100 decisions at steady load.
const GOAL_COMMANDS_PER_100: f64 = 1.0;
/// GLOBAL throughput ÷ LOCAL.
const GOAL_THROUGHPUT: f64 = 0.9;
/// The hub's decisions per CPU-second ÷ envoyproxy/ratelimit's.
const GOAL_VS_PEER: f64 = 10.0;

/// One scenario's measurements.
pub struct Measured {
    /// HTTP/2 connections of the client.
    pub connections: usize,
    /// The closed loop (maximum rate).
    pub closed: ClosedResult,
    /// The open loop at half of it.
    pub open: OpenResult,
    /// What Redis did during the open loop (warm-up included).
    pub redis: RedisDelta,
    /// What the hubs' GLOBAL backends counted during the open loop (zero without them).
    pub quota: QuotaCounters,
}

impl Measured {
    /// Server CPU µs per decision in the closed loop.
    fn cpu_us(&self) -> Option<f64> {
        per_decision_us(self.closed.cpu.server, self.closed.rate)
    }

    /// Server CPU µs per decision in the open loop.
    fn cpu_us_half(&self) -> Option<f64> {
        per_decision_us(self.open.cpu.server, self.open.achieved)
    }

    /// Redis commands per 1000 decisions in the open loop.
    fn redis_per_1000(&self) -> f64 {
        self.redis.commands() as f64 * 1000.0 / self.open.sent.max(1) as f64
    }

    /// Decisions made by the GLOBAL fallback per 1000 sent in the open loop.
    fn fallback_per_1000(&self) -> f64 {
        self.quota.fallbacks() as f64 * 1000.0 / self.open.sent.max(1) as f64
    }

    /// Redis CPU µs per decision in the open loop.
    fn redis_us(&self) -> f64 {
        self.redis.cpu_seconds * 1e6 / self.open.sent.max(1) as f64
    }

    /// p99 of the open loop, ns.
    fn p99(&self) -> u64 {
        q(&self.open.latency, 0.99)
    }
}

/// CPU µs per decision from a busy share of one core and a rate.
fn per_decision_us(busy: Option<f64>, rate: f64) -> Option<f64> {
    busy.filter(|_| rate > 0.0).map(|b| b * 1e6 / rate)
}

/// What the run is made of.
pub struct Header {
    /// Logical cores.
    pub cores: usize,
    /// The CPUs of the server and client sides, if pinned.
    pub pinned: Option<(usize, usize)>,
    /// Load shape.
    pub shape: Shape,
    /// The steady runs' limits.
    pub limits: Vec<Limit>,
    /// The over-limit runs' limit of `per-service`.
    pub over_limit: Limit,
    /// redis-server's version.
    pub redis: String,
    /// Whether envoyproxy/ratelimit built, or why not.
    pub peer: Result<(), String>,
}

/// Prints the set-up.
pub fn print_header(h: &Header) {
    println!("Sextant hub GLOBAL rate limits benchmark (check-bench --global)");
    println!("  machine: {} logical cores", h.cores);
    match h.pinned {
        Some((s, c)) => println!(
            "  layout: hubs on a 1-worker tokio runtime (threads \"{}\"), Redis and envoyproxy/ratelimit pinned to CPU {s};\n          load client on a 1-worker runtime (threads \"{}\") pinned to CPU {c}",
            cpu::SERVER_THREADS,
            cpu::CLIENT_THREADS
        ),
        None => println!("  layout: not pinned, the kernel places every thread"),
    }
    println!(
        "  Redis: {} on loopback, no persistence; GLOBAL hubs: hub-quota-redis defaults (overshoot 1%, decision budget 1 ms,\n          Redis timeout 100 ms, heartbeat 1 s), a key prefix per scenario",
        h.redis
    );
    let limits: Vec<String> = h.limits.iter().map(ToString::to_string).collect();
    let first = limits.first().cloned().unwrap_or_default();
    let last = limits.last().cloned().unwrap_or_default();
    println!(
        "  native Check: check-bench's plain traffic (1280 variants, 20 Policy, 5 RateLimit over 1345 buckets); every"
    );
    println!(
        "          RateLimit at the row's limit (requests/per+burst; GLOBAL rows at each of {}; LOCAL at {first})",
        limits.join(", ")
    );
    println!(
        "          \"over\" rows: `{OVER_LIMIT_RATE_LIMIT}` at {} (20 buckets), the other four at {last}: most calls refused",
        h.over_limit
    );
    println!(
        "  RLS: ShouldRateLimit, domain bench, descriptors [user] and [user, service] (64 + 1280 buckets), both at the row's limit"
    );
    match &h.peer {
        Ok(()) => println!(
            "  peer: envoyproxy/ratelimit {} ({}), fixed windows (no burst) in the same Redis, default settings",
            ratelimit_peer::VERSION,
            ratelimit_peer::MODULE
        ),
        Err(why) => println!("  peer: envoyproxy/ratelimit not available: {why}"),
    }
    println!(
        "  each scenario: closed loop {} in flight over {} HTTP/2 connections (rounded up to a multiple of the hubs),",
        h.shape.concurrency, h.shape.connections
    );
    println!(
        "          warm-up {}, measured {}; then an open loop at half of its maximum, same durations",
        humantime::format_duration(h.shape.warmup),
        humantime::format_duration(h.shape.duration)
    );
    println!();
}

/// Whether the scenario's hubs count GLOBAL limits in Redis.
fn is_global(s: &Setup) -> bool {
    matches!(s.servers, Servers::Hubs { global: true, .. })
}

fn servers_label(s: Servers) -> String {
    match s {
        Servers::Hubs { count: 1, .. } => "1 hub".to_string(),
        Servers::Hubs { count, .. } => format!("{count} hubs"),
        Servers::Peer => "peer".to_string(),
    }
}

/// Prints the table, the ratios and goals, and the notes.
pub fn print(setups: &[Setup], results: &[Result<Measured, String>]) {
    println!();
    println!(
        "GLOBAL rate limits: maximum (closed loop) and half of it (open loop, latency from intended send)"
    );
    println!(
        "{:<26} {:>20} {:>6} {:>5} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8}  ok/deny/429/other/err (half)",
        "scenario",
        "limit",
        "srv",
        "conns",
        "dec/s",
        "cpu µs",
        "half/s",
        "p50",
        "p99",
        "p99.9",
        "cpu µs",
        "redis/1k",
        "redis µs",
        "fallb/1k",
    );
    for (s, r) in setups.iter().zip(results) {
        match r {
            Ok(m) => println!(
                "{:<26} {:>20} {:>6} {:>5} {:>8.0} {:>7} {:>8.0} {:>8} {:>8} {:>8} {:>7} {:>8.1} {:>8.2} {:>8}  {}",
                s.name,
                s.limit.to_string(),
                servers_label(s.servers),
                m.connections,
                m.closed.rate,
                us(m.cpu_us()),
                m.open.target_rate,
                fmt_ns(q(&m.open.latency, 0.5)),
                fmt_ns(m.p99()),
                fmt_ns(q(&m.open.latency, 0.999)),
                us(m.cpu_us_half()),
                m.redis_per_1000(),
                m.redis_us(),
                if is_global(s) {
                    format!("{:.1}", m.fallback_per_1000())
                } else {
                    "-".to_string()
                },
                counts(&m.open.counts),
            ),
            Err(why) => println!(
                "{:<26} {:>20} {:>6} skipped: {}",
                s.name,
                s.limit.to_string(),
                servers_label(s.servers),
                why.lines().next().unwrap_or_default()
            ),
        }
    }
    println!(
        "  (dec/s: decisions per second at the maximum; cpu µs: server CPU per decision, at the maximum then at half"
    );
    println!(
        "   load: the hubs' runtime threads, or the peer's utime+stime; half/s: the open loop's rate; redis/1k:"
    );
    println!(
        "   requests to Redis per 1000 decisions sent in the open loop, warm-up included (INFO commandstats: the"
    );
    println!(
        "   hubs' EVALSHA/EVAL, not the commands their scripts run inside Redis; every command of the peer);"
    );
    println!(
        "   redis µs: Redis's CPU per decision, same window; fallb/1k: GLOBAL decisions made without Redis"
    );
    println!("   (sextant_quota_fallback_total) per 1000, same window)");
    println!();
    print_ratios(setups, results);
    print_notes(setups, results);
}

/// The measurement of the scenario matching `f`, if it ran.
fn find<'a>(
    setups: &[Setup],
    results: &'a [Result<Measured, String>],
    f: impl Fn(&Setup) -> bool,
) -> Option<(&'a Measured, &'static str)> {
    setups
        .iter()
        .zip(results)
        .find(|(s, _)| f(s))
        .and_then(|(s, r)| r.as_ref().ok().map(|m| (m, s.name)))
}

fn print_ratios(setups: &[Setup], results: &[Result<Measured, String>]) {
    println!(
        "Ratios against the LOCAL hub of the same run, with the issue's goals (reported, never asserted)"
    );
    let local = |regime: Regime, count: usize| {
        find(setups, results, move |s| {
            s.door == Door::Native
                && s.regime == regime
                && s.servers
                    == Servers::Hubs {
                        count,
                        global: false,
                    }
        })
    };
    for (s, r) in setups.iter().zip(results) {
        let (Ok(m), true, Door::Native) = (r, is_global(s), s.door) else {
            continue;
        };
        let Some((base, base_name)) = local(s.regime, 1) else {
            continue;
        };
        println!("  {} ({}) against \"{base_name}\":", s.name, s.limit);
        global_against_local(s, m, base);
        let count = match s.servers {
            Servers::Hubs { count, .. } => count,
            Servers::Peer => 1,
        };
        if count > 1
            && let Some((control, control_name)) = local(s.regime, count)
        {
            println!(
                "    against \"{control_name}\" (the same hubs without Redis): throughput {:.2}×, p99 at half load {} against {}",
                m.closed.rate / control.closed.rate.max(f64::MIN_POSITIVE),
                fmt_ns(m.p99()),
                fmt_ns(control.p99())
            );
        }
    }
    let peer = find(setups, results, |s| s.servers == Servers::Peer);
    for (s, r) in setups.iter().zip(results) {
        let (Ok(h), true, Door::Rls) = (r, is_global(s), s.door) else {
            continue;
        };
        match peer {
            Some((p, pn)) => {
                println!(
                    "  {} ({}) against \"{pn}\" (ShouldRateLimit, same Redis):",
                    s.name, s.limit
                );
                hub_against_peer(h, p);
            }
            None => println!(
                "  {} ({}): envoyproxy/ratelimit not measured (see its row): goal ≥ {GOAL_VS_PEER}× its decisions per CPU-second not evaluated",
                s.name, s.limit
            ),
        }
    }
}

/// The lines of one GLOBAL native scenario against the LOCAL one of the same regime.
fn global_against_local(s: &Setup, m: &Measured, base: &Measured) {
    let throughput = m.closed.rate / base.closed.rate.max(f64::MIN_POSITIVE);
    let per_100 = m.redis_per_1000() / 10.0;
    match s.regime {
        Regime::Steady => {
            println!(
                "    throughput {throughput:.2}× ({:.0}/{:.0}): {} (goal ≥ {GOAL_THROUGHPUT}×)",
                m.closed.rate,
                base.closed.rate,
                met(throughput >= GOAL_THROUGHPUT)
            );
            println!(
                "    p99 at half load {} (LOCAL {}): {} (goal ≤ 1 ms)",
                fmt_ns(m.p99()),
                fmt_ns(base.p99()),
                met(m.p99() <= GOAL_P99_NS && m.open.unfinished == 0)
            );
            println!(
                "    Redis {per_100:.2} requests per 100 decisions at half load: {} (goal ≤ {GOAL_COMMANDS_PER_100})",
                met(per_100 <= GOAL_COMMANDS_PER_100)
            );
        }
        Regime::OverLimit => {
            let refused =
                |o: &OpenResult| o.counts.exhausted as f64 * 100.0 / o.counts.total().max(1) as f64;
            println!(
                "    throughput {throughput:.2}× ({:.0}/{:.0}); p99 at half load {} (LOCAL {}); refused {:.1}% (LOCAL {:.1}%)",
                m.closed.rate,
                base.closed.rate,
                fmt_ns(m.p99()),
                fmt_ns(base.p99()),
                refused(&m.open),
                refused(&base.open)
            );
            println!(
                "    Redis {per_100:.2} requests per 100 decisions at half load (the denial regime: no goal)"
            );
        }
    }
    if let (Some(g), Some(l)) = (m.cpu_us(), base.cpu_us()) {
        println!(
            "    hub CPU per decision at the maximum {:.2}× LOCAL's ({g:.1}/{l:.1} µs): decisions per hub CPU-second {:.2}× LOCAL's",
            g / l,
            l / g
        );
    }
}

/// The lines of the hub's rate-limit service against envoyproxy/ratelimit.
fn hub_against_peer(h: &Measured, p: &Measured) {
    match (h.cpu_us(), p.cpu_us()) {
        (Some(a), Some(b)) if a > 0.0 => println!(
            "    decisions per CPU-second at the maximum {:.0} against {:.0}: {:.1}×: {} (goal ≥ {GOAL_VS_PEER}×)",
            1e6 / a,
            1e6 / b,
            b / a,
            met(b / a >= GOAL_VS_PEER)
        ),
        _ => println!("    decisions per CPU-second: n/a (no CPU reading)"),
    }
    if let (Some(a), Some(b)) = (h.cpu_us_half(), p.cpu_us_half()) {
        println!(
            "    at half load {:.0} against {:.0} decisions per CPU-second: {:.1}×",
            1e6 / a,
            1e6 / b,
            b / a
        );
    }
    println!(
        "    decisions/s {:.0} against {:.0}; at half of each one's maximum p50 {} against {}, p99 {} against {}",
        h.closed.rate,
        p.closed.rate,
        fmt_ns(q(&h.open.latency, 0.5)),
        fmt_ns(q(&p.open.latency, 0.5)),
        fmt_ns(h.p99()),
        fmt_ns(p.p99())
    );
    println!(
        "    Redis requests per 1000 decisions {:.1} against {:.1}; Redis CPU per decision {:.2} against {:.2} µs",
        h.redis_per_1000(),
        p.redis_per_1000(),
        h.redis_us(),
        p.redis_us()
    );
}

fn print_notes(setups: &[Setup], results: &[Result<Measured, String>]) {
    let mut notes = Vec::new();
    for (s, r) in setups.iter().zip(results) {
        let name = format!("{} ({})", s.name, s.limit);
        let m = match r {
            Ok(m) => m,
            Err(why) => {
                notes.push(format!("{name}: not measured: {why}"));
                continue;
            }
        };
        if m.redis.commands() > 0 {
            notes.push(format!(
                "{name}: Redis in the open loop ({} calls sent), by command: {}",
                m.open.sent,
                m.redis.breakdown()
            ));
        }
        if is_global(s) {
            let q = &m.quota;
            let list = |map: &std::collections::BTreeMap<String, u64>| {
                let v: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            notes.push(format!(
                "{name}: the hubs' metrics in the open loop: sextant_quota_fallback_total {} ({}), Redis calls {}, errors {}, queue dropped {}",
                q.fallbacks(),
                list(&q.fallback),
                list(&q.commands),
                q.errors,
                q.dropped
            ));
        }
        if m.closed.cpu.client.is_some_and(|c| c >= 0.9) {
            notes.push(format!(
                "{name}: the client runtime was {} busy at the maximum (the rate may be partly client-bound)",
                pct(m.closed.cpu.client)
            ));
        }
        if m.open.achieved < m.open.target_rate * 0.97 || m.open.unfinished > 0 {
            notes.push(format!(
                "{name}: the open loop achieved {:.0} of {:.0} calls/s, {} unanswered",
                m.open.achieved, m.open.target_rate, m.open.unfinished
            ));
        }
        let c = &m.closed.counts;
        if c.errors > 0 || c.other > 0 || (s.regime == Regime::Steady && c.exhausted > 0) {
            notes.push(format!(
                "{name}: at the maximum {} refused by a limit, {} other codes, {} failed calls",
                c.exhausted, c.other, c.errors
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
