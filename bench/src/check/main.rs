//! `check-bench`: hub Check throughput, CPU cost and latency, native (plain and compressed attributes) and
//! Envoy ext_authz, against an empty tonic unary server and against OPA deciding the same requests with the
//! same rules, all driven by the same client in the same run.
//!
//! The hub is loaded with 100 Policy rules spread over 20 services and 5 RateLimits that match the traffic;
//! OPA is given the same 100 rules in Rego, written from the same description ([`config::policies`],
//! [`rego`]). The servers run on a tokio runtime with one worker thread pinned to one CPU (OPA, a child
//! process, is started on that CPU); the load client runs on a runtime of `--client-threads` workers and an
//! open loop's pacer thread, pinned to another CPU (unless --no-pin). The client sends requests encoded once,
//! on plain HTTP/2 connections ([`wire`]), so that it costs less per call than the servers it measures.
//!
//! For each target: a closed loop (C calls in flight over K HTTP/2 connections) measures the maximum rate and
//! the server's CPU-seconds per second at it; then open loops at one fixed rate for every target (half of the
//! empty server's maximum), and at half of OPA's maximum for the hub's ext_authz door and OPA, measure
//! latency from each call's intended send time. Goals (from the issues, reported, never asserted): hub
//! throughput ≥ 0.6× the empty server's; p99 ≤ 1 ms at that fixed rate; ≥ 5× OPA's decisions per server
//! CPU-second with a lower p99.
//!
//! `--global` measures GLOBAL rate limits instead (Redis, three hubs, envoyproxy/ratelimit): see [`global`].
//! `--overload` offers a hub with a `--max-in-flight` limit ten times its capacity: see [`overload`].
//!
//! The modules: [`config`] (the hub's configuration), [`rego`] (the same for OPA), [`traffic`] (the
//! requests), [`servers`], [`opa`] and [`go_peer`] (the peers), [`wire`] and [`load`] (the client and the two
//! loops), [`reload`] (the reload scenario), [`overload`], [`report`] (the output), [`global`]. CPU time,
//! pinning and the runtimes come from [`sextant_bench`].

mod config;
mod global;
mod go_peer;
mod load;
mod opa;
mod overload;
mod rego;
mod reload;
mod report;
mod servers;
mod spans;
mod traffic;
mod wire;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sextant_bench::load::Shape;
use sextant_bench::runtime::{one_worker, workers};
use sextant_bench::{cpu, pin};

use crate::load::{Requests, Role, Target};
use crate::traffic::mean_encoded_len;

/// The allocator of the `sextant` binary (cli/src/main.rs), so the hub runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The name of the OPA target.
const OPA_TARGET: &str = "OPA (REST)";

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "check-bench",
    about = "Hub Check throughput and latency against an empty tonic server and OPA"
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
    /// Worker threads of the load client's runtime (all on the client side's CPU), besides an open loop's
    /// pacer thread.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// The fixed rate of the open loops, as a fraction of the empty server's maximum (closed-loop) rate; the
    /// hub's ext_authz door and OPA are also compared at this fraction of OPA's maximum.
    #[arg(long, default_value_t = 0.5)]
    open_at: f64,
    /// The open loops' rate in calls per second instead (every target but OPA): one rate for runs to be
    /// compared with each other (tracing off and on, say), whatever each run's maximum.
    #[arg(long, value_name = "CALLS_PER_SECOND")]
    open_rate: Option<f64>,
    /// Run only the targets whose name contains one of these (e.g. `--only native`); the ratios need the
    /// empty server, whose name is `empty tonic server`, and OPA's need `hub ext_authz` and `OPA`.
    #[arg(long, value_name = "SUBSTRING")]
    only: Vec<String>,
    /// Leave OPA out (it is built with `go install` the first time).
    #[arg(long)]
    no_opa: bool,
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
    /// The overload mode (`--overload`, see the `overload` module).
    #[command(flatten)]
    overload: overload::Flags,
    /// Span export over OTLP (`--otlp-endpoint`, see the `spans` module).
    #[command(flatten)]
    spans: spans::Flags,
}

