//! `check-bench --global`: Check with GLOBAL rate limits (counted in Redis by hub-quota-redis) against the
//! same limits LOCAL, and Envoy's rate-limit service of the hub against envoyproxy/ratelimit on the same
//! Redis.
//!
//! Each scenario ([`setups`]) starts its servers (hubs in-process on the server runtime, or
//! the peer as a child process on the server side's CPU), runs the closed loop and then the open loop at
//! half its maximum with check-bench's load generator, reads Redis's counters and the hubs' quota metrics
//! around the open loop, and stops its servers. Redis runs on the server side's CPU too: a GLOBAL hub
//! shares its core with the Redis it calls (this machine has no third core to give it).
//!
//! The submodules: [`limits`] (the RateLimits and the peer's configuration), [`setups`] (the scenarios),
//! [`redis_stats`] (Redis and what it counted), [`ratelimit_peer`] (envoyproxy/ratelimit), [`report`] (the
//! output). None of them uses this module's items.

mod limits;
mod ratelimit_peer;
mod redis_stats;
mod report;
mod setups;

use std::time::Duration;

use anyhow::Context as _;
use hub_server::RunningHub;
use sextant_bench::cpu;
use sextant_bench::load::Shape;
use sextant_bench::pin::{self, Layout};
use tokio::runtime::Runtime;
use tokio::sync::watch;

use self::limits::Limit;
use self::ratelimit_peer::Peer;
use self::redis_stats::{QuotaCounters, RedisServer};
use self::report::Measured;
use self::setups::{Door, Regime, Servers, Setup};
use crate::config::ConfigDir;
use crate::load::{self, Requests, Role, Target};
use crate::{servers, traffic};

/// The flags of the GLOBAL mode.
#[derive(clap::Args, Debug, Clone)]
pub struct Flags {
    /// Measure GLOBAL rate limits instead of the usual targets: one hub LOCAL, one and three hubs GLOBAL
    /// on a redis-server, the same over the limit, and the hub's rate-limit service against
    /// envoyproxy/ratelimit (--only and the reload scenario do not apply).
    #[arg(long)]
    pub global: bool,
    /// The limits of the steady runs, each REQUESTS/PER[+BURST] (PER: 1s, 1m, 1h or 1d), comma-separated:
    /// every RateLimit at that limit, high enough that nothing is refused (with a burst, so that calls
    /// arriving together are not refused for coming closer than PER/REQUESTS). GLOBAL runs are repeated for each;
    /// the LOCAL baseline and envoyproxy/ratelimit use the first, the over-limit runs the last.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000000/1m+1000000,100000000/1h+1000000",
        value_parser = Limit::parse
    )]
    pub global_limit: Vec<Limit>,
    /// The limit of the `per-service` RateLimit in the over-limit runs (the other four keep the last
    /// --global-limit), low enough that most requests are refused.
    #[arg(long, default_value = "100/1s", value_parser = Limit::parse)]
    pub global_over_limit: Limit,
}

/// What every scenario shares.
struct Bench<'a> {
    flags: &'a Flags,
    shape: Shape,
    layout: Option<Layout>,
    server_rt: &'a Runtime,
    client_rt: &'a Runtime,
    redis: &'a RedisServer,
    native: Requests,
    rls: Requests,
    peer: &'a Result<std::path::PathBuf, String>,
}

/// The GLOBAL backends' counters of `hubs`, summed.
fn quota_of(hubs: &[RunningHub]) -> QuotaCounters {
    let mut quota = QuotaCounters::default();
    for h in hubs {
        quota.add(&h.state.metrics.encode());
    }
    quota
}

