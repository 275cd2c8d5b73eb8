//! The runtime's own metrics (prometheus-client families, label `adapter`) and the per-handle delivery
//! counters behind [`DeliveryStats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as PromRegistry;

/// Why records were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue (`limits.queue_records`) was full when the segment was submitted.
    QueueFull,
    /// The adapter answered `permanent`.
    PermanentError,
    /// Retryable errors or crashes on every attempt (`limits.retries` + 1).
    RetriesExhausted,
    /// The adapter was drained or stopped, or could not be instantiated.
    AdapterDown,
    /// The adapter does not handle this kind of record (its capabilities).
    Unsupported,
    /// Still queued when the drain deadline passed.
    DrainDeadline,
}

impl DropReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::PermanentError => "permanent_error",
            Self::RetriesExhausted => "retries_exhausted",
            Self::AdapterDown => "adapter_down",
            Self::Unsupported => "unsupported",
            Self::DrainDeadline => "drain_deadline",
        }
    }

    const ALL: [Self; 6] = [
        Self::QueueFull,
        Self::PermanentError,
        Self::RetriesExhausted,
        Self::AdapterDown,
        Self::Unsupported,
        Self::DrainDeadline,
    ];
}

/// Records dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::PermanentError`].
    pub permanent_error: u64,
    /// See [`DropReason::RetriesExhausted`].
    pub retries_exhausted: u64,
    /// See [`DropReason::AdapterDown`].
    pub adapter_down: u64,
    /// See [`DropReason::Unsupported`].
    pub unsupported: u64,
    /// See [`DropReason::DrainDeadline`].
    pub drain_deadline: u64,
}

impl Drops {
    /// All dropped records.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.permanent_error
            + self.retries_exhausted
            + self.adapter_down
            + self.unsupported
            + self.drain_deadline
    }
}

/// An adapter's most recent failure: a crash, a batch it refused or failed, an outbound request its
/// allowlist refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// When.
    pub at: SystemTime,
    /// What, at most [`LastError::MAX_LEN`] bytes.
    pub message: String,
}

impl LastError {
    /// The longest message kept (an adapter's error text is its own, of any length).
    pub const MAX_LEN: usize = 512;
}

/// What one adapter handle did with the records submitted to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Records accepted by `submit`.
    pub accepted: u64,
    /// Records the adapter handled successfully.
    pub delivered: u64,
    /// Records dropped (including those refused by `submit`), by reason.
    pub dropped: Drops,
    /// Records accepted and neither delivered nor dropped yet.
    pub queued: u64,
    /// Handler calls made (first attempts and retries).
    pub batches: u64,
    /// Handler calls that were retries of a failed batch.
    pub retried: u64,
    /// Instances discarded after a trap, a deadline overrun or memory exhaustion.
    pub restarts: u64,
    /// `check` calls answered with a decision.
    pub checks: u64,
    /// `check` calls skipped because their caller had given up before the worker reached them.
    pub checks_expired: u64,
    /// `check` calls refused at once because the check lane was full.
    pub checks_refused: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    adapter: String,
    reason: &'static str,
}

/// The runtime's metric families; cloning shares them.
#[derive(Clone, Debug)]
pub(crate) struct RuntimeMetrics {
    accepted: Family<AdapterLabels, Counter>,
    delivered: Family<AdapterLabels, Counter>,
    dropped: Family<ReasonLabels, Counter>,
    batches: Family<AdapterLabels, Counter>,
    retries: Family<AdapterLabels, Counter>,
    restarts: Family<ReasonLabels, Counter>,
    queued: Family<AdapterLabels, Gauge>,
    latency: Family<AdapterLabels, Histogram, fn() -> Histogram>,
    http_denied: Family<AdapterLabels, Counter>,
    samples_skipped: Family<AdapterLabels, Counter>,
    checks: Family<ReasonLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 15))
}

