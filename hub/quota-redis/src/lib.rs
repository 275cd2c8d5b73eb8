//! GLOBAL rate limits: one budget shared by every hub through Redis, without a Redis round trip per decision.
//!
//! Each RateLimit with `scope: GLOBAL` keeps its GCRA buckets in Redis (the same algorithm as the local
//! backend, updated atomically by a Lua script run with `EVALSHA`; keys `PREFIX:GENERATION:NAME:VALUES`
//! with TTLs, so idle buckets vanish and a changed limit starts afresh). A hub leases slices of a bucket and
//! spends them locally ([`limiter`]); a background worker runs the lease calls and a heartbeat that counts
//! the live hubs (the fallback divides the limit by that count).
//!
//! The accuracy bound (docs/policies.md): with overshoot fraction `f`, a bucket's slack is
//! `⌊f/3 · requests⌋` units past its capacity, any leased unit may be kept `f/3 · per`, and only the
//! slack's worth (shared by the live hubs) longer, so in any window of length `per` all hubs together grant
//! at most what one local bucket would, plus `⌊f · requests⌋`. Units leased but never spent are given back (or, from a hub that died,
//! simply age out of the bucket: GCRA forgets them within `per`).
//!
//! The `redis` crate serves all three topologies (standalone, Sentinel, Cluster with its slot routing and
//! redirections), TLS through rustls and AUTH, and retries `EVALSHA` with `SCRIPT LOAD` after a failover
//! lost the script cache; it is the project's one Redis client.

mod client;
mod limiter;
pub mod url;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub_quota::{LimitSpec, Limiter, QuotaBackend};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc};

pub use client::Failure;
pub use limiter::{GlobalLimiter, Holding};
pub use url::{Topology, UrlError};

/// Lease calls queued for Redis at most; beyond, a bucket without units decides by the fallback.
const QUEUE: usize = 4096;
/// Redis calls in flight at most.
const IN_FLIGHT: usize = 256;
/// The longest a stopping hub spends giving back its units.
pub const LEAVE_WITHIN: Duration = Duration::from_secs(2);
/// A bucket unused this long is dropped (its units given back).
const IDLE: Duration = Duration::from_secs(30);

/// How the backend reaches Redis and how much it may trade accuracy for speed.
#[derive(Clone, Debug)]
pub struct Options {
    /// The deployment.
    pub topology: Topology,
    /// Every Redis call (connect included) ends within this.
    pub timeout: Duration,
    /// The longest a decision waits for a lease before the fallback decides.
    pub budget: Duration,
    /// The fraction of a limit all hubs together may grant above it in one window (default 1%).
    pub overshoot: f64,
    /// Buckets one limiter keeps at most.
    pub max_keys: usize,
    /// The first part of every key.
    pub prefix: String,
    /// This hub in the fleet's heartbeat set.
    pub hub_id: String,
    /// How often the hub says it is alive (it counts as live for three intervals).
    pub heartbeat: Duration,
    /// TLS beyond the system's roots (for `rediss` URLs).
    pub tls: TlsFiles,
}

/// PEM contents for TLS to Redis: a CA to trust instead of the system's roots, and a client certificate
/// for servers that require one.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// The CA certificate(s), PEM.
    pub ca: Option<Vec<u8>>,
    /// The client certificate and its key, PEM.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

impl TlsFiles {
    /// Whether anything is set.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client.is_some()
    }
}

impl Options {
    /// Defaults: 100 ms per call, 1 ms decision budget, 1% overshoot, 100 000 buckets, prefix
    /// `sextant:quota`, a heartbeat a second, and an id from the host name, process id and start time.
    pub fn new(topology: Topology) -> Options {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "hub".into());
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Options {
            topology,
            timeout: Duration::from_millis(100),
            budget: Duration::from_millis(1),
            overshoot: 0.01,
            max_keys: 100_000,
            prefix: "sextant:quota".into(),
            hub_id: format!("{host}-{}-{nonce:08x}", std::process::id()),
            heartbeat: Duration::from_secs(1),
            tls: TlsFiles::default(),
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.overshoot > 0.0 && self.overshoot <= 1.0) {
            return Err(format!(
                "overshoot {} must be above 0 and at most 1 (0.01 is 1%)",
                self.overshoot
            ));
        }
        if self.timeout.is_zero() || self.budget.is_zero() || self.heartbeat.is_zero() {
            return Err(
                "the Redis timeout, decision budget and heartbeat must be above zero".into(),
            );
        }
        if self.tls.is_set() {
            match &self.topology {
                Topology::Sentinel { .. } => {
                    return Err("a CA or client certificate is not supported with Sentinel (the redis crate \
                                trusts the system's roots there): add the CA to the system's roots"
                        .into());
                }
                Topology::Standalone(url) if !url.starts_with("rediss://") => {
                    return Err("a CA or client certificate needs a rediss:// URL".into());
                }
                Topology::Cluster(nodes) if !nodes.iter().all(|n| n.starts_with("rediss://")) => {
                    return Err("a CA or client certificate needs a rediss+cluster:// URL".into());
                }
                _ => {}
            }
        }
        if self.prefix.is_empty() {
            return Err("the key prefix must not be empty".into());
        }
        Ok(())
    }
}

