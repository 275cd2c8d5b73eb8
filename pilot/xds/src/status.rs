//! What each connected proxy was sent and acknowledged (`/debug/syncz`), and the server's metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::limits::Refusal;
use crate::snapshot::Resources;
use crate::types;

/// A rejected push, as the proxy reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// The version it rejected.
    pub version: String,
    /// The proxy's error detail.
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// One type's state on one stream.
#[derive(Clone, Debug, Default)]
pub struct TypeStatus {
    /// Version of the last response.
    pub sent_version: String,
    /// Nonce of the last response.
    pub sent_nonce: String,
    /// The last version the proxy acknowledged.
    pub acked_version: Option<String>,
    /// The last rejection, if any.
    pub last_nack: Option<Nack>,
    /// Every response sent for this type.
    pub pushes: u64,
    /// Their bytes on the wire (gRPC frames), in all.
    pub bytes: u64,
    /// What the proxy holds of this type, as far as pilot knows: the last resources sent, by name.
    pub resources: Resources,
}

/// One connected proxy.
#[derive(Clone, Debug)]
pub struct ProxyStatus {
    /// `node.id`.
    pub node_id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// State by type URL.
    pub types: BTreeMap<String, TypeStatus>,
}

impl ProxyStatus {
    /// The `/debug/syncz` entry: versions sent and acknowledged per type, and the last rejection.
    pub fn to_json(&self) -> serde_json::Value {
        let types: serde_json::Map<String, serde_json::Value> = self
            .types
            .iter()
            .map(|(url, t)| {
                (
                    types::short_name(url).to_string(),
                    serde_json::json!({
                        "sent": t.sent_version,
                        "acked": t.acked_version,
                        "pushes": t.pushes,
                        "bytes": t.bytes,
                        "resources": t.resources.len(),
                        "last_nack": t.last_nack.as_ref().map(|n| serde_json::json!({
                            "version": n.version,
                            "message": n.message,
                            "at": humantime_secs(n.at),
                        })),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "node": self.node_id,
            "cluster": self.cluster,
            "protocol": self.protocol,
            "connected_at": humantime_secs(self.connected_at),
            "types": types,
        })
    }
}

fn humantime_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// How often, at most, an ignored request is logged (the counter counts every one).
const IGNORED_LOG_EVERY_SECS: u64 = 10;

/// The ADS server's metrics.
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    connected: Family<ProtocolLabels, Gauge>,
    refused: Counter,
    pushes: Family<TypeLabels, Counter>,
    pushed_bytes: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
    push_latency: Family<TypeLabels, Histogram, fn() -> Histogram>,
    rejected: Family<ReasonLabels, Counter>,
    stream_panics: Counter,
    /// When an ignored request was last logged (seconds since the epoch), for the rate limit.
    ignored_logged_at: std::sync::Arc<AtomicU64>,
}

impl Default for XdsMetrics {
    fn default() -> Self {
        XdsMetrics {
            connected: Family::default(),
            refused: Counter::default(),
            pushes: Family::default(),
            pushed_bytes: Family::default(),
            nacks: Family::default(),
            push_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            rejected: Family::default(),
            stream_panics: Counter::default(),
            ignored_logged_at: Default::default(),
        }
    }
}

impl XdsMetrics {
    /// Counts a stream whose task panicked.
    pub(crate) fn stream_panicked(&self) {
        self.stream_panics.inc();
    }

    /// Registers every metric under `pilot_xds_`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "pilot_xds_connected_proxies",
            "Open ADS streams, by protocol (sotw, delta)",
            self.connected.clone(),
        );
        r.register(
            "pilot_xds_stream_panics",
            "ADS streams whose task panicked (the stream closed, its slot given back)",
            self.stream_panics.clone(),
        );
        r.register(
            "pilot_xds_streams_refused",
            "ADS streams refused because the connection limit was reached",
            self.refused.clone(),
        );
        r.register(
            "pilot_xds_pushes",
            "Discovery responses sent, by type (sds, cds, eds, lds, rds)",
            self.pushes.clone(),
        );
        r.register(
            "pilot_xds_pushed_bytes",
            "Bytes of the discovery responses sent (gRPC frames), by type",
            self.pushed_bytes.clone(),
        );
        r.register(
            "pilot_xds_nacks",
            "Discovery responses a proxy rejected, by type",
            self.nacks.clone(),
        );
        r.register(
            "pilot_xds_push_latency_seconds",
            "From a configuration change (or a request) to the response being handed to the stream, by type",
            self.push_latency.clone(),
        );
        r.register(
            "pilot_xds_rejected_requests",
            "ADS requests refused, by reason: unknown_type (ignored), no_type (stream closed), too_many_names and names_too_large (over a per-stream bound: stream closed)",
            self.rejected.clone(),
        );
    }

