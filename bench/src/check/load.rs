//! The load generator: a closed loop (fixed number of calls in flight, as fast as possible) to find the
//! maximum rate, and an open loop (fixed arrival rate, latency measured from each call's intended send time,
//! so a slow response cannot hide the calls that should have been sent meanwhile).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use hyper::body::Bytes;
use sextant_bench::cpu;
use sextant_bench::load::Shape;
use sextant_proto::envoy::service::auth::v3 as authz;
use sextant_proto::envoy::service::ratelimit::v3 as rls;
use sextant_proto::mixer;

use crate::wire::{Api, Conn, Outcome, grpc_frame};

/// Which requests a target is sent.
#[derive(Clone)]
pub enum Requests {
    /// Native `sextant.mixer.v1.Mixer/Check`.
    Native(Arc<[mixer::CheckRequest]>),
    /// Envoy `envoy.service.auth.v3.Authorization/Check`.
    Authz(Arc<[authz::CheckRequest]>),
    /// Envoy `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
    Rls(Arc<[rls::RateLimitRequest]>),
    /// OPA's REST decision API: each body the JSON `{"input": …}` of the ext_authz request of the same index.
    Opa(Arc<[Bytes]>),
}

impl Requests {
    /// The API and the bodies on the wire, encoded once.
    pub fn encoded(&self) -> (Api, Arc<[Bytes]>) {
        fn frames<M: prost::Message>(pool: &[M]) -> Arc<[Bytes]> {
            pool.iter().map(grpc_frame).collect()
        }
        match self {
            Requests::Native(p) => (Api::Native, frames(p)),
            Requests::Authz(p) => (Api::Authz, frames(p)),
            Requests::Rls(p) => (Api::Rls, frames(p)),
            Requests::Opa(p) => (Api::Opa, p.clone()),
        }
    }
}

/// What a target is for in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The empty server the hub is compared with.
    Baseline,
    /// A hub front door, compared with the baseline.
    Hub,
    /// Another policy engine given the same decisions to make (OPA).
    Peer,
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

/// A client on one HTTP/2 connection (cloning shares the connection) with the bodies it cycles through.
#[derive(Clone)]
struct Client {
    conn: Conn,
    bodies: Arc<[Bytes]>,
}

impl Client {
    /// Sends body `i` (modulo the pool size) and classifies the answer.
    async fn call(&mut self, i: usize) -> Outcome {
        let body = self.bodies[i % self.bodies.len()].clone();
        self.conn.call(body).await
    }
}

/// Opens `n` connections, to the target's servers in turn.
async fn connect_all(target: &Target, n: usize) -> anyhow::Result<Vec<Client>> {
    anyhow::ensure!(!target.addrs.is_empty(), "{} has no server", target.name);
    let (api, bodies) = target.requests.encoded();
    anyhow::ensure!(!bodies.is_empty(), "{} has no requests", target.name);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n.max(1) {
        let addr = target.addrs[i % target.addrs.len()];
        let conn = Conn::open(addr, api)
            .await
            .with_context(|| format!("connecting to {} at {addr}", target.name))?;
        clients.push(Client {
            conn,
            bodies: bodies.clone(),
        });
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
    /// Calls the server refused with gRPC status RESOURCE_EXHAUSTED (shed by `--max-in-flight`).
    pub shed: u64,
    /// Other failed calls.
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Denied => self.denied += 1,
            Outcome::Exhausted => self.exhausted += 1,
            Outcome::Other => self.other += 1,
            Outcome::Shed => self.shed += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    fn merge(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.denied += o.denied;
        self.exhausted += o.exhausted;
        self.other += o.other;
        self.shed += o.shed;
        self.errors += o.errors;
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.ok + self.denied + self.exhausted + self.other + self.shed + self.errors
    }

    /// Calls that failed, shed or otherwise.
    pub fn failed(&self) -> u64 {
        self.shed + self.errors
    }

    /// Calls answered with a decision (any code).
    pub fn decided(&self) -> u64 {
        self.ok + self.denied + self.exhausted + self.other
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
    /// The busiest client thread's share of one core during the window.
    pub client_busiest: Option<f64>,
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
    let (before, threads_before) = (cpu::sample(), cpu::threads(cpu::CLIENT_THREADS));
    tokio::time::sleep_until(end.into()).await;
    let (after, threads_after) = (cpu::sample(), cpu::threads(cpu::CLIENT_THREADS));
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
        client_busiest: cpu::busiest(&threads_before, &threads_after),
    })
}

/// Result of an open-loop run.
pub struct OpenResult {
    /// The intended arrival rate, calls/s.
    pub target_rate: f64,
    /// Calls sent over the whole run, warm-up included.
    pub sent: u64,
    /// Measured calls not sent because the client already had its cap of calls in flight
    /// ([`open_loop_capped`]).
    pub skipped: u64,
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
    /// The busiest client thread's share of one core during the window (the pacer included).
    pub client_busiest: Option<f64>,
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
    /// The same run restricted to the calls whose outcome `keep` accepts (e.g. the admitted ones).
    pub fn only(&self, keep: impl Fn(Outcome) -> bool) -> anyhow::Result<Self> {
        let calls: Vec<Call> = self
            .calls
            .iter()
            .filter(|c| keep(c.outcome))
            .copied()
            .collect();
        let s = summarize(calls.iter())?;
        Ok(OpenResult {
            latency: s.latency,
            service: s.service,
            lag: s.lag,
            counts: s.counts,
            calls,
            ..*self
        })
    }

