//! The report-bench output: the setup, a line per finished run, then the end-to-end table with ratios and
//! goals, and the boundary table.

use sextant_bench::load::Shape;

use crate::boundary::Point;
use crate::load::Window;
use crate::servers::AdapterCounts;
use crate::traffic::{BAGS_PER_REPORT, Pool};

/// Goal: records (bags) per second per core, end to end.
const E2E_GOAL: f64 = 300_000.0;
/// Goal: marginal ns per record at the Wasm boundary.
const BOUNDARY_GOAL_NS: f64 = 100.0;

/// What the run is.
pub struct Header<'a> {
    /// Cores available.
    pub cores: usize,
    /// Load shape.
    pub shape: Shape,
    /// The Reports.
    pub pool: &'a Pool,
    /// Metric records the default Telemetry makes per bag.
    pub records_per_bag: f64,
}

/// Prints the setup.
pub fn header(h: &Header<'_>) {
    let s = h.shape;
    println!(
        "report-bench: hub Report → Telemetry (default Istio metrics) → prometheus Wasm adapter"
    );
    println!(
        "machine: {} cores; server and load client on one-worker tokio runtimes, the adapter on its own thread",
        h.cores
    );
    println!(
        "traffic: {} Reports × {BAGS_PER_REPORT} bags, delta-encoded, {} attributes per bag, {} label sets, \
         mean Report {} bytes; {:.0} metric records per bag (4 Istio HTTP metrics, 14 labels each)",
        h.pool.requests.len(),
        h.pool.attributes_per_bag,
        h.pool.label_sets,
        h.pool.mean_bytes,
        h.records_per_bag
    );
    println!(
        "load: closed loop, {} Reports in flight over {} connections; {:?} warm-up, {:?} window per run",
        s.concurrency, s.connections, s.warmup, s.duration
    );
    println!("a record = one reported attribute bag\n");
}

/// One line when a run finishes.
pub fn progress(name: &str, w: &Window) {
    println!(
        "  done: {name:<20} {:>10.0} bags/s acknowledged, {} errors",
        w.bags_per_sec(),
        w.errors
    );
}

/// What the host registry holds after the runs.
pub struct RegistryCheck {
    /// Sum of every `istio_requests_total` series (one per delivered bag).
    pub requests_total: f64,
    /// Number of `istio_requests_total` series.
    pub series: usize,
    /// Bags the adapter delivered over the whole process life (records / records per bag).
    pub delivered_bags: f64,
    /// The adapter's counts over the whole process life.
    pub totals: AdapterCounts,
    /// Whether the adapter's queue emptied after each run.
    pub drained: bool,
}

/// The end-to-end results.
pub struct EndToEnd<'a> {
    /// Empty tonic server.
    pub empty: &'a Window,
    /// Hub over gRPC.
    pub grpc: &'a Window,
    /// Hub in process.
    pub local: &'a Window,
    /// Metric records per bag.
    pub records_per_bag: f64,
    /// The registry check.
    pub registry: &'a RegistryCheck,
}

fn fmt_opt(v: Option<f64>, width: usize, prec: usize) -> String {
    v.map_or_else(
        || format!("{:>width$}", "n/a"),
        |v| format!("{v:>width$.prec$}"),
    )
}

/// Bags the adapter delivered in the window (hub runs), else the acknowledged bags.
fn delivered_bags(w: &Window, per_bag: f64) -> f64 {
    w.adapter
        .map_or(w.bags as f64, |a| a.delivered / per_bag.max(1e-9))
}