    /// Counts a refused request and logs it: every one that closes its stream, ignored ones at most once
    /// every 10 s (a client may send them as fast as it likes).
    pub(crate) fn rejected(&self, node: &str, refusal: &Refusal) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: refusal.reason(),
            })
            .inc();
        if refusal.status().is_some() {
            tracing::warn!(%node, %refusal, "ADS request refused; closing the stream");
            return;
        }
        let now = humantime_secs(SystemTime::now());
        let last = self.ignored_logged_at.load(Ordering::Relaxed);
        if now >= last + IGNORED_LOG_EVERY_SECS
            && self
                .ignored_logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(%node, %refusal, "ADS request ignored (further ones are only counted in pilot_xds_rejected_requests_total for 10 s)");
        }
    }

    pub(crate) fn push(&self, type_url: &str, bytes: usize, seconds: f64) {
        let l = TypeLabels {
            r#type: types::short_name(type_url).to_string(),
        };
        self.pushes.get_or_create(&l).inc();
        (self.pushed_bytes.get_or_create(&l)).inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
        self.push_latency.get_or_create(&l).observe(seconds);
    }

    pub(crate) fn nack(&self, type_url: &str) {
        self.nacks
            .get_or_create(&TypeLabels {
                r#type: types::short_name(type_url).to_string(),
            })
            .inc();
    }
}

/// The open streams, bounded: a stream beyond `limit` is refused (and counted) rather than served.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, ProxyStatus>>,
    /// The metrics streams update.
    pub metrics: XdsMetrics,
}

impl Connections {
    /// At most `limit` open streams.
    pub fn new(limit: usize) -> Self {
        Connections {
            limit,
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            metrics: XdsMetrics::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ProxyStatus>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a stream; `None` when the limit is reached.
    pub(crate) fn open(&self, status: ProxyStatus) -> Option<u64> {
        let mut open = self.lock();
        if open.len() >= self.limit {
            self.metrics.refused.inc();
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .connected
            .get_or_create(&ProtocolLabels {
                protocol: status.protocol.to_string(),
            })
            .inc();
        open.insert(id, status);
        Some(id)
    }

    /// Counts (and logs) a request the stream refused.
    pub(crate) fn refused_request(&self, node: &str, refusal: &Refusal) {
        self.metrics.rejected(node, refusal);
    }

    /// Updates a stream's status.
    pub(crate) fn update(&self, id: u64, f: impl FnOnce(&mut ProxyStatus)) {
        if let Some(s) = self.lock().get_mut(&id) {
            f(s);
        }
    }

    /// Forgets a closed stream.
    pub(crate) fn close(&self, id: u64) {
        if let Some(s) = self.lock().remove(&id) {
            self.metrics
                .connected
                .get_or_create(&ProtocolLabels {
                    protocol: s.protocol.to_string(),
                })
                .dec();
        }
    }

    /// Every open stream's status, ordered by node id.
    pub fn statuses(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }

    /// The status of the proxy whose node id is `node_id` (its most recent stream).
    pub fn proxy(&self, node_id: &str) -> Option<ProxyStatus> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.node_id == node_id)
            .max_by_key(|(id, _)| **id)
            .map(|(_, s)| s.clone())
    }
}
