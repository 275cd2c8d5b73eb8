//! `check-bench`: hub Check throughput and latency, native (plain and compressed attributes) and Envoy
//! ext_authz, against an empty tonic unary server driven by the same client in the same run.
//!
//! The hub is loaded with 100 Policy rules spread over 20 services and 5 RateLimits that match the traffic.
//! The servers and the load client run in one process on two separate tokio runtimes with one worker thread
//! each, pinned to two different CPUs (unless --no-pin), so each side has one core and neither starves the
//! other.
//!
//! For each target: a closed loop (C calls in flight over K HTTP/2 connections) measures the maximum rate and
//! its latency; then an open loop at half of that rate measures latency from each call's intended send time.
//! Goals (from the issue, reported, never asserted): hub throughput ≥ 0.6× the empty server's; p99 ≤ 1 ms at
//! half of the hub's maximum throughput.
//!
//! `--global` measures GLOBAL rate limits instead (Redis, three hubs, envoyproxy/ratelimit): see
//! [`global`].
//!
//! The modules: [`config`] (the hub's configuration), [`traffic`] (the requests), [`servers`], [`load`] (the
//! two loops), [`reload`] (the reload scenario), [`report`] (the output), [`global`] (`--global`). CPU time,
//! pinning and the runtimes come from [`sextant_bench`].

mod config;
mod global;
mod load;
mod reload;
mod report;
mod servers;
mod traffic;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sextant_bench::load::Shape;
use sextant_bench::runtime::one_worker;
use sextant_bench::{cpu, pin};

use crate::load::{Requests, Role, Target};
use crate::traffic::mean_encoded_len;

/// The allocator of the `sextant` binary (cli/src/main.rs), so the hub runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "check-bench",
    about = "Hub Check throughput and latency against an empty tonic server"
)]
struct Args {
    /// Measured duration of each run (closed and open loop, per target), e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Calls in flight in the closed loop.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections per target.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Run only the targets whose name contains one of these (e.g. `--only native`); the ratios need the
    /// empty server, whose name is `empty tonic server`.
    #[arg(long, value_name = "SUBSTRING")]
    only: Vec<String>,
    /// Smoke test: 2 s runs with 1 s warm-up (overrides --duration and --warmup).
    #[arg(long)]
    quick: bool,
    /// The reload scenario: also measure `hub native plain` at --reload-at of its maximum rate, for twice
    /// --duration, while a configuration with this many more policies (5 rules each) is by turns rewritten
    /// (until the hub serves it) and left alone (as long); p99 of the two kinds of window compared. 0: skip.
    #[arg(long, default_value_t = 0)]
    reload_policies: usize,
    /// The reload scenario's rate, as a fraction of `hub native plain`'s maximum (closed-loop) rate.
    #[arg(long, default_value_t = 0.5)]
    reload_at: f64,
    /// Let the kernel place every thread, instead of the server side on one CPU and the client on another.
    #[arg(long)]
    no_pin: bool,
    /// The GLOBAL rate limits mode (`--global`, see the `global` module).
    #[command(flatten)]
    global: global::Flags,
}

