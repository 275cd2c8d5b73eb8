//! The pilot-bench output: the setup, progress lines while it runs, then a small table and the goals
//! (reported, never asserted).

use std::collections::BTreeMap;
use std::time::Duration;

use sextant_bench::process::Memory;

/// Goal: p99 of file write → every proxy ACKed the change.
const LATENCY_GOAL: Duration = Duration::from_secs(1);
/// Goal: pilot's resident memory in bytes, up to [`SMALL_MESH`] proxies and beyond.
const RSS_GOAL: (u64, u64) = (200 << 20, 500 << 20);
/// The most proxies the smaller memory goal is for.
const SMALL_MESH: usize = 1000;

/// What the run is.
pub struct Header {
    /// Cores available.
    pub cores: usize,
    /// Simulated proxies.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// `delta` or `state of the world`.
    pub protocol: &'static str,
    /// Services, endpoints per service.
    pub services: usize,
    /// Endpoints per service.
    pub endpoints: usize,
    /// Configuration files and their bytes.
    pub files: (usize, usize),
    /// With `--kubernetes`: the objects created through the API server (the files are then none).
    pub kubernetes: Option<usize>,
    /// The pilot binary and its pid.
    pub pilot: (String, u32),
    /// Pilot's log file.
    pub log: std::path::PathBuf,
}

/// Prints the setup.
pub fn header(h: &Header) {
    println!(
        "pilot-bench: {} simulated Envoy sidecars on {} ADS ({}) ← `sextant pilot` as a child process",
        h.clients,
        h.protocol,
        h.protocol_rpc()
    );
    println!(
        "machine: {} cores shared by pilot and the load client (one tokio worker); {} streams over {} HTTP/2 connections",
        h.cores, h.clients, h.connections
    );
    if let Some(objects) = h.kubernetes {
        println!(
            "mesh: {} services × {} endpoints through a real kube-apiserver: per service a Service, an EndpointSlice, \
             a DestinationRule (subsets v1, v2) and a VirtualService (90/10); {objects} objects; pilot --registry \
             kubernetes with an empty directory",
            h.services, h.endpoints
        );
        println!(
            "change: svc-0's VirtualService patched 90/10 → 50/50 through the API server; latency = the patch → the \
             proxy ACKed the new route configuration (pilot's watch, debounced 100 ms: its defaults)"
        );
    } else {
        println!(
            "mesh: {} services × {} endpoints: per service a ServiceEntry (1 HTTP port, STATIC endpoints labelled \
             version v1|v2), a DestinationRule (subsets v1, v2) and a VirtualService (90/10); {} files, {:.1} MB of YAML",
            h.services,
            h.endpoints,
            h.files.0,
            h.files.1 as f64 / 1e6
        );
        println!(
            "change: svc-0's VirtualService rewritten 90/10 → 50/50; latency = file write → the proxy ACKed the new \
             route configuration (pilot watches its directory with inotify and takes a change once no event came for 50 ms: its defaults)"
        );
    }
    println!(
        "pilot: {} (pid {}), log {}\n",
        h.pilot.0,
        h.pilot.1,
        h.log.display()
    );
}

impl Header {
    fn protocol_rpc(&self) -> &'static str {
        if self.protocol == "delta" {
            "DeltaAggregatedResources"
        } else {
            "StreamAggregatedResources"
        }
    }
}

/// Mebibytes, one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
}

/// A memory sample for a progress line.
pub fn rss(m: Option<Memory>) -> String {
    m.map_or_else(|| "n/a".to_string(), |m| mb(m.rss))
}

/// The `q` quantile (nearest rank) of sorted `v`.
pub fn quantile(v: &[Duration], q: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Milliseconds, or `—`.
fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "—".to_string(),
        |d| format!("{:.0} ms", d.as_secs_f64() * 1e3),
    )
}

