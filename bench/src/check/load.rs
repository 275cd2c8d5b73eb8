//! The load generator: a closed loop (fixed number of calls in flight, as fast as possible) to find the
//! maximum rate, and an open loop (fixed arrival rate, latency measured from each call's intended send time,
//! so a slow response cannot hide the calls that should have been sent meanwhile).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use sextant_bench::cpu;
use sextant_bench::load::{Shape, connect};
use sextant_proto::envoy::service::auth::v3 as authz;
use sextant_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use sextant_proto::envoy::service::ratelimit::v3 as rls;
use sextant_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use sextant_proto::mixer;
use sextant_proto::mixer::mixer_client::MixerClient;
use tonic::transport::Channel;

/// google.rpc code PERMISSION_DENIED.
const PERMISSION_DENIED: i32 = 7;
/// google.rpc code RESOURCE_EXHAUSTED.
const RESOURCE_EXHAUSTED: i32 = 8;

/// Which requests a target is sent.
#[derive(Clone)]
pub enum Requests {
    /// Native `sextant.mixer.v1.Mixer/Check`.
    Native(Arc<[mixer::CheckRequest]>),
    /// Envoy `envoy.service.auth.v3.Authorization/Check`.
    Authz(Arc<[authz::CheckRequest]>),
    /// Envoy `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
    Rls(Arc<[rls::RateLimitRequest]>),
}

/// What a target is for in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The empty server the hub is compared with.
    Baseline,
    /// A hub front door, compared with the baseline.
    Hub,
}

/// One server and request kind to measure.
#[derive(Clone)]
pub struct Target {
    /// Label in the output.
    pub name: &'static str,
    /// Its role in the comparison.
    pub role: Role,
    /// Server addresses (several servers of the same kind: the connections go to them in turn).
    pub addrs: Vec<SocketAddr>,
    /// The requests, cycled through in order.
    pub requests: Requests,
    /// Mean encoded request size in bytes.
    pub request_bytes: usize,
}

/// A client on one HTTP/2 connection (cloning shares the connection).
#[derive(Clone)]
enum Client {
    /// Native Mixer client.
    Native(MixerClient<Channel>, Arc<[mixer::CheckRequest]>),
    /// ext_authz client.
    Authz(AuthorizationClient<Channel>, Arc<[authz::CheckRequest]>),
    /// Rate-limit service client.
    Rls(
        RateLimitServiceClient<Channel>,
        Arc<[rls::RateLimitRequest]>,
    ),
}

/// What one call returned.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// A decision with status OK (the empty server's empty response counts as OK).
    Ok,
    /// PERMISSION_DENIED.
    Denied,
    /// RESOURCE_EXHAUSTED, or OVER_LIMIT from the rate-limit service (a rate limit refused; never with
    /// the benchmark's default limits).
    Exhausted,
    /// Any other decision code.
    Other,
    /// The call itself failed (gRPC status or transport error).
    Error,
}

fn outcome_of(code: i32) -> Outcome {
    match code {
        0 => Outcome::Ok,
        PERMISSION_DENIED => Outcome::Denied,
        RESOURCE_EXHAUSTED => Outcome::Exhausted,
        _ => Outcome::Other,
    }
}

impl Client {
    /// Opens a new connection to `target`'s server at `addr`.
    async fn connect(target: &Target, addr: SocketAddr) -> anyhow::Result<Self> {
        let channel = connect(addr)
            .await
            .with_context(|| format!("connecting to {} at {addr}", target.name))?;
        Ok(match &target.requests {
            Requests::Native(r) => Client::Native(MixerClient::new(channel), r.clone()),
            Requests::Authz(r) => Client::Authz(AuthorizationClient::new(channel), r.clone()),
            Requests::Rls(r) => Client::Rls(RateLimitServiceClient::new(channel), r.clone()),
        })
    }

    /// Sends request `i` (modulo the pool size) and classifies the answer.
    async fn call(&mut self, i: usize) -> Outcome {
        match self {
            Client::Native(c, pool) => {
                let req = pool[i % pool.len()].clone();
                match c.check(req).await {
                    Ok(r) => outcome_of(
                        r.into_inner()
                            .precondition
                            .and_then(|p| p.status)
                            .map_or(0, |s| s.code),
                    ),
                    Err(_) => Outcome::Error,
                }
            }
            Client::Authz(c, pool) => {
                let req = pool[i % pool.len()].clone();
                match c.check(req).await {
                    Ok(r) => outcome_of(r.into_inner().status.map_or(0, |s| s.code)),
                    Err(_) => Outcome::Error,
                }
            }
            Client::Rls(c, pool) => {
                let req = pool[i % pool.len()].clone();
                match c.should_rate_limit(req).await {
                    Ok(r) => {
                        match rls::rate_limit_response::Code::try_from(r.into_inner().overall_code)
                        {
                            Ok(rls::rate_limit_response::Code::Ok) => Outcome::Ok,
                            Ok(rls::rate_limit_response::Code::OverLimit) => Outcome::Exhausted,
                            _ => Outcome::Other,
                        }
                    }
                    Err(_) => Outcome::Error,
                }
            }
        }
    }
}