impl Bench<'_> {
    /// Pins the calling thread, and what it starts from now on, to the server side's CPU (`true`) or the
    /// client side's.
    fn on_server(&self, server: bool) {
        if let Some(l) = self.layout {
            pin::current_thread(if server { l.server } else { l.client });
        }
    }

    /// Runs `run` as one task on the client runtime's worker (block_on's own thread would be a second
    /// client thread).
    fn on_client<T: Send + 'static>(
        &self,
        run: impl Future<Output = anyhow::Result<T>> + Send + 'static,
    ) -> anyhow::Result<T> {
        self.client_rt
            .block_on(async move { tokio::spawn(run).await })
            .context("client task")?
    }

    /// Runs the closed loop, then the open loop at half its rate; Redis's counters and the hubs' quota
    /// metrics are read around the open loop.
    fn measure(
        &self,
        target: Target,
        shape: Shape,
        hubs: &[RunningHub],
    ) -> anyhow::Result<Measured> {
        let t = target.clone();
        let closed = self.on_client(async move {
            let closed = load::closed_loop(&t, shape).await?;
            crate::report::print_closed_progress(&t, &closed);
            anyhow::Ok(closed)
        })?;
        let (redis_before, quota_before) = (self.redis.stats()?, quota_of(hubs));
        let rate = closed.rate / 2.0;
        let open = self.on_client(async move {
            let open = load::open_loop(&target, shape, rate).await?;
            crate::report::print_open_progress(&target, &open);
            anyhow::Ok(open)
        })?;
        let redis = self.redis.stats()?.since(&redis_before);
        Ok(Measured {
            connections: shape.connections,
            closed,
            open,
            redis,
            quota: quota_of(hubs).since(&quota_before),
        })
    }

    /// The hubs' configuration files and requests for `setup`.
    fn hub_config(&self, setup: &Setup, scope: &str) -> (Vec<(&'static str, String)>, &Requests) {
        match (setup.door, setup.regime) {
            (Door::Rls, _) => (limits::rls_files(scope, setup.limit), &self.rls),
            (Door::Native, Regime::Steady) => {
                (limits::native_files(scope, setup.limit, None), &self.native)
            }
            (Door::Native, Regime::OverLimit) => {
                let others = self
                    .flags
                    .global_limit
                    .last()
                    .copied()
                    .unwrap_or(setup.limit);
                (
                    limits::native_files(scope, others, Some(setup.limit)),
                    &self.native,
                )
            }
        }
    }

    /// Starts `count` hubs serving `dir`, GLOBAL ones with their own backend on the bench's Redis (key
    /// prefix `sextant:bench:INDEX`).
    fn start_hubs(
        &self,
        index: usize,
        count: usize,
        global: bool,
        dir: &ConfigDir,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<RunningHub>> {
        self.on_server(true);
        let started = self.server_rt.block_on(async {
            let mut hubs = Vec::with_capacity(count);
            for h in 0..count {
                let quota = if global {
                    let topology = hub_quota_redis::Topology::parse(&self.redis.url())
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut o = hub_quota_redis::Options::new(topology);
                    o.prefix = format!("sextant:bench:{index}");
                    o.hub_id = format!("bench-{index}-{h}");
                    Some(hub_quota_redis::RedisBackend::new(o).map_err(anyhow::Error::msg)?)
                } else {
                    None
                };
                hubs.push(servers::start_hub(dir.path(), quota, stop.clone()).await?);
            }
            anyhow::Ok(hubs)
        });
        self.on_server(false);
        started
    }

    /// One scenario with in-process hubs.
    fn hubs(
        &self,
        index: usize,
        setup: &Setup,
        count: usize,
        global: bool,
    ) -> anyhow::Result<Measured> {
        let scope = if global { "GLOBAL" } else { "LOCAL" };
        let (files, requests) = self.hub_config(setup, scope);
        let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let dir = ConfigDir::with_files(&format!("global-{index}"), &files)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let hubs = self.start_hubs(index, count, global, &dir, &stop_rx)?;
        // The connections are spread evenly over the hubs.
        let shape = Shape {
            connections: self.shape.connections.div_ceil(count) * count,
            ..self.shape
        };
        let target = Target {
            name: setup.name,
            role: Role::Hub,
            addrs: hubs.iter().map(|h| h.grpc_addr).collect(),
            requests: requests.clone(),
            request_bytes: 0,
        };
        let measured = self.measure(target, shape, &hubs);
        let _ = stop_tx.send(true);
        self.server_rt.block_on(async {
            for h in hubs {
                match tokio::time::timeout(Duration::from_secs(5), h.wait()).await {
                    Ok(r) => r.context("hub")?,
                    Err(_) => eprintln!("warning: a hub did not stop within 5 s"),
                }
            }
            anyhow::Ok(())
        })?;
        measured
    }

    /// The envoyproxy/ratelimit scenario; `Err(why)` inside when it did not build or start.
    fn peer(&self, setup: &Setup) -> anyhow::Result<Result<Measured, String>> {
        let bin = match self.peer {
            Ok(bin) => bin,
            Err(why) => return Ok(Err(why.clone())),
        };
        let probe = match &self.rls {
            Requests::Rls(pool) => pool.first().cloned(),
            _ => None,
        }
        .context("the rate-limit service pool is empty")?;
        self.on_server(true);
        let config = limits::peer_yaml(setup.limit);
        let started = Peer::start(bin, self.redis.port(), &config);
        self.on_server(false);
        let mut peer = match started {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        if let Err(e) = self.client_rt.block_on(peer.ready(probe)) {
            return Ok(Err(format!("{e:#}")));
        }
        let target = Target {
            name: setup.name,
            role: Role::Hub,
            addrs: vec![peer.grpc_addr],
            requests: self.rls.clone(),
            request_bytes: 0,
        };
        cpu::measure_server_process(Some(peer.pid()));
        let measured = self.measure(target, self.shape, &[]);
        cpu::measure_server_process(None);
        drop(peer);
        measured.map(Ok)
    }
}

/// Runs every scenario and prints the table; stops the runtimes.
pub fn run(
    flags: &Flags,
    shape: Shape,
    layout: Option<Layout>,
    server_rt: Runtime,
    client_rt: Runtime,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !flags.global_limit.is_empty(),
        "--global-limit needs a limit"
    );
    // Before any thread is pinned: the CPUs this process may use.
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let peer = ratelimit_peer::build();
    if let Err(why) = &peer {
        eprintln!("envoyproxy/ratelimit is not available, its scenario is skipped: {why}");
    }
    // Redis inherits the CPUs of the thread that starts it: the server side's.
    if let Some(l) = layout {
        pin::current_thread(l.server);
    }
    let redis = RedisServer::start()?;
    if let Some(l) = layout {
        pin::current_thread(l.client);
    }
    let pools = traffic::Pools::build()?;
    let bench = Bench {
        flags,
        shape,
        layout,
        server_rt: &server_rt,
        client_rt: &client_rt,
        redis: &redis,
        native: Requests::Native(pools.plain.clone()),
        rls: Requests::Rls(traffic::rls_requests()),
        peer: &peer,
    };
    report::print_header(&report::Header {
        cores,
        pinned: layout.map(|l| (l.server, l.client)),
        shape,
        limits: flags.global_limit.clone(),
        over_limit: flags.global_over_limit,
        redis: redis.version.clone(),
        peer: peer.as_ref().map(|_| ()).map_err(Clone::clone),
    });
    let setups = setups::setups(&flags.global_limit, flags.global_over_limit);
    let mut results = Vec::with_capacity(setups.len());
    for (i, setup) in setups.iter().enumerate() {
        let m = match setup.servers {
            Servers::Hubs { count, global } => bench.hubs(i, setup, count, global).map(Ok),
            Servers::Peer => bench.peer(setup),
        }
        .with_context(|| format!("{} ({})", setup.name, setup.limit))?;
        if let Err(why) = &m {
            eprintln!("{}: skipped: {why}", setup.name);
        }
        results.push(m);
    }
    drop(redis);
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_secs(1));
    report::print(&setups, &results);
    Ok(())
}
