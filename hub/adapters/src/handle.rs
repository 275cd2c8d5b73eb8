//! [`AdapterHandle`]: what the hub holds of a running adapter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sextant_batch::BatchKind;

use crate::error::AdapterCallError;
use crate::lane::{CheckCall, Msg};
use crate::metrics::{AdapterCounters, DeliveryStats, DropReason};
use crate::{Capabilities, CheckDecision, Limits};

/// A running adapter. Cheap to clone; all clones feed the same worker. `submit` never blocks and never
/// awaits.
#[derive(Clone)]
pub struct AdapterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    caps: Capabilities,
    /// `None` once drained: the lock orders `submit` against `drain`, so no segment is sent after the drain
    /// request (it would be neither delivered nor counted).
    tx: Mutex<Option<Channels>>,
    counters: Arc<AdapterCounters>,
    limits: Limits,
}

/// The worker's two inputs: batches and control messages in order, and the bounded check lane it serves first.
pub(crate) struct Channels {
    pub(crate) msgs: Sender<Msg>,
    pub(crate) checks: SyncSender<CheckCall>,
    /// A [`Msg::Wake`] is on its way (at most one is: checks never pile wake-ups into the unbounded channel).
    pub(crate) wake_sent: Arc<AtomicBool>,
}

impl std::fmt::Debug for AdapterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterHandle")
            .field("name", &self.inner.name)
            .field("capabilities", &self.inner.caps)
            .finish_non_exhaustive()
    }
}

impl AdapterHandle {
    pub(crate) fn new(
        name: Arc<str>,
        caps: Capabilities,
        tx: Channels,
        counters: Arc<AdapterCounters>,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                caps,
                tx: Mutex::new(Some(tx)),
                counters,
                limits,
            }),
        }
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<Channels>> {
        // The lock only guards a send on an unbounded channel; poisoning cannot leave it inconsistent.
        self.inner.tx.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The adapter's name (`ns/name`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// What the adapter handles, as its `init` said.
    pub fn capabilities(&self) -> Capabilities {
        self.inner.caps
    }

    /// Enqueues one encoded segment (from `sextant_batch::BatchWriter`) of `records` records of `kind`.
    /// Returns whether it was accepted. Refused, and counted as dropped: a kind the adapter does not handle
    /// (`unsupported`; `Attributes` goes through [`check`](Self::check)), a full queue (`queue_full`: the queue
    /// counts records up to `limits.queue_records`), a drained or stopped adapter (`adapter_down`).
    pub fn submit(&self, kind: BatchKind, segment: Vec<u8>, records: usize) -> bool {
        let c = &self.inner.counters;
        let n = records as u64;
        if kind == BatchKind::Attributes || !self.inner.caps.handles(kind) {
            c.refused(DropReason::Unsupported, n);
            return false;
        }
        let tx = self.sender();
        let Some(tx) = tx.as_ref() else {
            c.refused(DropReason::AdapterDown, n);
            return false;
        };
        let limit = self.inner.limits.queue_records as u64;
        let reserved = c
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q.saturating_add(n) <= limit).then_some(q + n)
            })
            .is_ok();
        if !reserved {
            c.refused(DropReason::QueueFull, n);
            return false;
        }
        let msg = Msg::Segment {
            kind,
            bytes: segment,
            records,
        };
        if tx.msgs.send(msg).is_err() {
            c.queued.fetch_sub(n, Ordering::AcqRel);
            c.refused(DropReason::AdapterDown, n);
            return false;
        }
        c.accepted(n);
        true
    }

    /// Policy adapters: calls `check` with an attributes segment. Checks have a lane of their own, bounded
    /// ([`CHECK_LANE`](crate::CHECK_LANE) waiting calls; over it a call is refused at once, counted as
    /// `queue_full`) and served before batches, also while a failed batch waits to be retried: a check waits
    /// for at most the call in progress. The call is bounded by `limits.time_per_batch`, the wait by another
    /// `time_per_batch`; a check still waiting when its caller gave up is skipped, counted as `expired`.
    pub async fn check(&self, attributes: Vec<u8>) -> Result<CheckDecision, AdapterCallError> {
        let adapter = self.inner.name.to_string();
        if !self.inner.caps.check {
            return Err(AdapterCallError::Unavailable {
                adapter,
                reason: "the adapter does not implement check".into(),
            });
        }
        let wait = self.inner.limits.time_per_batch * 2 + Duration::from_millis(100);
        let (reply, rx) = tokio::sync::oneshot::channel();
        {
            let tx = self.sender();
            let Some(tx) = tx.as_ref() else {
                return Err(AdapterCallError::Unavailable {
                    adapter,
                    reason: "the adapter was drained or stopped".into(),
                });
            };
            let call = CheckCall {
                attributes,
                reply,
                deadline: Instant::now() + wait,
            };
            match tx.checks.try_send(call) {
                Ok(()) => {
                    // Wakes a worker waiting for batches; a worker busy delivering finds the lane by itself.
                    if !tx.wake_sent.swap(true, Ordering::AcqRel) {
                        let _ = tx.msgs.send(Msg::Wake);
                    }
                }
                Err(TrySendError::Full(_)) => {
                    self.inner.counters.check_refused();
                    return Err(AdapterCallError::Unavailable {
                        adapter,
                        reason: "too many checks waiting for the adapter".into(),
                    });
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(AdapterCallError::Unavailable {
                        adapter,
                        reason: "the adapter was drained or stopped".into(),
                    });
                }
            }
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AdapterCallError::Unavailable {
                adapter,
                reason: "the worker stopped".into(),
            }),
            Err(_) => Err(AdapterCallError::Timeout { adapter }),
        }
    }

    /// Stops taking batches (every clone's `submit` returns false from now on), delivers what is queued until
    /// `deadline` (records still queued then are dropped as `drain_deadline`), stops the worker and returns
    /// this handle's delivery counts. A call in progress at the deadline is interrupted at most
    /// `time_per_batch` later.
    pub async fn drain(self, deadline: Duration) -> DeliveryStats {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let tx = self.sender().take();
        if let Some(Channels { msgs: tx, .. }) = tx {
            let until = Instant::now() + deadline;
            if tx
                .send(Msg::Drain {
                    deadline: until,
                    reply,
                })
                .is_ok()
            {
                drop(tx);
                let bound = deadline + self.inner.limits.time_per_batch + Duration::from_secs(1);
                let _ = tokio::time::timeout(bound, rx).await;
            }
        }
        self.stats()
    }

    /// Records accepted, delivered, dropped (by reason), retried, and instance restarts, for this handle.
    pub fn stats(&self) -> DeliveryStats {
        self.inner.counters.snapshot()
    }

    /// Outbound HTTP requests this adapter made that the allowlist refused.
    pub fn http_denied(&self) -> u64 {
        self.inner.counters.http_denied_count()
    }

    /// The adapter's most recent failure, if it had one.
    pub fn last_error(&self) -> Option<crate::LastError> {
        self.inner.counters.last_error()
    }
}
