//! The proxy's side of the hub's Report (`sextant.mixer.v1.Mixer/Report`): each finished request's
//! attributes are handed to a [`Reporter`], which batches them — delta-encoded against the previous entry,
//! one word list per batch ([`sextant_attributes::ReportBatch`]) — and sends a batch when it holds
//! `entries` requests or its first request has waited `interval`.
//!
//! Nothing waits on the hub: handing a request over never blocks (a full buffer drops it, counted), and a
//! batch the hub does not take is dropped and counted too (telemetry is best effort, as Envoy's access-log
//! service is). The sending task is supervised: a panic is logged, counted and shown on `/ready`, and the
//! task starts over with the requests still buffered.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use proxy_balance::Cluster;
use proxy_stats::{Counter, Scope, Stats};
use sextant_attributes::{Bag, ReportBatch};
use sextant_proto::mixer::ReportRequest;
use sextant_supervise::TaskHealth;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

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
    queue: mpsc::Sender<Bag>,
    stats: ReportStats,
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
        let (queue, received) = mpsc::channel(batching.buffer.max(1));
        let stats = ReportStats::new(stats, cluster);
        let sender = Arc::new(Sender {
            cluster: cluster.to_string(),
            authority: proxy_balance::grpc::authority_of(cluster),
            batching,
            clusters,
            stats: stats.clone(),
            received: Mutex::new(received),
        });
        sextant_supervise::restarting("hub-reporter", health, move || {
            let sender = sender.clone();
            async move { sender.run().await }
        });
        Arc::new(Reporter { queue, stats })
    }

    /// Hands a finished request's attributes over; never waits (a full buffer drops them, counted).
    pub fn report(&self, bag: Bag) {
        if self.queue.try_send(bag).is_err() {
            self.stats.dropped.inc();
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
    batching: Batching,
    clusters: Clusters,
    stats: ReportStats,
    received: Mutex<mpsc::Receiver<Bag>>,
}

impl Sender {
    async fn run(&self) {
        let mut received = self.received.lock().await;
        let mut batches: Vec<ReportBatch> = Vec::new();
        let mut held = 0usize;
        let mut due: Option<Instant> = None;
        loop {
            let next = match due {
                Some(at) => tokio::select! {
                    bag = received.recv() => Some(bag),
                    _ = tokio::time::sleep_until(at) => None,
                },
                None => Some(received.recv().await),
            };
            match next {
                Some(Some(bag)) => {
                    let accepted = batches.last_mut().is_some_and(|b| b.push(&bag));
                    if !accepted {
                        let mut fresh = ReportBatch::new();
                        fresh.push(&bag);
                        batches.push(fresh);
                    }
                    held += 1;
                    due.get_or_insert_with(|| Instant::now() + self.batching.interval);
                    if held < self.batching.entries {
                        continue;
                    }
                }
                // Every reporter handle is gone: send what is held, and end.
                Some(None) => {
                    self.send(std::mem::take(&mut batches)).await;
                    return;
                }
                None => {}
            }
            self.send(std::mem::take(&mut batches)).await;
            held = 0;
            due = None;
        }
    }

    async fn send(&self, batches: Vec<ReportBatch>) {
        for batch in batches {
            let entries = batch.len() as u64;
            if let Err(e) = self.call(batch.finish()).await {
                tracing::debug!(cluster = %self.cluster, error = %e, entries, "hub Report failed; its requests are dropped");
                self.stats.error.inc();
                self.stats.dropped.add(entries);
            }
        }
    }

    async fn call(&self, request: ReportRequest) -> Result<(), String> {
        let Some(cluster) = (self.clusters)(&self.cluster) else {
            return Err(format!("no cluster {}", self.cluster));
        };
        self.stats.calls.inc();
        let entries = request.attributes.len() as u64;
        let answer = proxy_balance::grpc::unary(
            &cluster,
            &self.authority,
            REPORT_PATH,
            Bytes::from(request.encode_to_vec()),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
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