/// Why a decision was made without Redis (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FallbackReason {
    /// Redis failed (connection, timeout, READONLY, garbage): the bucket decides locally until it answers.
    Unavailable,
    /// No lease came within the decision budget.
    Slow,
    /// The queue of lease calls was full.
    Overloaded,
}

impl FallbackReason {
    fn label(self) -> &'static str {
        match self {
            FallbackReason::Unavailable => "unavailable",
            FallbackReason::Slow => "slow",
            FallbackReason::Overloaded => "overloaded",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    ratelimit: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    ratelimit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    failure: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScriptLabels {
    script: &'static str,
}

/// The backend's metrics (labels are RateLimit names from the configuration, or fixed words).
struct Metrics {
    fallback: Family<FallbackLabels, Counter>,
    commands: Family<ScriptLabels, Counter>,
    errors: Family<FailureLabels, Counter>,
    dropped: Counter,
    leased: Family<RateLimitLabels, Counter>,
    held: Family<RateLimitLabels, Gauge>,
    hubs: Gauge,
    up: Gauge,
    wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            fallback: Family::default(),
            commands: Family::default(),
            errors: Family::default(),
            dropped: Counter::default(),
            leased: Family::default(),
            held: Family::default(),
            hubs: Gauge::default(),
            up: Gauge::default(),
            wait: Histogram::new([
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.1,
            ]),
        }
    }
}

/// A lease call: take `want` units of `key`'s bucket, give back `back`, charge `charge`.
pub(crate) struct Job {
    pub(crate) limiter: Arc<GlobalLimiter>,
    pub(crate) key: Vec<String>,
    pub(crate) want: u32,
    pub(crate) back: u32,
    pub(crate) charge: u32,
}

/// Tells the bucket how its lease call ended, when dropped.
struct Pending<'a> {
    job: &'a Job,
    result: Option<Result<client::Leased, Failure>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.result.take() {
            self.job.limiter.leased(&self.job.key, r);
        }
    }
}

enum Work {
    Lease(Job),
    GiveBack {
        key: String,
        t: Duration,
        depth: Duration,
        units: u32,
    },
}

/// What every limiter of the backend shares.
pub(crate) struct Shared {
    pub(crate) options: Options,
    pub(crate) client: client::Client,
    jobs: mpsc::Sender<Work>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Work>>,
    hubs: AtomicU32,
    metrics: Metrics,
}

impl Shared {
    /// The live hubs, last known (one before the first heartbeat).
    pub(crate) fn hubs(&self) -> u32 {
        self.hubs.load(Ordering::Relaxed).max(1)
    }

    /// Queues a lease call; false (and counted) when the queue is full.
    pub(crate) fn submit(&self, job: Job) -> bool {
        match self.jobs.try_send(Work::Lease(job)) {
            Ok(()) => true,
            Err(_) => {
                self.metrics.dropped.inc();
                false
            }
        }
    }

    pub(crate) fn give_back(&self, key: String, t: Duration, depth: Duration, units: u32) {
        let work = Work::GiveBack {
            key,
            t,
            depth,
            units,
        };
        if self.jobs.try_send(work).is_err() {
            self.metrics.dropped.inc();
        }
    }

    pub(crate) fn fallen_back(&self, ratelimit: &str, reason: FallbackReason) {
        self.metrics
            .fallback
            .get_or_create(&FallbackLabels {
                ratelimit: ratelimit.to_string(),
                reason: reason.label(),
            })
            .inc();
    }