/// Starts the servers, runs every target closed then open loop, prints the results and stops the servers.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Before any thread is pinned: the CPUs this process may use.
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    if let Some(limit) = args.overload.serve_hub {
        return overload::serve_hub(limit);
    }
    let (warmup, duration) = if args.quick {
        (Duration::from_secs(1), Duration::from_secs(2))
    } else {
        (args.warmup, args.duration)
    };
    anyhow::ensure!(!duration.is_zero(), "--duration must be positive");
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0 && args.client_threads > 0,
        "--concurrency, --connections and --client-threads must be positive"
    );
    anyhow::ensure!(
        args.open_at > 0.0 && args.open_at.is_finite(),
        "--open-at must be positive"
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
    let client_rt = workers(
        cpu::CLIENT_THREADS,
        args.client_threads,
        layout.map(|l| l.client),
    )?;
    if args.global.global {
        return global::run(&args.global, shape, layout, server_rt, client_rt);
    }
    if args.overload.overload {
        drop(server_rt);
        return overload::run(
            &args.overload,
            shape,
            layout,
            args.client_threads,
            client_rt,
        );
    }
    // The hub may start its threads from block_on's thread (this one) while it starts: they go with the server.
    if let Some(l) = layout {
        pin::current_thread(l.server);
    }
    let exporting = spans::install(&args.spans)?;

    let config_dir = config::ConfigDir::write()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let servers = server_rt.block_on(servers::Servers::start(config_dir.path(), stop_rx))?;
    let pools = traffic::Pools::build()?;
    let wants =
        |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.contains(o.as_str()));
    // OPA inherits the CPUs of the thread that starts it: the server side's.
    let opa = if args.no_opa || !wants(OPA_TARGET) {
        Err("left out (--no-opa or --only)".to_string())
    } else {
        start_opa()
    };
    if let Some(l) = layout {
        pin::current_thread(l.client);
    }
    let opa = match opa {
        Ok(mut o) => match client_rt.block_on(o.ready(pools.opa[0].clone())) {
            Ok(()) => Ok(o),
            Err(e) => Err(format!("{e:#}")),
        },
        Err(why) => Err(why),
    };
    if let Err(why) = &opa {
        eprintln!("OPA is not compared: {why}");
    }

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
    let mut opa_pid = None;
    if let Ok(o) = &opa {
        opa_pid = Some(o.pid());
        targets.push(Target {
            name: OPA_TARGET,
            role: Role::Peer,
            addrs: vec![o.addr],
            requests: Requests::Opa(pools.opa.clone()),
            request_bytes: pools.opa.iter().map(|b| b.len()).sum::<usize>()
                / pools.opa.len().max(1),
        });
    }
    targets.retain(|t| wants(t.name));
    anyhow::ensure!(
        !targets.is_empty(),
        "--only {:?} matches no target",
        args.only
    );

    let agreement = match &opa {
        Ok(o) if targets.iter().any(|t| t.role == Role::Peer) => {
            let (hub, at) = (servers.hub_addr, o.addr);
            let variants = traffic::variants();
            Some(
                client_rt
                    .block_on(async move {
                        tokio::spawn(async move { opa::agreement(hub, at, &variants).await }).await
                    })
                    .context("agreement task")?
                    .context("asking the hub and OPA the same requests"),
            )
        }
        _ => None,
    };

    let header = report::Header {
        cores,
        pinned: layout.map(|l| (l.server, l.client)),
        client_threads: args.client_threads,
        shape,
        open_at: args.open_at,
        policies: servers.policies,
        rules: servers.rules,
        rate_limits: servers.rate_limits,
        variants: pools.plain.len(),
        expected_deny: pools.expected_deny,
        opa: opa.as_ref().map(|_| ()).map_err(Clone::clone),
    };
    report::print_header(&header);
    if let Some(a) = &agreement {
        match a {
            Ok(a) => report::print_agreement(a),
            Err(e) => eprintln!("the agreement check failed: {e:#}"),
        }
    }

    // Everything client-side runs in tasks on the client runtime (block_on's own thread would otherwise be
    // one more client thread).
    let run = {
        let targets = targets.clone();
        let (open_at, open_rate) = (args.open_at, args.open_rate);
        async move { run_targets(&targets, shape, (open_at, open_rate), opa_pid).await }
    };
    let outcome = client_rt.block_on(async move { tokio::spawn(run).await });
    let reloads = match &outcome {
        Ok(Ok(measured)) if args.reload_policies > 0 => {
            let plain = targets
                .iter()
                .zip(measured)
                .find(|(t, _)| t.name == "hub native plain");
            let (target, max) =
                plain.context("the reload scenario needs the `hub native plain` target")?;
            Some(reload_scenario(
                &args,
                &client_rt,
                &servers,
                config_dir.path(),
                (target.clone(), max.closed.rate * args.reload_at, shape),
            ))
        }
        _ => None,
    };

    let _ = stop_tx.send(true);
    let stopped = server_rt.block_on(servers.wait());
    drop(opa);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
    drop(config_dir);

    let measured = outcome.context("client task")??;
    report::print_summary(&measured, args.open_at);
    if let Some(r) = reloads {
        report::print_reloads(&r?);
    }
    if exporting.is_some() {
        println!("{}", spans::summary());
    }
    stopped
}

