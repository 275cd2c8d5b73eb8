//! The proxy's side of the hub's Report (`sextant.mixer.v1.Mixer/Report`): each finished request's
//! attributes are handed to a [`Reporter`], which batches them — delta-encoded against the previous entry,
//! one word list per batch ([`sextant_attributes::ReportBatch`]) — and sends a batch when it holds
//! `entries` requests or its first request has waited `interval`.
//!
//! Nothing waits on the hub: handing a request over never blocks (a full buffer drops it, counted), and a
//! batch the hub does not take is dropped and counted too (telemetry is best effort, as Envoy's access-log
//! service is). Handing over is a push under a short lock; the sending task is woken only when a batch is
//! full, else by its timer, never once per request (a wake-up per request cost the data path more than the
//! encoding does). The task is supervised: a panic is logged, counted and shown on `/ready`, and the task
//! starts over with the requests still buffered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use proxy_balance::Cluster;
use proxy_stats::{Counter, Scope, Stats};
use sextant_attributes::{Bag, ReportBatch};
use sextant_supervise::TaskHealth;
use std::sync::{Mutex, PoisonError};
use tokio::sync::Notify;
use tracing::Instrument;

/// The hub's Report method.
pub const REPORT_PATH: &str = "/sextant.mixer.v1.Mixer/Report";
/// The longest a Report call may take before its batch is given up.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Batching {
    /// Requests per Report call.
    pub entries: usize,
    /// The longest a request waits to be sent.
    pub interval: Duration,
    /// Requests held while a call is under way; more are dropped.
    pub buffer: usize,
}

/// A hub cluster's Report stats (`cluster.NAME.hub.report.*`).
#[derive(Debug, Clone)]
pub struct ReportStats {
    /// `hub.report.calls`: Report calls made.
    pub calls: Counter,
    /// `hub.report.entries`: requests the hub accepted.
    pub entries: Counter,
    /// `hub.report.dropped`: requests never reported (buffer full, call failed, refused by the hub).
    pub dropped: Counter,
    /// `hub.report.error`: calls that failed.
    pub error: Counter,
}

impl ReportStats {
    fn new(stats: &Stats, cluster: &str) -> ReportStats {
        let scope = Scope::Cluster(cluster.to_string());
        let c = |n: &str| stats.counter(&scope, &format!("hub.report.{n}"));
        ReportStats {
            calls: c("calls"),
            entries: c("entries"),
            dropped: c("dropped"),
            error: c("error"),
        }
    }
}

/// Finds a cluster by name in the configuration current when a batch is sent.
pub type Clusters = Arc<dyn Fn(&str) -> Option<Arc<Cluster>> + Send + Sync>;

/// Reports finished requests to one hub cluster. Sending stops once every handle is dropped, after the
/// requests already handed over are sent.
#[derive(Debug)]
pub struct Reporter {
    shared: Arc<Queue>,
    stats: ReportStats,
}

/// The requests handed over and not yet taken by the sending task.
#[derive(Debug)]
struct Queue {
    held: Mutex<Held>,
    /// Wakes the sending task: a batch is full, or the reporter is gone.
    wake: Notify,
    batching: Batching,
}