    /// Measured calls actually sent per second of the measured window.
    pub fn sent_rate(&self) -> f64 {
        let (from, to) = self.window;
        self.calls.len() as f64 / (to - from).as_secs_f64().max(f64::MIN_POSITIVE)
    }

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
            skipped: self.skipped,
            achieved: calls.len() as f64 / seconds.max(f64::MIN_POSITIVE),
            latency: s.latency,
            service: s.service,
            lag: s.lag,
            counts: s.counts,
            unfinished: self.unfinished,
            cpu,
            client_busiest: None,
            window: self.window,
            calls,
        })
    }
}

/// The pacer's thread: named as the client side's threads, so its CPU time counts as the client's.
const PACER_THREAD: &str = "sextant-cli-pace";

/// Sends calls at `rate` per second, evenly spaced, each on its own task of the client runtime, over
/// `shape.connections` connections. A pacer thread (pinned with the client side) sleeps until each call's
/// intended time and spawns it, or every call already due when it wakes up late; its timer slack is set to
/// 1 ns so that it wakes when asked (the kernel's default lets a sleep run 50 µs long). Latency counts from
/// the intended time, so the pacer's own lateness is charged to the server rather than hidden (no
/// coordinated omission), and is reported as the lag. It replaced a dispatcher task that yielded between
/// sends (tokio's timers tick in whole milliseconds), which kept a client thread 100% busy at any rate.
pub async fn open_loop(target: &Target, shape: Shape, rate: f64) -> anyhow::Result<OpenResult> {
    open_loop_capped(target, shape, rate, usize::MAX).await
}

/// [`open_loop`], except that a call due while `cap` calls are in flight is not sent (counted in
/// [`OpenResult::skipped`]): under overload the client's own backlog stays bounded, and what it did offer is
/// reported.
pub async fn open_loop_capped(
    target: &Target,
    shape: Shape,
    rate: f64,
    cap: usize,
) -> anyhow::Result<OpenResult> {
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
    let pacing = Pacing {
        start,
        measure_from,
        end,
        interval_ns: 1e9 / rate,
        cap,
    };
    let runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    {
        let (calls, inflight, in_window) = (calls.clone(), inflight.clone(), in_window.clone());
        std::thread::Builder::new()
            .name(PACER_THREAD.into())
            .spawn(move || {
                let paced = pace(&runtime, &clients, pacing, &calls, &inflight, &in_window);
                let _ = done_tx.send(paced);
            })
            .context("starting the pacer thread")?;
    }
    let paced = done_rx.await.context("the pacer thread ended early")?;
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
        sent: paced.sent,
        skipped: paced.skipped,
        achieved,
        latency: s.latency,
        service: s.service,
        lag: s.lag,
        counts: s.counts,
        unfinished,
        cpu: paced.cpu,
        client_busiest: paced.client_busiest,
        window: (measure_from, end),
        calls,
    })
}

/// When an open loop's calls are due.
#[derive(Clone, Copy)]
struct Pacing {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    interval_ns: f64,
    cap: usize,
}

/// What the pacer measured.
struct Paced {
    sent: u64,
    skipped: u64,
    cpu: cpu::Usage,
    client_busiest: Option<f64>,
}

/// The pacer (see [`open_loop`]): runs on its own thread until the last call is due, then reads the CPU used.
fn pace(
    runtime: &tokio::runtime::Handle,
    clients: &[Client],
    p: Pacing,
    calls: &Arc<Mutex<Vec<Call>>>,
    inflight: &Arc<AtomicUsize>,
    in_window: &Arc<AtomicU64>,
) -> Paced {
    // Best effort: without it the pacer is up to 50 µs late more often, which the lag column shows.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    let mut before = None;
    let mut n: u64 = 0;
    let mut skipped = 0;
    loop {
        let intended = p.start + Duration::from_nanos((n as f64 * p.interval_ns) as u64);
        if intended >= p.end {
            break;
        }
        let now = Instant::now();
        if now < intended {
            std::thread::sleep(intended - now);
            continue;
        }
        let measured = intended >= p.measure_from;
        if measured && before.is_none() {
            before = Some((cpu::sample(), cpu::threads(cpu::CLIENT_THREADS)));
        }
        if inflight.load(Ordering::Relaxed) >= p.cap {
            skipped += u64::from(measured);
            n += 1;
            continue;
        }
        let mut client = clients[(n as usize) % clients.len()].clone();
        let (calls, inflight, in_window) = (calls.clone(), inflight.clone(), in_window.clone());
        let index = n as usize;
        let (measure_from, end) = (p.measure_from, p.end);
        inflight.fetch_add(1, Ordering::Relaxed);
        runtime.spawn(async move {
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
    }
    let now = Instant::now();
    if now < p.end {
        std::thread::sleep(p.end - now);
    }
    let (after, threads_after) = (cpu::sample(), cpu::threads(cpu::CLIENT_THREADS));
    let (cpu, client_busiest) = match before {
        Some((b, threads_before)) => (
            cpu::usage(b, after),
            cpu::busiest(&threads_before, &threads_after),
        ),
        None => (cpu::Usage::default(), None),
    };
    Paced {
        sent: n - skipped,
        skipped,
        cpu,
        client_busiest,
    }
}