/// What was measured.
pub struct Results {
    /// Simulated proxies.
    pub clients: usize,
    /// From the first connection to every proxy synced.
    pub sync_wall: Option<Duration>,
    /// Each proxy's time to sync (sorted).
    pub sync_times: Vec<Duration>,
    /// Payload received by the time every proxy was synced.
    pub sync_bytes: u64,
    /// Each proxy's change latency (sorted).
    pub change: Vec<Duration>,
    /// From the file write to pilot's log saying it loaded the changed directory, and how long that load
    /// took by its own account (the rest is detection).
    pub reload: Option<(Duration, Duration)>,
    /// Responses per type after the change.
    pub after_change: BTreeMap<&'static str, u64>,
    /// Pilot's and the load client's CPU seconds from the change until every proxy ACKed it.
    pub change_cpu: (Option<f64>, Option<f64>),
    /// Pilot's and the load client's CPU seconds during the initial sync.
    pub sync_cpu: (Option<f64>, Option<f64>),
    /// Pilot's memory: ready and idle, after the sync, after the change.
    pub memory: [Option<Memory>; 3],
    /// Stream failures.
    pub errors: u64,
}

/// CPU seconds, or `n/a`.
fn cpu(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".to_string(), |s| format!("{s:.1} s"))
}

/// Prints the table and the goals.
pub fn summary(r: &Results) {
    println!("\n== results ==");
    let n = r.clients;
    println!(
        "initial sync (connect, every type ACKed, EDS and RDS complete): all {n} in {} \
         (per proxy p50 {}, p99 {}, max {}); {} received, {} per proxy; CPU pilot {}, load client {}",
        ms(r.sync_wall),
        ms(quantile(&r.sync_times, 0.5)),
        ms(quantile(&r.sync_times, 0.99)),
        ms(r.sync_times.last().copied()),
        mb(r.sync_bytes),
        mb(r.sync_bytes / n.max(1) as u64),
        cpu(r.sync_cpu.0),
        cpu(r.sync_cpu.1),
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "change → new routes ACKed", "min", "p50", "p99", "max", "proxies"
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "",
        ms(r.change.first().copied()),
        ms(quantile(&r.change, 0.5)),
        ms(quantile(&r.change, 0.99)),
        ms(r.change.last().copied()),
        format!("{}/{n}", r.change.len())
    );
    println!(
        "  of which change → pilot loaded and translated the configuration (its log): {}: detected after {}, \
         then {} reading, parsing, validating and translating; the rest is the push to each proxy",
        ms(r.reload.map(|(all, _)| all)),
        ms(r.reload.map(|(all, took)| all.saturating_sub(took))),
        ms(r.reload.map(|(_, took)| took)),
    );
    let pushes: Vec<String> = r
        .after_change
        .iter()
        .map(|(t, c)| format!("{t} {c}"))
        .collect();
    println!(
        "responses after the change: {} (CPU until the last ACK: pilot {}, load client {})",
        pushes.join(", "),
        cpu(r.change_cpu.0),
        cpu(r.change_cpu.1)
    );
    println!(
        "{:<44} {:>9} {:>11} {:>12} {:>14}",
        "pilot memory", "idle", "after sync", "after change", "peak (VmHWM)"
    );
    let [idle, sync, change] = r.memory;
    let peak = [idle, sync, change].iter().flatten().map(|m| m.hwm).max();
    println!(
        "{:<44} {:>9} {:>11} {:>12} {:>14}",
        "",
        rss(idle),
        rss(sync),
        rss(change),
        peak.map_or_else(|| "n/a".to_string(), mb)
    );
    if r.errors > 0 {
        println!("{} streams failed (see above)", r.errors);
    }
    let p99 = quantile(&r.change, 0.99);
    let all = r.change.len() == n;
    println!(
        "GOAL p99 ≤ {} ms from the change to every proxy's ACK: {}{} → {}",
        LATENCY_GOAL.as_millis(),
        ms(p99),
        if all {
            String::new()
        } else {
            format!(" ({} of {n} never ACKed it)", n - r.change.len())
        },
        if all && p99.is_some_and(|p| p <= LATENCY_GOAL) {
            "MET"
        } else {
            "NOT MET"
        }
    );
    let rss_goal = if n <= SMALL_MESH {
        RSS_GOAL.0
    } else {
        RSS_GOAL.1
    };
    match peak {
        Some(p) => println!(
            "GOAL pilot RSS ≤ {}: peak {} (after the change {}) → {}",
            mb(rss_goal),
            mb(p),
            rss(change),
            if p <= rss_goal { "MET" } else { "NOT MET" }
        ),
        None => println!("GOAL pilot RSS ≤ {}: unmeasured (no /proc)", mb(rss_goal)),
    }
}
