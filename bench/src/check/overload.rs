//! `check-bench --overload`: a hub with an admission limit (`HubOptions::max_in_flight`, `sextant hub
//! --max-in-flight`) offered ten times the rate it can serve. The hub is expected to answer what it admits at
//! about the latency it has at capacity, shed the rest with RESOURCE_EXHAUSTED at once, and keep its memory
//! bounded.
//!
//! The hub runs alone in a child process (this binary again, with the hidden `--serve-hub LIMIT`), started on
//! the server side's CPU, so that its RSS (`/proc/PID/status`) and CPU (`/proc/PID/stat`) are its own and not
//! the load client's, whose record of every call grows with the offered rate. The run: the capacity of
//! `hub native plain` (closed loop, as check-bench's), then an open loop at `--overload-factor` times it over
//! `--overload-connections` connections (so that more calls reach the hub at once than it admits), the
//! client holding at most [`CLIENT_CAP_PER_ADMITTED`] × the limit calls in flight itself (a call due beyond
//! that is not sent and counted). Reported, never asserted.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sextant_bench::load::Shape;
use sextant_bench::pin::{self, Layout};
use sextant_bench::runtime::one_worker;
use sextant_bench::{cpu, process};
use tokio::runtime::Runtime;

use crate::load::{self, ClosedResult, OpenResult, Requests, Role, Target};
use crate::report::{counts, fmt_ns, pct, q};
use crate::wire::Outcome;
use crate::{config, servers, traffic};

/// The most calls the client keeps in flight, per call the hub admits at once.
const CLIENT_CAP_PER_ADMITTED: usize = 16;

/// The ready line of `--serve-hub`.
const READY: &str = "hub: gRPC on ";

/// The flags of the overload mode.
#[derive(clap::Args, Debug, Clone)]
#[group(id = "overload-flags")]
pub struct Flags {
    /// Offer a hub with an admission limit --overload-factor times its capacity instead of the usual
    /// targets (--only, OPA and the reload scenario do not apply).
    #[arg(long)]
    pub overload: bool,
    /// The offered rate, as a multiple of the hub's measured capacity.
    #[arg(long, default_value_t = 10.0)]
    pub overload_factor: f64,
    /// The hub's limit of calls in flight (default: the hub's own default, 256 per core).
    #[arg(long)]
    pub overload_max_in_flight: Option<usize>,
    /// HTTP/2 connections of the overload run (the hub allows at most a few hundred streams on each).
    #[arg(long, default_value_t = 16)]
    pub overload_connections: usize,
    /// Internal: serve the benchmark's hub alone with this limit, print its address and stop when standard
    /// input closes (what `--overload` starts as its child).
    #[arg(long, hide = true, value_name = "MAX_IN_FLIGHT")]
    pub serve_hub: Option<usize>,
}

/// The child's side: the hub on a one-worker runtime until standard input closes.
pub fn serve_hub(max_in_flight: usize) -> anyhow::Result<()> {
    let rt = one_worker(cpu::SERVER_THREADS, None)?;
    let dir = config::ConfigDir::with_files(
        "overload",
        &[
            ("policies.yaml", &config::policies_yaml()),
            ("ratelimits.yaml", &config::rate_limits_yaml()),
        ],
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hub = rt.block_on(servers::start_hub_limited(
        dir.path(),
        None,
        max_in_flight,
        stop_rx,
    ))?;
    println!("{READY}{}", hub.grpc_addr);
    // Until the parent closes our standard input (or exits).
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
    let _ = stop_tx.send(true);
    rt.block_on(sextant_bench::servers::wait_hub(
        hub,
        Duration::from_secs(5),
    ))
}

/// The hub child, killed on drop.
struct HubChild {
    child: Child,
    addr: SocketAddr,
}

impl HubChild {
    /// Starts this binary with `--serve-hub limit` (on the calling thread's CPUs) and waits for its address.
    fn start(limit: usize) -> anyhow::Result<HubChild> {
        let exe = std::env::current_exe().context("locating check-bench")?;
        let mut child = Command::new(exe)
            .arg("--serve-hub")
            .arg(limit.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the hub child")?;
        let stdout = child.stdout.take().context("the hub child's output")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(READY) {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
            }
        });
        let mut hub = HubChild {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => hub.addr = addr,
            Ok(Err(e)) => anyhow::bail!("the hub child printed a bad address: {e}"),
            Err(_) => anyhow::bail!("the hub child did not start within 60 s"),
        }
        Ok(hub)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&self) -> process::Memory {
        process::memory(self.pid()).unwrap_or_default()
    }
}