/// Opens `n` connections, to the target's servers in turn.
async fn connect_all(target: &Target, n: usize) -> anyhow::Result<Vec<Client>> {
    anyhow::ensure!(!target.addrs.is_empty(), "{} has no server", target.name);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let addr = target.addrs[i % target.addrs.len()];
        clients.push(Client::connect(target, addr).await?);
    }
    Ok(clients)
}

/// Decision counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// OK decisions.
    pub ok: u64,
    /// PERMISSION_DENIED decisions.
    pub denied: u64,
    /// RESOURCE_EXHAUSTED decisions.
    pub exhausted: u64,
    /// Other decision codes.
    pub other: u64,
    /// Failed calls.
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::Exhausted => self.exhausted += 1,
            Outcome::Other => self.other += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    fn merge(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.denied += o.denied;
        self.exhausted += o.exhausted;
        self.other += o.other;
        self.errors += o.errors;
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.ok + self.denied + self.exhausted + self.other + self.errors
    }
}

/// A latency histogram in nanoseconds (1 ns .. 60 s, 3 significant digits).
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000_000, 3)?)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Result of a closed-loop run.
pub struct ClosedResult {
    /// Calls completed in the measured window, per second.
    pub rate: f64,
    /// Latency of those calls, ns.
    pub latency: Histogram<u64>,
    /// Their decisions.
    pub counts: Counts,
    /// CPU use of both runtimes during the window.
    pub cpu: cpu::Usage,
}

