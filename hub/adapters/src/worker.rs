//! The per-adapter worker: one OS thread that owns the adapter's wasmtime store, batches what is submitted,
//! calls the adapter, and restarts the instance after a crash.
//!
//! Why a dedicated thread with synchronous wasm calls (rather than async calls on tokio with epoch yields):
//! a wasm call is CPU work that may run up to `time_per_batch` (2 s by default), and the guest's blocking
//! `http.send` waits for the network. On a dedicated thread neither ever occupies one of the tokio worker
//! threads that serve Check, the runtime stays responsive while an adapter spins in a loop until its epoch
//! deadline, and the host functions can simply block. The cost is one thread per adapter (adapters are few:
//! tens, not thousands) and the thread switch per `check` (microseconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use sextant_batch::BatchKind;

use crate::bindings::sextant::adapter::types::ErrorKind;
use crate::error::{AdapterCallError, LoadError};
use crate::handle::AdapterHandle;
use crate::instance::{AdapterSpec, Live, Shared, classify, crash_reason};
use crate::lane::{CHECK_LANE, CheckCall, Msg};
use crate::metrics::{CrashKind, DropReason};
use crate::{AdapterConfig, CheckDecision};

const KINDS: [BatchKind; 3] = [BatchKind::Metrics, BatchKind::Logs, BatchKind::Spans];

/// Largest batch buffer a worker keeps allocated between batches.
const MAX_KEPT_BUFFER: usize = 1 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    records: usize,
    since: Option<Instant>,
}

struct Worker {
    shared: Arc<Shared>,
    spec: AdapterSpec,
    live: Option<Live>,
    /// Wait before the next re-instantiation after a crash; doubles per consecutive crash.
    backoff: Duration,
    /// No instance before this instant.
    down_until: Instant,
    pending: [Pending; 3],
    /// Set while draining: nothing is attempted after it.
    deadline: Option<Instant>,
    /// The check lane, served before anything else.
    checks: Receiver<CheckCall>,
    /// Cleared when the [`Msg::Wake`] it stands for is received.
    wake_sent: Arc<AtomicBool>,
}