/// Builds OPA (once) and starts it with the benchmark's policies in Rego, on the calling thread's CPUs.
fn start_opa() -> Result<opa::Opa, String> {
    let bin = opa::build()?;
    let rego = rego::module(&config::policies()).map_err(|e| format!("{e:#}"))?;
    opa::Opa::start(&bin, &rego).map_err(|e| format!("{e:#}"))
}

/// Closed loop for every target, then the open loops: every target but OPA at `open_at` of the empty
/// server's maximum (of the smallest maximum without it), and OPA and the hub's ext_authz door at `open_at`
/// of OPA's (`open_rate`, when given, instead of the empty server's share). The server side's CPU is OPA's
/// process while OPA is measured.
async fn run_targets(
    targets: &[Target],
    shape: Shape,
    (open_at, open_rate): (f64, Option<f64>),
    opa_pid: Option<u32>,
) -> anyhow::Result<Vec<report::Measured>> {
    let measure_server =
        |t: &Target| cpu::measure_server_process(opa_pid.filter(|_| t.role == Role::Peer));
    let mut closed = Vec::with_capacity(targets.len());
    for t in targets {
        measure_server(t);
        let r = load::closed_loop(t, shape).await?;
        report::print_closed_progress(t, &r);
        closed.push(r);
    }
    let max_of = |role: Role| {
        targets
            .iter()
            .zip(&closed)
            .find(|(t, _)| t.role == role)
            .map(|(_, c)| c.rate)
    };
    let smallest = closed
        .iter()
        .zip(targets)
        .filter(|(_, t)| t.role != Role::Peer)
        .map(|(c, _)| c.rate)
        .reduce(f64::min);
    let common = open_rate.or(max_of(Role::Baseline).or(smallest).map(|r| r * open_at));
    let at_opa = max_of(Role::Peer).map(|r| r * open_at);
    let mut measured = Vec::with_capacity(targets.len());
    for (t, c) in targets.iter().zip(closed) {
        let mut rates = Vec::new();
        if t.role != Role::Peer {
            rates.extend(common);
        }
        if t.role == Role::Peer || t.name == "hub ext_authz" {
            rates.extend(at_opa);
        }
        measure_server(t);
        let mut open = Vec::with_capacity(rates.len());
        for rate in rates {
            let r = load::open_loop(t, shape, rate).await?;
            report::print_open_progress(t, &r);
            open.push(r);
        }
        measured.push(report::Measured {
            target: t.clone(),
            closed: c,
            open,
        });
    }
    cpu::measure_server_process(None);
    Ok(measured)
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