impl Drop for HubChild {
    fn drop(&mut self) {
        // Closing its standard input stops it; kill it if it has not stopped soon after.
        drop(self.child.stdin.take());
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the mode measured.
struct Overload {
    limit: usize,
    connections: usize,
    factor: f64,
    capacity: ClosedResult,
    run: OpenResult,
    admitted: OpenResult,
    rss_idle: process::Memory,
    rss_capacity: process::Memory,
    rss_after: process::Memory,
}

/// Runs the mode and prints its report.
pub fn run(
    flags: &Flags,
    shape: Shape,
    layout: Option<Layout>,
    client_threads: usize,
    client_rt: Runtime,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        flags.overload_factor > 0.0 && flags.overload_connections > 0,
        "--overload-factor and --overload-connections must be positive"
    );
    let limit = flags
        .overload_max_in_flight
        .unwrap_or_else(hub_server::default_max_in_flight)
        .max(1);
    if let Some(l) = layout {
        pin::current_thread(l.server);
    }
    let hub = HubChild::start(limit);
    if let Some(l) = layout {
        pin::current_thread(l.client);
    }
    let hub = hub?;
    cpu::measure_server_process(Some(hub.pid()));
    let pools = traffic::Pools::build()?;
    let target = Target {
        name: "hub native plain",
        role: Role::Hub,
        addrs: vec![hub.addr],
        requests: Requests::Native(pools.plain.clone()),
        request_bytes: traffic::mean_encoded_len(&pools.plain),
    };
    println!("Sextant hub overload benchmark (check-bench --overload)");
    println!(
        "  the hub alone in a child process (pid {}){}, at most {limit} calls in flight (max_in_flight); the",
        hub.pid(),
        layout.map_or_else(String::new, |l| format!(" on CPU {}", l.server)),
    );
    println!(
        "  client in this process with {client_threads} runtime workers and a pacer{}; {} (plain native Check)",
        layout.map_or_else(String::new, |l| format!(" on CPU {}", l.client)),
        target.name
    );
    println!(
        "  capacity: closed loop, {} calls in flight over {} connections; overload: open loop at {}× that over {} connections,",
        shape.concurrency, shape.connections, flags.overload_factor, flags.overload_connections
    );
    println!(
        "  the client keeping at most {} calls in flight itself; warm-up {}, measured {} each",
        limit * CLIENT_CAP_PER_ADMITTED,
        humantime::format_duration(shape.warmup),
        humantime::format_duration(shape.duration)
    );
    println!();

    // Let it settle after loading its configuration.
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = hub.rss();
    let (factor, connections) = (flags.overload_factor, flags.overload_connections);
    let t = target.clone();
    let capacity = client_rt
        .block_on(async move {
            tokio::spawn(async move {
                let r = load::closed_loop(&t, shape).await?;
                crate::report::print_closed_progress(&t, &r);
                anyhow::Ok(r)
            })
            .await
        })
        .context("client task")??;
    let rss_capacity = hub.rss();
    let rate = capacity.rate * factor;
    let over_shape = Shape {
        connections,
        ..shape
    };
    let cap = limit * CLIENT_CAP_PER_ADMITTED;
    let run = client_rt
        .block_on(async move {
            tokio::spawn(async move {
                let r = load::open_loop_capped(&target, over_shape, rate, cap).await?;
                crate::report::print_open_progress(&target, &r);
                anyhow::Ok(r)
            })
            .await
        })
        .context("client task")??;
    let rss_after = hub.rss();
    cpu::measure_server_process(None);
    drop(hub);
    drop(client_rt);
    let admitted = run.only(|o| !matches!(o, Outcome::Shed | Outcome::Error))?;
    print(&Overload {
        limit,
        connections,
        factor,
        capacity,
        run,
        admitted,
        rss_idle,
        rss_capacity,
        rss_after,
    });
    Ok(())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Prints the report.
fn print(o: &Overload) {
    let r = &o.run;
    let seconds = (r.window.1 - r.window.0).as_secs_f64();
    let answered = r.counts.decided() + r.counts.shed;
    let shed = r.counts.shed as f64 / answered.max(1) as f64;
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "", "calls/s", "p50", "p99", "p99.9", "srv", "cli", "cli 1"
    );
    let c = &o.capacity;
    println!(
        "{:<34} {:>9.0} {:>9} {:>9} {:>9} {:>6.2} {:>6.2} {:>6}",
        "capacity (closed loop)",
        c.rate,
        fmt_ns(q(&c.latency, 0.5)),
        fmt_ns(q(&c.latency, 0.99)),
        fmt_ns(q(&c.latency, 0.999)),
        c.cpu.server.unwrap_or(0.0),
        c.cpu.client.unwrap_or(0.0),
        pct(c.client_busiest)
    );
    println!(
        "{:<34} {:>9.0}",
        format!("offered ({}× capacity)", o.factor),
        r.target_rate
    );
    println!(
        "{:<34} {:>9.0} {:>9} {:>9} {:>9} {:>6.2} {:>6.2} {:>6}",
        format!(
            "sent by the client ({:.1}×)",
            r.sent_rate() / c.rate.max(1.0)
        ),
        r.sent_rate(),
        fmt_ns(q(&r.latency, 0.5)),
        fmt_ns(q(&r.latency, 0.99)),
        fmt_ns(q(&r.latency, 0.999)),
        r.cpu.server.unwrap_or(0.0),
        r.cpu.client.unwrap_or(0.0),
        pct(r.client_busiest)
    );
    let a = &o.admitted;
    println!(
        "{:<34} {:>9.0} {:>9} {:>9} {:>9}",
        "admitted, from intended send",
        a.counts.decided() as f64 / seconds,
        fmt_ns(q(&a.latency, 0.5)),
        fmt_ns(q(&a.latency, 0.99)),
        fmt_ns(q(&a.latency, 0.999)),
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}",
        "admitted, from actual send",
        "",
        fmt_ns(q(&a.service, 0.5)),
        fmt_ns(q(&a.service, 0.99)),
        fmt_ns(q(&a.service, 0.999)),
    );
    println!(
        "{:<34} {:>9.0}",
        format!("shed (RESOURCE_EXHAUSTED) {:.1}%", shed * 100.0),
        r.counts.shed as f64 / seconds
    );
    println!();
    println!(
        "  calls ok/deny/429/other/failed: {} (failed = {} shed + {} other errors); not sent (client at its cap): {};",
        counts(&r.counts),
        r.counts.shed,
        r.counts.errors,
        r.skipped
    );
    println!(
        "  unanswered 5 s after the run: {}; lag p99 (pacer late to send): {}; {} connections",
        r.unfinished,
        fmt_ns(q(&r.lag, 0.99)),
        o.connections
    );
    println!(
        "  admitted p99 from actual send {} vs p99 at capacity {}: {:.2}×",
        fmt_ns(q(&a.service, 0.99)),
        fmt_ns(q(&c.latency, 0.99)),
        q(&a.service, 0.99) as f64 / q(&c.latency, 0.99).max(1) as f64
    );
    println!(
        "  hub RSS: idle {}, after the capacity run {}, after the overload {} (peak {}); limit {} calls",
        mb(o.rss_idle.rss),
        mb(o.rss_capacity.rss),
        mb(o.rss_after.rss),
        mb(o.rss_after.hwm),
        o.limit
    );
    if r.sent_rate() < r.target_rate * 0.9 {
        println!(
            "  note: the client sent {:.1}× capacity, not {}×: one client core cannot send more (its CPU above)",
            r.sent_rate() / c.rate.max(1.0),
            o.factor
        );
    }
}