/// Prints the end-to-end table, the ratio, the drops and the goal.
pub fn end_to_end(e: &EndToEnd<'_>) {
    println!("\n== 1. End to end: Report → Telemetry → prometheus Wasm adapter → host registry ==");
    println!(
        "{:<22} {:>11} {:>11} {:>7} {:>7} {:>7} {:>7} {:>13} {:>13}",
        "target",
        "acked/s",
        "deliv./s",
        "srv s",
        "adpt s",
        "cli s",
        "proc s",
        "deliv/hub-s",
        "deliv/proc-s"
    );
    let rows = [
        ("empty tonic server", e.empty),
        ("hub via gRPC", e.grpc),
        ("hub in process", e.local),
    ];
    for (name, w) in rows {
        let secs = w.wall.as_secs_f64().max(1e-9);
        let delivered = delivered_bags(w, e.records_per_bag);
        // The empty server's cost is its server threads alone.
        let hub_cpu = if w.adapter.is_some() {
            w.cpu.hub()
        } else {
            w.cpu.server
        };
        println!(
            "{name:<22} {:>11.0} {:>11} {} {} {} {} {} {}",
            w.bags_per_sec(),
            if w.adapter.is_some() {
                format!("{:.0}", delivered / secs)
            } else {
                "-".to_string()
            },
            fmt_opt(w.cpu.server, 7, 2),
            fmt_opt(w.cpu.adapter, 7, 2),
            fmt_opt(w.cpu.client, 7, 2),
            fmt_opt(w.cpu.process, 7, 2),
            fmt_opt(hub_cpu.map(|c| delivered / c.max(1e-9)), 13, 0),
            fmt_opt(w.cpu.process.map(|c| delivered / c.max(1e-9)), 13, 0),
        );
    }
    println!(
        "  (acked/s: bags the server acknowledged per wall second; deliv./s: bags whose {:.0} metric records the \
         adapter delivered; srv/adpt/cli/proc s: CPU seconds of the server runtime threads, the adapter \
         worker, the load client and the whole process in the window; deliv/hub-s: delivered bags per CPU \
         second of server + adapter threads = per core; deliv/proc-s: the same per process CPU second, load \
         client included)",
        e.records_per_bag
    );

    for (name, w) in [("hub via gRPC", e.grpc), ("hub in process", e.local)] {
        if let Some(a) = w.adapter {
            let verdict = if a.dropped > 0.0 {
                "DROPPED: the adapter did not keep up"
            } else if a.delivered + a.queued + 1.0 < a.accepted {
                "behind: accepted exceeds delivered + queued"
            } else {
                "kept up"
            };
            println!(
                "  {name}: adapter records accepted {:.0}, delivered {:.0}, dropped {:.0} ({:.0} segments \
                 refused), queued at the end {:.0}, {:.0} batches (mean {:.0} records/call): {verdict}",
                a.accepted,
                a.delivered,
                a.dropped,
                a.segments_dropped,
                a.queued,
                a.batches,
                a.delivered / a.batches.max(1.0)
            );
        }
        if w.errors > 0 {
            println!("  {name}: {} Reports failed or had rejected bags", w.errors);
        }
    }
    let r = e.registry;
    println!(
        "  host registry: istio_requests_total sums to {:.0} over {} series; the adapter delivered {:.0} bags \
         over the whole run (accepted {:.0}, dropped {:.0} records){}{}",
        r.requests_total,
        r.series,
        r.delivered_bags,
        r.totals.accepted,
        r.totals.dropped,
        if (r.requests_total - r.delivered_bags).abs() < 0.5 {
            " — they match"
        } else {
            " — MISMATCH"
        },
        if r.drained {
            ""
        } else {
            "; the queue did not empty after a run"
        }
    );

    let ratio = e.grpc.bags_per_sec() / e.empty.bags_per_sec().max(1e-9);
    println!(
        "  hub via gRPC / empty tonic server (acknowledged bags per wall second, same client, same run): {ratio:.2}×"
    );
    let secs = e.grpc.wall.as_secs_f64().max(1e-9);
    let grpc_delivered = delivered_bags(e.grpc, e.records_per_bag);
    let local_delivered = delivered_bags(e.local, e.records_per_bag);
    if let (Some(g), Some(l)) = (e.grpc.cpu.hub(), e.local.cpu.hub()) {
        let (g_ns, l_ns) = (
            g * 1e9 / grpc_delivered.max(1.0),
            l * 1e9 / local_delivered.max(1.0),
        );
        println!(
            "  hub CPU per delivered bag: {g_ns:.0} ns via gRPC, {l_ns:.0} ns in process → gRPC + prost cost \
             {:.0} ns per bag ({:.0} µs per Report of {BAGS_PER_REPORT})",
            g_ns - l_ns,
            (g_ns - l_ns) * BAGS_PER_REPORT as f64 / 1000.0
        );
        if let (Some(sa), Some(la)) = (e.grpc.cpu.adapter, e.local.cpu.adapter) {
            println!(
                "  of which adapter worker (Wasm + registry): {:.0} ns per bag via gRPC, {:.0} ns in process",
                sa * 1e9 / grpc_delivered.max(1.0),
                la * 1e9 / local_delivered.max(1.0)
            );
        }
        let per_core = grpc_delivered / g;
        let dropped = e.grpc.adapter.is_some_and(|a| a.dropped > 0.0);
        println!(
            "  GOAL ≥ {:.0}k records/s per core end to end: {:.0} delivered bags per hub CPU second ({:.0}/s wall) \
             → {}{}",
            E2E_GOAL / 1000.0,
            per_core,
            grpc_delivered / secs,
            if per_core >= E2E_GOAL {
                "MET"
            } else {
                "NOT MET"
            },
            if dropped {
                " (the run dropped records: see above)"
            } else {
                ""
            }
        );
        if let Some(p) = e.grpc.cpu.process {
            println!(
                "    counting the whole process (load client included): {:.0} per CPU second",
                grpc_delivered / p.max(1e-9)
            );
        }
    } else {
        println!("  per-core numbers unavailable (no /proc)");
    }
}