/// Runs `shape.concurrency` callers, each sending its next call as soon as the previous returned.
pub async fn closed_loop(target: &Target, shape: Shape) -> anyhow::Result<ClosedResult> {
    let clients = connect_all(target, shape.connections).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let measure_from = Instant::now() + shape.warmup;
    let end = measure_from + shape.duration;
    let mut workers = Vec::with_capacity(shape.concurrency);
    for w in 0..shape.concurrency.max(1) {
        let mut client = clients[w % clients.len()].clone();
        let next = next.clone();
        let mut latency = histogram()?;
        workers.push(tokio::spawn(async move {
            let mut counts = Counts::default();
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let outcome = client.call(next.fetch_add(1, Ordering::Relaxed)).await;
                let done = Instant::now();
                if start >= measure_from && done <= end {
                    latency.saturating_record(nanos(done - start));
                    counts.add(outcome);
                }
            }
            (latency, counts)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = cpu::sample();
    tokio::time::sleep_until(end.into()).await;
    let after = cpu::sample();
    let mut latency = histogram()?;
    let mut counts = Counts::default();
    for w in workers {
        let (h, c) = w.await.context("closed-loop worker")?;
        latency.add(&h)?;
        counts.merge(&c);
    }
    let rate = latency.len() as f64 / shape.duration.as_secs_f64();
    Ok(ClosedResult {
        rate,
        latency,
        counts,
        cpu: cpu::usage(before, after),
    })
}

/// Result of an open-loop run.
pub struct OpenResult {
    /// The intended arrival rate, calls/s.
    pub target_rate: f64,
    /// Calls sent over the whole run, warm-up included.
    pub sent: u64,
    /// Calls that completed within the measured window, per second.
    pub achieved: f64,
    /// Latency from each call's intended send time to its response, ns.
    pub latency: Histogram<u64>,
    /// Latency from each call's actual send time to its response, ns.
    pub service: Histogram<u64>,
    /// How late each call actually started relative to its intended time (client-side delay), ns.
    pub lag: Histogram<u64>,
    /// Decisions of the measured calls.
    pub counts: Counts,
    /// Calls still unanswered 5 s after the last send (counted neither above nor in the latency).
    pub unfinished: usize,
    /// CPU use of both runtimes during the window.
    pub cpu: cpu::Usage,
    /// The measured window (intended send times from, to).
    pub window: (Instant, Instant),
    /// Every measured call, to summarize parts of the window ([`OpenResult::within`]).
    calls: Vec<Call>,
}

/// One measured call of an open loop.
#[derive(Clone, Copy)]
struct Call {
    intended: Instant,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

/// Latency histograms and decision counts of some calls.
struct Summary {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    lag: Histogram<u64>,
    counts: Counts,
}

fn summarize<'a>(calls: impl Iterator<Item = &'a Call>) -> anyhow::Result<Summary> {
    let mut s = Summary {
        latency: histogram()?,
        service: histogram()?,
        lag: histogram()?,
        counts: Counts::default(),
    };
    for c in calls {
        s.latency.saturating_record(nanos(c.done - c.intended));
        s.service.saturating_record(nanos(c.done - c.sent));
        s.lag
            .saturating_record(nanos(c.sent.saturating_duration_since(c.intended)));
        s.counts.add(c.outcome);
    }
    Ok(s)
}

impl OpenResult {
    /// The same run restricted to the calls intended within one of `windows` (each `from..to`), with `cpu`
    /// measured over those windows.
    pub fn within(&self, windows: &[(Instant, Instant)], cpu: cpu::Usage) -> anyhow::Result<Self> {
        let inside = |t: Instant| windows.iter().any(|&(from, to)| from <= t && t < to);
        let calls: Vec<Call> = self
            .calls
            .iter()
            .filter(|c| inside(c.intended))
            .copied()
            .collect();
        let seconds: f64 = windows.iter().map(|&(f, t)| (t - f).as_secs_f64()).sum();
        let s = summarize(calls.iter())?;
        Ok(OpenResult {
            target_rate: self.target_rate,
            sent: self.sent,
            achieved: calls.len() as f64 / seconds.max(f64::MIN_POSITIVE),
            latency: s.latency,
            service: s.service,
            lag: s.lag,
            counts: s.counts,
            unfinished: self.unfinished,
            cpu,
            window: self.window,
            calls,
        })
    }
}

/// Sends calls at `rate` per second, evenly spaced, each on its own task, over `shape.connections`
/// connections. Between sends the dispatcher sleeps when the next send is over 2 ms away and otherwise yields
/// to the runtime (so responses are processed meanwhile): tokio's timers tick in whole milliseconds, too
/// coarse for thousands of calls per second. A pacer on another thread was tried and was worse: waking the
/// worker from outside for every call made the client-side delay ~20× larger. The price is that the client
/// worker is always busy during an open-loop run (its CPU reads ~100%).
pub async fn open_loop(target: &Target, shape: Shape, rate: f64) -> anyhow::Result<OpenResult> {
    anyhow::ensure!(
        rate.is_finite() && rate >= 1.0,
        "open-loop rate {rate} is not a usable rate"
    );
    let clients = connect_all(target, shape.connections).await?;
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let inflight = Arc::new(AtomicUsize::new(0));
    let in_window = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(5);
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let interval_ns = 1e9 / rate;
    let mut before: Option<cpu::Sample> = None;
    let mut n: u64 = 0;
    let mut burst = 0u32;
    loop {
        let intended = start + Duration::from_nanos((n as f64 * interval_ns) as u64);
        if intended >= end {
            break;
        }
        let now = Instant::now();
        if now < intended {
            burst = 0;
            if intended - now > Duration::from_millis(2) {
                tokio::time::sleep_until((intended - Duration::from_millis(1)).into()).await;
            } else {
                tokio::task::yield_now().await;
            }
            continue;
        }
        let measured = intended >= measure_from;
        if measured && before.is_none() {
            before = Some(cpu::sample());
        }
        let mut client = clients[(n as usize) % clients.len()].clone();
        let (calls, inflight, in_window) = (calls.clone(), inflight.clone(), in_window.clone());
        let index = n as usize;
        inflight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = client.call(index).await;
            let done = Instant::now();
            if done >= measure_from && done <= end {
                in_window.fetch_add(1, Ordering::Relaxed);
            }
            if measured {
                let call = Call {
                    intended,
                    sent,
                    done,
                    outcome,
                };
                calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
            }
            inflight.fetch_sub(1, Ordering::Relaxed);
        });
        n += 1;
        // When behind schedule, still let responses be processed now and then.
        burst += 1;
        if burst >= 64 {
            burst = 0;
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep_until(end.into()).await;
    let after = cpu::sample();
    let cpu = before.map(|b| cpu::usage(b, after)).unwrap_or_default();
    let give_up = Instant::now() + Duration::from_secs(5);
    while inflight.load(Ordering::Relaxed) > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let unfinished = inflight.load(Ordering::Relaxed);
    let achieved = in_window.load(Ordering::Relaxed) as f64 / shape.duration.as_secs_f64();
    let calls = std::mem::take(&mut *calls.lock().unwrap_or_else(|p| p.into_inner()));
    let s = summarize(calls.iter())?;
    Ok(OpenResult {
        target_rate: rate,
        sent: n,
        achieved,
        latency: s.latency,
        service: s.service,
        lag: s.lag,
        counts: s.counts,
        unfinished,
        cpu,
        window: (measure_from, end),
        calls,
    })
}
