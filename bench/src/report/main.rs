//! `report-bench`: the hub's Report path in one run — end to end (native Report over gRPC on loopback →
//! default Istio Telemetry rules → builtin prometheus Wasm adapter → host registry), the same without gRPC
//! (decode + ingest called in process), an empty tonic server answering the same Reports (the baseline), and
//! the Wasm boundary cost per record (`hub_adapters` against the `faulty` adapter, which ignores batches).
//!
//! A record is one reported attribute bag (19 attributes of an HTTP request; 100 per Report, delta-encoded).
//! The server and the load client run on two tokio runtimes of one worker thread each; the adapter's worker is
//! a third thread. CPU time is taken per thread group from `/proc` and for the whole process.
//! Goals (DESIGN.md, reported, never asserted): ≥ 300k records/s per core end to end; ≤ 100 ns per record at
//! the boundary.
//!
//! The modules: [`traffic`] (the Reports), [`servers`], [`load`] (the measured runs), [`boundary`] (the Wasm
//! boundary), [`print`] (the output). CPU time, the runtimes and the empty server come from [`sextant_bench`].

mod boundary;
mod load;
mod print;
mod servers;
mod traffic;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sextant_bench::cpu;
use sextant_bench::load::Shape;
use sextant_bench::{prom, runtime};

use crate::servers::AdapterCounts;

/// The allocator of the `sextant` binary (cli/src/main.rs), so the hub runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "report-bench",
    about = "Hub Report → Telemetry → Wasm adapter throughput per core, the Wasm boundary cost per record, \
             and an empty tonic server as the baseline"
)]
struct Args {
    /// Measured window of each end-to-end run, e.g. `10s`; each boundary size runs half as long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before each end-to-end run.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Reports in flight in the closed loop.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// HTTP/2 connections per target.
    #[arg(long, default_value_t = 2)]
    connections: usize,
}

/// Runs every measurement, prints the report and stops the servers.
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be positive");
    anyhow::ensure!(
        args.concurrency > 0 && args.connections > 0,
        "--concurrency and --connections must be positive"
    );
    let shape = Shape {
        concurrency: args.concurrency,
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
    };

    let server_rt = runtime::one_worker(cpu::SERVER_THREADS, None)?;
    let client_rt = runtime::one_worker(cpu::CLIENT_THREADS, None)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let servers = server_rt.block_on(servers::Servers::start(stop_rx))?;
    let pool = traffic::Pool::build()?;

    // One Report in process: checks the pipeline and tells how many metric records a bag makes.
    let probe = {
        let (bags, rejected, errors) = hub_server::report_bags(&pool.requests[0]);
        anyhow::ensure!(rejected == 0, "the hub rejected bench bags: {errors:?}");
        servers.state.ingest("bench", bags)
    };
    anyhow::ensure!(
        probe.stats.metrics > 0 && probe.bags > 0,
        "the default Telemetry made no metric record from the bench bags: {probe:?}"
    );
    let records_per_bag = probe.stats.metrics as f64 / probe.bags as f64;

    print::header(&print::Header {
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        shape,
        pool: &pool,
        records_per_bag,
    });

    let state = servers.state.clone();
    let requests = pool.requests.clone();
    let (empty_addr, hub_addr) = (servers.empty_addr, servers.hub_addr);
    let run = async move {
        let empty = load::closed_loop(empty_addr, requests.clone(), shape, None).await?;
        print::progress("empty tonic server", &empty);
        let grpc =
            load::closed_loop(hub_addr, requests.clone(), shape, Some(state.clone())).await?;
        print::progress("hub via gRPC", &grpc);
        let drained_grpc = load::drained(&state, Duration::from_secs(10)).await;
        anyhow::Ok((empty, grpc, drained_grpc))
    };
    let outcome = client_rt.block_on(async move { tokio::spawn(run).await });
    let (empty, grpc, drained_grpc) = outcome.context("client task")??;

    let local = server_rt.block_on(load::in_process(
        servers.state.clone(),
        pool.requests.clone(),
        shape,
    ))?;
    print::progress("hub in process", &local);
    let drained_local = server_rt.block_on(load::drained(&servers.state, Duration::from_secs(10)));

    // Everything delivered must be in the host registry: istio_requests_total counts one per bag.
    let totals = AdapterCounts::read(&servers.state);
    let exposition = servers.state.telemetry.runtime().registry().encode();
    let registry = print::RegistryCheck {
        requests_total: prom::sum(&exposition, "istio_requests_total", ""),
        series: exposition
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .count(),
        delivered_bags: totals.delivered / records_per_bag,
        totals,
        drained: drained_grpc && drained_local,
    };

    let points = boundary::measure(&server_rt, args.duration / 2)?;

    let _ = stop_tx.send(true);
    let stopped = server_rt.block_on(servers.wait());
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));

    print::end_to_end(&print::EndToEnd {
        empty: &empty,
        grpc: &grpc,
        local: &local,
        records_per_bag,
        registry: &registry,
    });
    print::boundary(&points);
    stopped
}