    pub(crate) fn leased(&self, ratelimit: &str, units: u32) {
        self.metrics
            .leased
            .get_or_create(&RateLimitLabels {
                ratelimit: ratelimit.to_string(),
            })
            .inc_by(u64::from(units));
    }

    pub(crate) fn waited(&self, d: Duration) {
        self.metrics.wait.observe(d.as_secs_f64());
    }

    /// Counts a call's result.
    fn counted<T>(&self, script: &'static str, r: Result<T, Failure>) -> Result<T, Failure> {
        self.metrics
            .commands
            .get_or_create(&ScriptLabels { script })
            .inc();
        match &r {
            Ok(_) => {
                self.metrics.up.set(1);
            }
            Err(f) => {
                self.metrics.up.set(0);
                self.metrics
                    .errors
                    .get_or_create(&FailureLabels { failure: f.label() })
                    .inc();
            }
        }
        r
    }

    async fn execute(&self, work: Work) {
        match work {
            Work::Lease(job) => {
                let (key, t, depth) = job.limiter.lease_call(&job.key);
                // Whatever ends the call (a panic or cancellation included), the bucket learns of it and
                // stops waiting for this lease.
                let mut pending = Pending {
                    job: &job,
                    result: Some(Err(Failure::Protocol)),
                };
                let r = self
                    .client
                    .lease(
                        &key,
                        t,
                        depth,
                        client::Ask {
                            want: job.want,
                            back: job.back,
                            charge: job.charge,
                            reserve: job.limiter.reserve_window(),
                        },
                    )
                    .await;
                pending.result = Some(self.counted("lease", r));
            }
            Work::GiveBack {
                key,
                t,
                depth,
                units,
            } => {
                let r = self
                    .client
                    .lease(&key, t, depth, client::Ask::give_back(units))
                    .await;
                let _ = self.counted("lease", r);
            }
        }
    }
}

/// The GLOBAL backend: limiters whose buckets live in Redis.
pub struct RedisBackend {
    shared: Arc<Shared>,
    limiters: Mutex<HashMap<String, Arc<GlobalLimiter>>>,
    beating: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("topology", &self.shared.options.topology)
            .field("hub_id", &self.shared.options.hub_id)
            .finish()
    }
}