/// Starts the worker thread, which loads, instantiates and initialises the adapter before anything else;
/// resolves once `init` answered.
pub(crate) async fn start(
    shared: Arc<Shared>,
    cfg: AdapterConfig,
) -> Result<AdapterHandle, LoadError> {
    let counters = shared.metrics.for_adapter(&cfg.name);
    let (tx, rx) = std::sync::mpsc::channel();
    let (checks_tx, checks_rx) = std::sync::mpsc::sync_channel(CHECK_LANE);
    let wake_sent = Arc::new(AtomicBool::new(false));
    let worker_wake_sent = wake_sent.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (name, module, limits) = (cfg.name.clone(), cfg.module.to_string(), cfg.limits.clone());
    let thread_counters = counters.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("adapter {name}"))
        .spawn(move || {
            let spec = match AdapterSpec::new(&shared, &cfg, thread_counters) {
                Ok(spec) => spec,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            let live = match spec.instantiate(&shared) {
                Ok(live) => live,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            if ready_tx.send(Ok(live.caps)).is_err() {
                return;
            }
            Worker {
                backoff: spec.limits.backoff_initial,
                shared,
                spec,
                live: Some(live),
                down_until: Instant::now(),
                pending: Default::default(),
                deadline: None,
                checks: checks_rx,
                wake_sent: worker_wake_sent,
            }
            .run(&rx);
        });
    // The thread is not joined: it runs as long as the adapter and ends after a drain or when every handle
    // is dropped.
    if let Err(e) = spawned {
        return Err(LoadError::Instantiate {
            adapter: name,
            module,
            reason: format!("cannot start the worker thread: {e}"),
        });
    }
    let caps = ready_rx.await.map_err(|_| LoadError::Instantiate {
        adapter: name.clone(),
        module,
        reason: "the worker thread stopped before init answered".into(),
    })??;
    tracing::info!(adapter = %name, ?caps, "adapter started");
    Ok(AdapterHandle::new(
        Arc::from(name.as_str()),
        caps,
        crate::handle::Channels {
            msgs: tx,
            checks: checks_tx,
            wake_sent,
        },
        counters,
        limits,
    ))
}

fn slot(kind: BatchKind) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

impl Worker {
    fn run(mut self, rx: &Receiver<Msg>) {
        loop {
            self.serve_checks();
            let now = Instant::now();
            let due = self
                .pending
                .iter()
                .filter_map(|p| p.since)
                .min()
                .map(|since| since + self.spec.limits.flush_interval);
            let msg = match due {
                Some(due) if due <= now => {
                    self.flush_due(now);
                    continue;
                }
                Some(due) => rx.recv_timeout(due - now),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Segment {
                    kind,
                    bytes,
                    records,
                }) => self.push(kind, bytes, records),
                // Cleared before the lane is served at the top of the loop: a check enqueued after that
                // sends a new wake-up.
                Ok(Msg::Wake) => self.wake_sent.store(false, Ordering::Release),
                Ok(Msg::Drain { deadline, reply }) => {
                    self.drain(rx, deadline);
                    let _ = reply.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => self.flush_due(Instant::now()),
                Err(RecvTimeoutError::Disconnected) => {
                    // Every handle is gone: deliver what is pending, as a drain would.
                    let l = &self.spec.limits;
                    let grace = l.time_per_batch * (l.retries + 1);
                    self.drain(rx, Instant::now() + grace);
                    return;
                }
            }
        }
    }

    fn push(&mut self, kind: BatchKind, bytes: Vec<u8>, records: usize) {
        let Some(i) = slot(kind) else {
            self.spec
                .counters
                .dropped_queued(DropReason::Unsupported, records as u64);
            return;
        };
        let p = &mut self.pending[i];
        if p.records == 0 && p.bytes.is_empty() {
            p.since = Some(Instant::now());
        }
        // Segments are self-contained, so a batch is their concatenation. The first segment of a batch is taken
        // as is when the kept buffer could not hold it without growing.
        if p.bytes.is_empty() && p.bytes.capacity() < bytes.len() {
            p.bytes = bytes;
        } else {
            p.bytes.extend_from_slice(&bytes);
        }
        p.records += records;
        if p.records >= self.spec.limits.batch_size {
            self.flush(i);
        }
    }

    fn flush_due(&mut self, now: Instant) {
        for i in 0..KINDS.len() {
            if self.pending[i]
                .since
                .is_some_and(|s| s + self.spec.limits.flush_interval <= now)
            {
                self.flush(i);
            }
        }
    }

    fn flush(&mut self, i: usize) {
        let mut p = std::mem::take(&mut self.pending[i]);
        if !p.bytes.is_empty() || p.records > 0 {
            let span = sextant_otel::root_span!(
                None,
                "adapter.deliver",
                sextant.adapter = &*self.spec.name,
                sextant.kind = ?KINDS[i],
                sextant.records = p.records,
                sextant.dropped = tracing::field::Empty,
            );
            let _in_span = span.enter();
            let n = p.records as u64;
            if let Err(reason) = self.deliver(KINDS[i], &p.bytes, n) {
                span.record("sextant.dropped", tracing::field::debug(reason));
                self.spec.counters.dropped_queued(reason, n);
            }
        }
        // Keep the buffer's allocation for the next batch, unless an unusually large batch made it big.
        if p.bytes.capacity() <= MAX_KEPT_BUFFER {
            p.bytes.clear();
            self.pending[i].bytes = p.bytes;
        }
    }

    /// Deliver everything queued (including segments still in the channel) until the deadline.
    fn drain(&mut self, rx: &Receiver<Msg>, deadline: Instant) {
        self.deadline = Some(deadline);
        loop {
            match rx.try_recv() {
                Ok(Msg::Segment {
                    kind,
                    bytes,
                    records,
                }) => self.push(kind, bytes, records),
                Ok(Msg::Wake) => {}
                Ok(Msg::Drain { reply, .. }) => {
                    let _ = reply.send(());
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        while let Ok(call) = self.checks.try_recv() {
            let _ = call.reply.send(Err(AdapterCallError::Unavailable {
                adapter: self.spec.name.to_string(),
                reason: "the adapter is draining".into(),
            }));
        }
        for i in 0..KINDS.len() {
            self.flush(i);
        }
    }

    /// Answers every check waiting in the lane (skipping those whose caller gave up).
    fn serve_checks(&mut self) {
        while let Ok(call) = self.checks.try_recv() {
            self.serve_check(call);
        }
    }

    fn serve_check(&mut self, call: CheckCall) {
        if Instant::now() >= call.deadline || call.reply.is_closed() {
            self.spec.counters.check_expired();
            return;
        }
        let _ = call.reply.send(self.check(&call.attributes));
    }

    /// Sleeps until `t`; false (without sleeping past it) when the drain deadline comes first.
    fn wait_until(&mut self, t: Instant) -> bool {
        let now = Instant::now();
        if let Some(d) = self.deadline
            && t > d
        {
            return false;
        }
        // A wait between retries of a batch serves the check lane: checks never wait behind a backoff.
        let mut now = now;
        while t > now {
            match self.checks.recv_timeout(t - now) {
                Ok(call) => self.serve_check(call),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(t - now);
                    break;
                }
            }
            now = Instant::now();
        }
        true
    }

    fn crashed(&mut self, kind: CrashKind, reason: &str) {
        tracing::warn!(
            adapter = &*self.spec.name,
            module = %self.spec.module,
            kind = kind.as_str(),
            backoff = ?self.backoff,
            "adapter instance discarded: {reason}"
        );
        self.live = None;
        self.spec.counters.restart(kind);
        self.spec
            .counters
            .failed(format!("instance discarded ({}): {reason}", kind.as_str()));
        self.down_until = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.spec.limits.backoff_max);
    }

    /// A live instance, re-created after the backoff if the last one crashed; `Err` when it cannot be.
    fn ensure_live(&mut self, wait: bool) -> Result<(), String> {
        if self.live.is_some() {
            return Ok(());
        }
        if !wait && Instant::now() < self.down_until {
            return Err("restarting after a crash".into());
        }
        if !self.wait_until(self.down_until) {
            return Err("drain deadline".into());
        }
        match self.spec.instantiate(&self.shared) {
            Ok(live) => {
                self.live = Some(live);
                Ok(())
            }
            Err(e) => {
                let reason = e.to_string();
                self.crashed(CrashKind::Instantiate, &reason);
                Err(reason)
            }
        }
    }

    /// Delivers one batch, retrying as the limits say; `Err`: why its records were dropped (the caller
    /// counts them).
    fn deliver(&mut self, kind: BatchKind, batch: &[u8], n: u64) -> Result<(), DropReason> {
        let c = self.spec.counters.clone();
        let retries = self.spec.limits.retries;
        let mut attempt = 0u32;
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(DropReason::DrainDeadline);
            }
            if self.ensure_live(true).is_err() {
                if self
                    .deadline
                    .is_some_and(|d| Instant::now() >= d || self.down_until > d)
                {
                    return Err(DropReason::DrainDeadline);
                }
                if attempt >= retries {
                    return Err(DropReason::AdapterDown);
                }
                attempt += 1;
                continue;
            }
            let Some(live) = self.live.as_mut() else {
                return Err(DropReason::AdapterDown);
            };
            self.spec.arm(&mut live.store);
            let started = Instant::now();
            let result = match kind {
                BatchKind::Metrics => live.adapter.call_handle_metrics(&mut live.store, batch),
                BatchKind::Logs => live.adapter.call_handle_logs(&mut live.store, batch),
                _ => live.adapter.call_handle_spans(&mut live.store, batch),
            };
            c.batch(started.elapsed(), attempt > 0);
            match result {
                Ok(Ok(())) => {
                    c.delivered(n);
                    self.backoff = self.spec.limits.backoff_initial;
                    return Ok(());
                }
                Ok(Err(e)) if e.kind == ErrorKind::Permanent => {
                    tracing::warn!(
                        adapter = &*self.spec.name,
                        records = n,
                        "batch rejected (permanent): {}",
                        e.message
                    );
                    c.failed(format!("batch rejected (permanent): {}", e.message));
                    return Err(DropReason::PermanentError);
                }
                Ok(Err(e)) => {
                    tracing::debug!(
                        adapter = &*self.spec.name,
                        attempt,
                        "batch failed (retryable): {}",
                        e.message
                    );
                    c.failed(format!("batch failed (retryable): {}", e.message));
                    let wait = self.retry_wait(attempt);
                    if attempt >= retries {
                        tracing::warn!(
                            adapter = &*self.spec.name,
                            records = n,
                            "batch dropped after {} attempts: {}",
                            attempt + 1,
                            e.message
                        );
                        return Err(DropReason::RetriesExhausted);
                    }
                    if !self.wait_until(Instant::now() + wait) {
                        return Err(DropReason::DrainDeadline);
                    }
                    attempt += 1;
                }
                Err(e) => {
                    let kind = classify(&e, &live.store);
                    let reason = crash_reason(&e, &live.store);
                    self.crashed(kind, &reason);
                    if attempt >= retries {
                        return Err(DropReason::RetriesExhausted);
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn retry_wait(&self, attempt: u32) -> Duration {
        let l = &self.spec.limits;
        l.backoff_initial
            .saturating_mul(1u32 << attempt.min(16))
            .min(l.backoff_max)
    }

    fn check(&mut self, attributes: &[u8]) -> Result<CheckDecision, AdapterCallError> {
        let adapter = self.spec.name.to_string();
        if let Err(reason) = self.ensure_live(false) {
            return Err(AdapterCallError::Unavailable { adapter, reason });
        }
        let Some(live) = self.live.as_mut() else {
            return Err(AdapterCallError::Unavailable {
                adapter,
                reason: "no instance".into(),
            });
        };
        self.spec.arm(&mut live.store);
        match live.adapter.call_check(&mut live.store, attributes) {
            Ok(Ok(decision)) => {
                self.spec.counters.check();
                self.backoff = self.spec.limits.backoff_initial;
                Ok(decision.into())
            }
            Ok(Err(e)) => {
                self.spec
                    .counters
                    .failed(format!("check failed: {}", e.message));
                Err(AdapterCallError::Adapter {
                    adapter,
                    retryable: e.kind == ErrorKind::Retryable,
                    message: e.message,
                })
            }
            Err(e) => {
                let kind = classify(&e, &live.store);
                let reason = crash_reason(&e, &live.store);
                self.crashed(kind, &reason);
                Err(AdapterCallError::Crashed { adapter, reason })
            }
        }
    }
}