#[derive(Debug, Default)]
struct Held {
    bags: Vec<Bag>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Reporter {
    /// Starts reporting to `cluster`, batching as `batching` says.
    pub fn start(
        cluster: &str,
        batching: Batching,
        clusters: Clusters,
        stats: &Stats,
        health: Arc<TaskHealth>,
    ) -> Arc<Reporter> {
        let shared = Arc::new(Queue {
            held: Mutex::new(Held::default()),
            wake: Notify::new(),
            batching,
        });
        let stats = ReportStats::new(stats, cluster);
        let sender = Arc::new(Sender {
            cluster: cluster.to_string(),
            authority: proxy_balance::grpc::authority_of(cluster),
            clusters,
            stats: stats.clone(),
            queue: shared.clone(),
        });
        sextant_supervise::restarting("hub-reporter", health, move || {
            let sender = sender.clone();
            async move { sender.run().await }
        });
        Arc::new(Reporter { shared, stats })
    }

    /// Hands a finished request's attributes over; never waits (a full buffer drops them, counted).
    pub fn report(&self, bag: Bag) {
        let q = &self.shared;
        let mut held = q.lock();
        if held.bags.len() >= q.batching.buffer.max(1) {
            drop(held);
            self.stats.dropped.inc();
            return;
        }
        held.bags.push(bag);
        let full = held.bags.len() == q.batching.entries;
        drop(held);
        if full {
            q.wake.notify_one();
        }
    }

    /// Its stats.
    pub fn stats(&self) -> &ReportStats {
        &self.stats
    }
}

/// The sending side: one task per reporter.
struct Sender {
    cluster: String,
    authority: String,
    clusters: Clusters,
    stats: ReportStats,
    queue: Arc<Queue>,
}

impl Sender {
    async fn run(&self) {
        let q = &self.queue;
        loop {
            // Woken by a full batch, or after the flush interval: whatever is held then goes.
            let _ = tokio::time::timeout(q.batching.interval, q.wake.notified()).await;
            let (bags, closed) = {
                let mut held = q.lock();
                (std::mem::take(&mut held.bags), held.closed)
            };
            if !bags.is_empty() {
                // Encoding is CPU work: off the workers serving requests.
                let entries = q.batching.entries.max(1);
                let encoded = tokio::task::spawn_blocking(move || encode(&bags, entries)).await;
                match encoded {
                    Ok(requests) => self.send(requests).await,
                    // A panic while encoding is this task's: the supervisor counts it and starts over.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Cancelled: the runtime is shutting down.
                    Err(_) => return,
                }
            }
            if closed {
                return;
            }
        }
    }

    async fn send(&self, requests: Vec<(Bytes, u64)>) {
        for (request, entries) in requests {
            if let Err(e) = self.call(request, entries).await {
                tracing::debug!(cluster = %self.cluster, error = %e, entries, "hub Report failed; its requests are dropped");
                self.stats.error.inc();
                self.stats.dropped.add(entries);
            }
        }
    }

    async fn call(&self, request: Bytes, entries: u64) -> Result<(), String> {
        let Some(cluster) = (self.clusters)(&self.cluster) else {
            return Err(format!("no cluster {}", self.cluster));
        };
        self.stats.calls.inc();
        let span = sextant_otel::root_span!(
            None,
            "hub.report",
            otel.name = "istio.mixer.v1.Mixer/Report",
            otel.kind = "client",
            rpc.system = "grpc",
            sextant.cluster = %self.cluster,
            sextant.entries = entries,
            otel.status_code = tracing::field::Empty,
        );
        let answer = proxy_balance::grpc::unary(
            &cluster,
            &self.authority,
            REPORT_PATH,
            request,
            CALL_TIMEOUT,
            sextant_otel::traceparent(&span).as_deref(),
        )
        .instrument(span.clone())
        .await
        .map_err(|e| {
            span.record("otel.status_code", "ERROR");
            e.to_string()
        })?;
        let response = sextant_proto::mixer::ReportResponse::decode(answer)
            .map_err(|e| format!("malformed ReportResponse: {e}"))?;
        self.stats.entries.add(response.accepted.min(entries));
        if response.rejected > 0 {
            self.stats.dropped.add(response.rejected);
            tracing::debug!(cluster = %self.cluster, rejected = response.rejected, errors = ?response.errors, "the hub refused reported requests");
        }
        Ok(())
    }
}

/// `bags` as encoded Report requests of at most `entries` each (a new one also wherever a delta-encoded
/// batch refuses the next bag), with the number of bags in each.
fn encode(bags: &[Bag], entries: usize) -> Vec<(Bytes, u64)> {
    let mut out = Vec::new();
    for chunk in bags.chunks(entries) {
        let mut batches: Vec<ReportBatch> = Vec::new();
        for bag in chunk {
            if !batches.last_mut().is_some_and(|b| b.push(bag)) {
                let mut fresh = ReportBatch::new();
                fresh.push(bag);
                batches.push(fresh);
            }
        }
        out.extend(batches.into_iter().map(|b| {
            let n = b.len() as u64;
            (Bytes::from(b.finish().encode_to_vec()), n)
        }));
    }
    out
}