impl RuntimeMetrics {
    pub(crate) fn new() -> Self {
        Self {
            accepted: Family::default(),
            delivered: Family::default(),
            dropped: Family::default(),
            batches: Family::default(),
            retries: Family::default(),
            restarts: Family::default(),
            queued: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            http_denied: Family::default(),
            samples_skipped: Family::default(),
            checks: Family::default(),
        }
    }

    pub(crate) fn register(&self, r: &mut PromRegistry) {
        let p = "sextant_hub_adapter_";
        r.register(
            format!("{p}records_accepted"),
            "Records accepted into an adapter's queue",
            self.accepted.clone(),
        );
        r.register(
            format!("{p}records_delivered"),
            "Records an adapter handled successfully",
            self.delivered.clone(),
        );
        r.register(
            format!("{p}records_dropped"),
            "Records dropped, by reason",
            self.dropped.clone(),
        );
        r.register(
            format!("{p}batches"),
            "Handler calls (batches), retries included",
            self.batches.clone(),
        );
        r.register(
            format!("{p}retries"),
            "Handler calls that retried a failed batch",
            self.retries.clone(),
        );
        r.register(
            format!("{p}restarts"),
            "Instances discarded and re-created, by reason (trap, deadline, memory)",
            self.restarts.clone(),
        );
        r.register(
            format!("{p}queue_records"),
            "Records accepted and not yet delivered or dropped",
            self.queued.clone(),
        );
        r.register(
            format!("{p}batch_duration_seconds"),
            "Duration of one handler call",
            self.latency.clone(),
        );
        r.register(
            format!("{p}http_denied"),
            "Outbound HTTP requests refused by the allowlist",
            self.http_denied.clone(),
        );
        r.register(
            format!("{p}samples_skipped"),
            "Samples an adapter recorded that the registry skipped (unknown family, wrong labels, limits)",
            self.samples_skipped.clone(),
        );
        r.register(
            format!("{p}checks"),
            "Policy check calls, by result: answered, expired (the caller gave up first), queue_full",
            self.checks.clone(),
        );
    }

    /// The counters of one adapter handle, bound to its label values.
    pub(crate) fn for_adapter(&self, name: &str) -> Arc<AdapterCounters> {
        let l = AdapterLabels {
            adapter: name.to_string(),
        };
        let reason = |reason| ReasonLabels {
            adapter: name.to_string(),
            reason,
        };
        Arc::new(AdapterCounters {
            accepted: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: DropReason::ALL.map(|_| AtomicU64::new(0)),
            queued: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            checks_expired: AtomicU64::new(0),
            checks_refused: AtomicU64::new(0),
            http_denied: AtomicU64::new(0),
            last_error: Mutex::new(None),
            m_checks: ["answered", "expired", "queue_full"]
                .map(|r| self.checks.get_or_create(&reason(r)).clone()),
            m_accepted: self.accepted.get_or_create(&l).clone(),
            m_delivered: self.delivered.get_or_create(&l).clone(),
            m_dropped: DropReason::ALL
                .map(|r| self.dropped.get_or_create(&reason(r.as_str())).clone()),
            m_batches: self.batches.get_or_create(&l).clone(),
            m_retries: self.retries.get_or_create(&l).clone(),
            m_restarts: ["trap", "deadline", "memory", "instantiate"]
                .map(|r| self.restarts.get_or_create(&reason(r)).clone()),
            m_queued: self.queued.get_or_create(&l).clone(),
            m_latency: self.latency.get_or_create(&l).clone(),
            m_http_denied: self.http_denied.get_or_create(&l).clone(),
            m_samples_skipped: self.samples_skipped.get_or_create(&l).clone(),
        })
    }
}

/// Why an instance was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashKind {
    Trap,
    Deadline,
    Memory,
    Instantiate,
}

impl CrashKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Deadline => "deadline",
            Self::Memory => "memory",
            Self::Instantiate => "instantiate",
        }
    }
}