/// Starts the servers, runs every target closed then open loop, prints the results and stops the servers.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (warmup, duration) = if args.quick {
        (Duration::from_secs(1), Duration::from_secs(2))
    } else {
        (args.warmup, args.duration)
    };
    anyhow::ensure!(!duration.is_zero(), "--duration must be positive");
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0,
        "--concurrency and --connections must be positive"
    );
    let shape = Shape {
        concurrency: args.concurrency,
        connections: args.connections,
        warmup,
        duration,
    };

    let layout = if args.no_pin {
        None
    } else {
        pin::Layout::detect()
    };
    let server_rt = one_worker(cpu::SERVER_THREADS, layout.map(|l| l.server))?;
    let client_rt = one_worker(cpu::CLIENT_THREADS, layout.map(|l| l.client))?;
    if args.global.global {
        return global::run(&args.global, shape, layout, server_rt, client_rt);
    }
    // The hub may start its threads from block_on's thread (this one) while it starts: they go with the server.
    if let Some(l) = layout {
        pin::current_thread(l.server);
    }

    let config_dir = config::ConfigDir::write()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let servers = server_rt.block_on(servers::Servers::start(config_dir.path(), stop_rx))?;
    if let Some(l) = layout {
        pin::current_thread(l.client);
    }

    let pools = traffic::Pools::build()?;
    let mut targets = vec![
        Target {
            name: "empty tonic server",
            role: Role::Baseline,
            addrs: vec![servers.empty_addr],
            requests: Requests::Native(pools.plain.clone()),
            request_bytes: mean_encoded_len(&pools.plain),
        },
        Target {
            name: "hub native plain",
            role: Role::Hub,
            addrs: vec![servers.hub_addr],
            requests: Requests::Native(pools.plain.clone()),
            request_bytes: mean_encoded_len(&pools.plain),
        },
        Target {
            name: "hub native compressed",
            role: Role::Hub,
            addrs: vec![servers.hub_addr],
            requests: Requests::Native(pools.compressed.clone()),
            request_bytes: mean_encoded_len(&pools.compressed),
        },
        Target {
            name: "hub ext_authz",
            role: Role::Hub,
            addrs: vec![servers.hub_addr],
            requests: Requests::Authz(pools.authz.clone()),
            request_bytes: mean_encoded_len(&pools.authz),
        },
    ];
    if !args.only.is_empty() {
        targets.retain(|t| args.only.iter().any(|o| t.name.contains(o.as_str())));
        anyhow::ensure!(
            !targets.is_empty(),
            "--only {:?} matches no target",
            args.only
        );
    }

    let header = report::Header {
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        pinned: layout.map(|l| (l.server, l.client)),
        shape,
        policies: servers.policies,
        rules: servers.rules,
        rate_limits: servers.rate_limits,
        variants: pools.plain.len(),
        expected_deny: pools.expected_deny,
    };
    report::print_header(&header);

    // Everything client-side runs in one task on the client runtime's worker (block_on's own thread would
    // otherwise be a second client thread).
    let run = {
        let targets = targets.clone();
        async move {
            let mut closed = Vec::with_capacity(targets.len());
            for t in &targets {
                let r = load::closed_loop(t, shape).await?;
                report::print_closed_progress(t, &r);
                closed.push(r);
            }
            let mut open = Vec::with_capacity(targets.len());
            for (t, c) in targets.iter().zip(&closed) {
                let r = load::open_loop(t, shape, c.rate / 2.0).await?;
                report::print_open_progress(t, &r);
                open.push(r);
            }
            anyhow::Ok((closed, open))
        }
    };
    let outcome = client_rt.block_on(async move { tokio::spawn(run).await });
    let reloads = match &outcome {
        Ok(Ok((closed, _))) if args.reload_policies > 0 => {
            let plain = targets
                .iter()
                .zip(closed)
                .find(|(t, _)| t.name == "hub native plain");
            let (target, max) =
                plain.context("the reload scenario needs the `hub native plain` target")?;
            Some(reload_scenario(
                &args,
                &client_rt,
                &servers,
                config_dir.path(),
                (target.clone(), max.rate * args.reload_at, shape),
            ))
        }
        _ => None,
    };

    let _ = stop_tx.send(true);
    let stopped = server_rt.block_on(servers.wait());
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
    drop(config_dir);

    let (closed, open) = outcome.context("client task")??;
    report::print_summary(&targets, &closed, &open);
    if let Some(r) = reloads {
        report::print_reloads(&r?);
    }
    stopped
}

/// Runs the reload scenario (see [`reload`]): `target` at `rate` for twice the shape's duration while the
/// large configuration is by turns rewritten and left alone.
fn reload_scenario(
    args: &Args,
    client_rt: &tokio::runtime::Runtime,
    servers: &servers::Servers,
    dir: &std::path::Path,
    (target, rate, shape): (Target, f64, Shape),
) -> anyhow::Result<report::Reloads> {
    let before = servers.revision();
    reload::write_large(dir, args.reload_policies).context("writing the large configuration")?;
    let loaded = std::time::Instant::now();
    while servers.revision() == before {
        anyhow::ensure!(
            loaded.elapsed() < Duration::from_secs(120),
            "the hub did not load the large configuration within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_load = loaded.elapsed();
    let shape = Shape {
        duration: shape.duration * 2,
        ..shape
    };
    let alternator =
        reload::Alternator::start(dir.to_path_buf(), args.reload_policies, servers.revisions());
    let run = client_rt
        .block_on(async move {
            tokio::spawn(async move { load::open_loop(&target, shape, rate).await }).await
        })
        .context("client task")?;
    let windows = alternator.finish()?;
    let run = run?;
    // Only windows wholly inside the measured run: the warm-up's, and the one cut by the end, are left out.
    let (start, end) = run.window;
    let measured = |ws: Vec<reload::Window>| -> Vec<reload::Window> {
        ws.into_iter()
            .filter(|w| start <= w.span().0 && w.span().1 <= end)
            .collect()
    };
    let (quiet, reloading) = (measured(windows.quiet), measured(windows.reloading));
    let part = |ws: &[reload::Window]| {
        let spans: Vec<_> = ws.iter().map(reload::Window::span).collect();
        let samples: Vec<_> = ws.iter().map(|w| (w.from, w.to)).collect();
        run.within(&spans, cpu::usage_over(&samples))
    };
    let p99s = |ws: &[reload::Window]| -> anyhow::Result<Vec<u64>> {
        ws.iter()
            .map(|w| {
                let one = run.within(&[w.span()], cpu::Usage::default())?;
                Ok(one.latency.value_at_quantile(0.99))
            })
            .collect()
    };
    Ok(report::Reloads {
        policies: args.reload_policies,
        first_load,
        window_p99: (p99s(&quiet)?, p99s(&reloading)?),
        reload_times: windows.reload_times,
        quiet: part(&quiet)?,
        reloading: part(&reloading)?,
    })
}