impl RedisBackend {
    /// A backend for `options` (checked first); nothing connects until [`RedisBackend::run`] runs.
    pub fn new(options: Options) -> Result<Arc<RedisBackend>, String> {
        options.validate()?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        Ok(Arc::new(RedisBackend {
            shared: Arc::new(Shared {
                client: client::Client::new(
                    options.topology.clone(),
                    options.tls.clone(),
                    options.timeout,
                ),
                options,
                jobs,
                queue: tokio::sync::Mutex::new(queue),
                hubs: AtomicU32::new(1),
                metrics: Metrics::default(),
            }),
            limiters: Mutex::new(HashMap::new()),
            beating: Arc::new(AtomicBool::new(false)),
        }))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<GlobalLimiter>>> {
        self.limiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the backend's metrics.
    pub fn register_metrics(&self, r: &mut Registry) {
        let m = &self.shared.metrics;
        r.register(
            "sextant_quota_fallback",
            "GLOBAL rate-limit decisions made without Redis, by RateLimit and reason (unavailable, slow, overloaded)",
            m.fallback.clone(),
        );
        r.register(
            "sextant_quota_redis_commands",
            "Redis calls made by the GLOBAL rate-limit backend, by script",
            m.commands.clone(),
        );
        r.register(
            "sextant_quota_redis_errors",
            "Redis calls that failed, by failure (connection, timeout, server, protocol)",
            m.errors.clone(),
        );
        r.register(
            "sextant_quota_redis_queue_dropped",
            "Lease calls not queued because the queue to Redis was full (those requests decided by the fallback)",
            m.dropped.clone(),
        );
        r.register(
            "sextant_quota_leased_units",
            "Units this hub leased from GLOBAL buckets, by RateLimit",
            m.leased.clone(),
        );
        r.register(
            "sextant_quota_held_units",
            "Leased units this hub holds unspent (its share of the GLOBAL buckets), by RateLimit",
            m.held.clone(),
        );
        r.register(
            "sextant_quota_hubs",
            "Live hubs sharing the GLOBAL limits, as last counted in Redis",
            m.hubs.clone(),
        );
        r.register(
            "sextant_quota_redis_up",
            "Whether the last Redis call succeeded",
            m.up.clone(),
        );
        r.register(
            "sextant_quota_wait_seconds",
            "Time decisions waited for a lease (bounded by the decision budget)",
            m.wait.clone(),
        );
    }

    /// The live hubs, last known.
    pub fn hubs(&self) -> u32 {
        self.shared.hubs()
    }

    /// Runs the lease calls and the heartbeat until cancelled. Restartable: a second run takes over the
    /// queue.
    pub async fn run(self: Arc<Self>) {
        let mut queue = self.shared.queue.lock().await;
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut beat = tokio::time::interval(self.shared.options.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                work = queue.recv() => {
                    let Some(work) = work else { return };
                    let Ok(slot) = slots.clone().acquire_owned().await else { return };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        shared.execute(work).await;
                        drop(slot);
                    });
                }
                _ = beat.tick() => {
                    if !self.beating.swap(true, Ordering::AcqRel) {
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.heartbeat(true).await;
                            me.beating.store(false, Ordering::Release);
                        });
                    }
                }
            }
        }
    }

    async fn heartbeat(&self, live: bool) {
        let o = &self.shared.options;
        let key = format!("{}:hubs", o.prefix);
        let r = self
            .shared
            .client
            .heartbeat(&key, &o.hub_id, o.heartbeat.saturating_mul(3), live)
            .await;
        if let Ok(n) = self.shared.counted("heartbeat", r) {
            let n = n.max(1);
            self.shared.hubs.store(n, Ordering::Relaxed);
            self.shared.metrics.hubs.set(i64::from(n));
            let limiters: Vec<_> = self.map().values().cloned().collect();
            for l in limiters {
                l.set_hubs(n);
            }
        }
    }

    /// Gives back every unit held and leaves the fleet (the hub is stopping), within [`LEAVE_WITHIN`]: what
    /// is not given back by then ages out of the buckets.
    pub async fn leave(&self) {
        let limiters: Vec<_> = self.map().values().cloned().collect();
        let give_back = async {
            for l in &limiters {
                let (t, depth) = l.shape();
                for (key, units) in l.release_all() {
                    let r = self
                        .shared
                        .client
                        .lease(&key, t, depth, client::Ask::give_back(units))
                        .await;
                    let _ = self.shared.counted("lease", r);
                }
            }
            self.heartbeat(false).await;
        };
        if tokio::time::timeout(LEAVE_WITHIN, give_back).await.is_err() {
            tracing::warn!("redis: leaving the fleet took too long; unspent units age out instead");
        }
    }
}

impl QuotaBackend for RedisBackend {
    fn limiter(&self, name: &str, spec: LimitSpec) -> Arc<dyn Limiter> {
        let mut map = self.map();
        if let Some(l) = map.get(name).filter(|l| l.spec() == spec) {
            return Arc::new(limiter::Handle(l.clone()));
        }
        let l = Arc::new(GlobalLimiter::new(name, spec, self.shared.clone()));
        tracing::info!(
            ratelimit = name,
            slack = l.slack(),
            reserve_window = ?l.reserve_window(),
            "GLOBAL rate limit counted in Redis"
        );
        map.insert(name.to_string(), l.clone());
        Arc::new(limiter::Handle(l))
    }

    fn retain(&self, live: &[String]) {
        let mut gone = Vec::new();
        self.map().retain(|name, l| {
            let keep = live.iter().any(|n| n == name);
            if !keep {
                gone.push(l.clone());
            }
            keep
        });
        for l in gone {
            let (t, depth) = l.shape();
            for (key, units) in l.release_all() {
                self.shared.give_back(key, t, depth, units);
            }
            self.shared.metrics.held.remove(&RateLimitLabels {
                ratelimit: l.name().to_string(),
            });
        }
    }

    fn housekeeping(&self) {
        let limiters: Vec<_> = self.map().values().cloned().collect();
        for l in limiters {
            let held = l.housekeeping(IDLE);
            self.shared
                .metrics
                .held
                .get_or_create(&RateLimitLabels {
                    ratelimit: l.name().to_string(),
                })
                .set(i64::try_from(held).unwrap_or(i64::MAX));
        }
    }
}