/// One handle's counters: atomics for [`DeliveryStats`] (per handle, so a reload's drain reports only its own
/// records) and the shared Prometheus series (per adapter name).
#[derive(Debug)]
pub(crate) struct AdapterCounters {
    accepted: AtomicU64,
    delivered: AtomicU64,
    dropped: [AtomicU64; 6],
    pub(crate) queued: AtomicU64,
    batches: AtomicU64,
    retried: AtomicU64,
    restarts: AtomicU64,
    checks: AtomicU64,
    checks_expired: AtomicU64,
    checks_refused: AtomicU64,
    /// answered, expired, queue_full
    m_checks: [Counter; 3],
    http_denied: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    m_accepted: Counter,
    m_delivered: Counter,
    m_dropped: [Counter; 6],
    m_batches: Counter,
    m_retries: Counter,
    m_restarts: [Counter; 4],
    m_queued: Gauge,
    m_latency: Histogram,
    m_http_denied: Counter,
    m_samples_skipped: Counter,
}

fn gauge_delta(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl AdapterCounters {
    pub(crate) fn accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
        self.m_accepted.inc_by(n);
        self.m_queued.inc_by(gauge_delta(n));
    }

    /// Records leaving the queue (delivered or dropped after being accepted).
    fn dequeued(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        self.m_queued.dec_by(gauge_delta(n));
    }

    pub(crate) fn delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        self.m_delivered.inc_by(n);
        self.dequeued(n);
    }

    /// Accepted records dropped later.
    pub(crate) fn dropped_queued(&self, reason: DropReason, n: u64) {
        self.refused(reason, n);
        self.dequeued(n);
    }

    /// Records dropped before being accepted (by `submit`).
    pub(crate) fn refused(&self, reason: DropReason, n: u64) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[i].fetch_add(n, Ordering::Relaxed);
        self.m_dropped[i].inc_by(n);
    }

    pub(crate) fn batch(&self, took: Duration, retry: bool) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.m_batches.inc();
        self.m_latency.observe(took.as_secs_f64());
        if retry {
            self.retried.fetch_add(1, Ordering::Relaxed);
            self.m_retries.inc();
        }
    }

    pub(crate) fn restart(&self, kind: CrashKind) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.m_restarts[kind as usize].inc();
    }

    pub(crate) fn check(&self) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        self.m_checks[0].inc();
    }

    pub(crate) fn check_expired(&self) {
        self.checks_expired.fetch_add(1, Ordering::Relaxed);
        self.m_checks[1].inc();
    }

    pub(crate) fn check_refused(&self) {
        self.checks_refused.fetch_add(1, Ordering::Relaxed);
        self.m_checks[2].inc();
    }

    pub(crate) fn http_denied(&self) {
        self.http_denied.fetch_add(1, Ordering::Relaxed);
        self.m_http_denied.inc();
    }

    pub(crate) fn http_denied_count(&self) -> u64 {
        self.http_denied.load(Ordering::Relaxed)
    }

    /// Keeps `message` as the adapter's last error.
    pub(crate) fn failed(&self, mut message: String) {
        if message.len() > LastError::MAX_LEN {
            let mut end = LastError::MAX_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let error = LastError {
            at: SystemTime::now(),
            message,
        };
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    pub(crate) fn last_error(&self) -> Option<LastError> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn samples_skipped(&self, n: u64) {
        self.m_samples_skipped.inc_by(n);
    }

    pub(crate) fn snapshot(&self) -> DeliveryStats {
        let d = |r: DropReason| self.dropped[r as usize].load(Ordering::Relaxed);
        DeliveryStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: Drops {
                queue_full: d(DropReason::QueueFull),
                permanent_error: d(DropReason::PermanentError),
                retries_exhausted: d(DropReason::RetriesExhausted),
                adapter_down: d(DropReason::AdapterDown),
                unsupported: d(DropReason::Unsupported),
                drain_deadline: d(DropReason::DrainDeadline),
            },
            queued: self.queued.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            checks: self.checks.load(Ordering::Relaxed),
            checks_expired: self.checks_expired.load(Ordering::Relaxed),
            checks_refused: self.checks_refused.load(Ordering::Relaxed),
        }
    }
}