/// Prints the boundary table and the goal.
pub fn boundary(points: &[Point]) {
    println!(
        "\n== 2. Wasm boundary: handle-metrics on the faulty adapter (mode ok: the handler ignores the batch) =="
    );
    println!(
        "method: no synchronous single-call API in hub_adapters, so each N runs an adapter with batch_size N fed \
         segments of exactly N records (one call each); t(N) = mean handler call duration from the runtime's \
         batch_duration histogram (worker clock around call_handle_metrics: deadline arming excluded; copy into \
         guest memory, SDK segment parse, call and return included); worker CPU/call = the worker thread's CPU \
         time per call (adds channel receive, segment concatenation, counters)"
    );
    println!(
        "{:>6} {:>10} {:>9} {:>12} {:>14} {:>16} {:>13} {:>8}",
        "N", "bytes", "calls", "t(N) ns", "t(N)/N ns", "worker CPU/call", "records/s", "dropped"
    );
    for p in points {
        println!(
            "{:>6} {:>10} {:>9} {:>12.0} {:>14.1} {} {:>13.0} {:>8}",
            p.n,
            p.bytes,
            p.calls,
            p.call_ns,
            p.call_ns / p.n as f64,
            fmt_opt(p.worker_ns_per_call, 16, 0),
            p.records_per_sec,
            p.dropped
        );
    }
    let Some(one) = points.iter().find(|p| p.n == 1) else {
        return;
    };
    println!("  fixed cost per call t(1): {:.0} ns", one.call_ns);
    let mut worst: Option<f64> = None;
    for p in points.iter().filter(|p| p.n > 1) {
        let marginal = (p.call_ns - one.call_ns) / (p.n - 1) as f64;
        let worker = p
            .worker_ns_per_call
            .zip(one.worker_ns_per_call)
            .map(|(a, b)| (a - b) / (p.n - 1) as f64);
        println!(
            "  marginal cost per record (t({n}) − t(1)) / ({n} − 1): {marginal:.1} ns (worker CPU: {})",
            fmt_opt(worker, 1, 1).trim(),
            n = p.n
        );
        worst = Some(worst.map_or(marginal, |w: f64| w.max(marginal)));
    }
    if let Some(w) = worst {
        println!(
            "  GOAL ≤ {BOUNDARY_GOAL_NS:.0} ns per record at the boundary: worst marginal {w:.1} ns → {}",
            if w <= BOUNDARY_GOAL_NS {
                "MET"
            } else {
                "NOT MET"
            }
        );
        if let Some(p) = points.iter().find(|p| p.n == 100) {
            println!(
                "  at the hub's batch size (100) the fixed cost amortises to {:.1} ns per record (t(100)/100)",
                p.call_ns / 100.0
            );
        }
    }
}
