//! The span queue between the role and the collector: ended spans go into a bounded queue without waiting
//! (a full queue drops the span, counted), and one thread of its own batches them and exports them, so
//! neither encoding nor a slow or dead collector touches the role's workers. A failed, timed-out or
//! panicking export drops its batch, counted; nothing is retried, so memory stays bounded by the queue.
//!
//! The SDK's own batch processor would drop as well, but only logs its count at shutdown; this one counts
//! every drop in [`crate::stats`] as it happens.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::mpsc;

use crate::stats::stats;

/// What the thread is asked besides spans.
enum Control {
    /// Export what is queued, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Export what is queued within the deadline, then stop.
    Shutdown(Instant, std::sync::mpsc::SyncSender<()>),
}

/// The processor the tracer provider calls.
#[derive(Debug)]
pub(crate) struct Queue {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::Sender<ControlMsg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// [`Control`] made `Debug` for the processor's derive.
struct ControlMsg(Control);

impl std::fmt::Debug for ControlMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlMsg")
    }
}

/// How the queue batches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batching {
    pub queue_size: usize,
    pub batch_size: usize,
    pub delay: Duration,
    pub timeout: Duration,
}

impl Queue {
    /// Starts the export thread; `make` builds the exporter on it (inside its runtime, as tonic wants).
    /// An exporter that cannot be built is an error here, before anything is traced.
    pub(crate) fn start<E, F>(
        batching: Batching,
        resource: Resource,
        make: F,
    ) -> Result<Self, String>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, String> + Send + 'static,
    {
        let (spans, rx) = mpsc::channel(batching.queue_size);
        let (control, control_rx) = mpsc::channel(4);
        let thread =
            crate::thread::spawn("otlp-export", make, move |mut exporter: E| async move {
                exporter.set_resource(&resource);
                run(exporter, rx, control_rx, batching).await;
            })?;
        Ok(Self {
            spans,
            control,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends `make(reply)` to the thread and waits at most `wait` for the reply (a plain blocking wait: only
    /// flush and shutdown ask, never the data path).
    fn ask(
        &self,
        make: impl FnOnce(std::sync::mpsc::SyncSender<()>) -> Control,
        wait: Duration,
    ) -> OTelSdkResult {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.control
            .try_send(ControlMsg(make(tx)))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        rx.recv_timeout(wait)
            .map_err(|_| OTelSdkError::Timeout(wait))
    }
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.spans.try_send(span) {
            Ok(()) => {
                stats().queued.inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => stats().drop_spans("queue_full", 1),
            Err(mpsc::error::TrySendError::Closed(_)) => stats().drop_spans("shutdown", 1),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.ask(
            |tx| Control::Shutdown(Instant::now() + timeout, tx),
            timeout,
        );
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take()
            && result.is_ok()
        {
            let _ = t.join();
        }
        result
    }
}

/// The export thread's loop: a batch is sent when it is full or its first span waited `delay`.
async fn run<E: SpanExporter>(
    exporter: E,
    mut rx: mpsc::Receiver<SpanData>,
    mut control: mpsc::Receiver<ControlMsg>,
    batching: Batching,
) {
    let mut failing = false;
    loop {
        let first = tokio::select! {
            biased;
            c = control.recv() => match c {
                Some(ControlMsg(Control::Flush(done))) => {
                    drain(&exporter, &mut rx, &batching, None, &mut failing).await;
                    let _ = done.send(());
                    continue;
                }
                Some(ControlMsg(Control::Shutdown(deadline, done))) => {
                    drain(&exporter, &mut rx, &batching, Some(deadline), &mut failing).await;
                    let _ = exporter.shutdown();
                    let _ = done.send(());
                    return;
                }
                None => return,
            },
            s = rx.recv() => match s {
                Some(s) => s,
                None => return,
            },
        };
        stats().queued.dec();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batching.delay;
        while batch.len() < batching.batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    stats().queued.dec();
                    batch.push(s);
                }
                Ok(None) | Err(_) => break,
            }
        }
        export(&exporter, batch, batching.timeout, &mut failing).await;
    }
}

/// Exports everything queued now; with a deadline, what is left past it is dropped as `shutdown`.
async fn drain<E: SpanExporter>(
    exporter: &E,
    rx: &mut mpsc::Receiver<SpanData>,
    batching: &Batching,
    deadline: Option<Instant>,
    failing: &mut bool,
) {
    loop {
        let mut batch = Vec::new();
        while batch.len() < batching.batch_size {
            match rx.try_recv() {
                Ok(s) => {
                    stats().queued.dec();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        let timeout = match deadline {
            None => batching.timeout,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(batching.timeout),
        };
        if timeout.is_zero() {
            stats().drop_spans("shutdown", batch.len() as u64);
            continue;
        }
        export(exporter, batch, timeout, failing).await;
    }
}

/// One export; a failure drops the batch (counted) and is logged once until exports work again.
async fn export<E: SpanExporter>(
    exporter: &E,
    batch: Vec<SpanData>,
    timeout: Duration,
    failing: &mut bool,
) {
    let n = batch.len() as u64;
    let attempt = std::panic::AssertUnwindSafe(exporter.export(batch));
    let outcome = tokio::time::timeout(timeout, futures_catch(attempt)).await;
    let why = match outcome {
        Ok(Ok(Ok(()))) => {
            stats().exported.inc_by(n);
            if std::mem::take(failing) {
                tracing::info!("OTLP span export works again");
            }
            return;
        }
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(panic)) => format!("the exporter panicked: {panic}"),
        Err(_) => format!("no answer within {timeout:?}"),
    };
    stats().drop_spans("export_failed", n);
    stats().export_failures.inc();
    if !std::mem::replace(failing, true) {
        tracing::warn!(spans = n, error = %why, "OTLP span export failed; spans are dropped (counted in otel_spans_dropped_total) until it works again");
    }
}

/// Runs `f`, turning a panic into an error message (the export thread goes on with the next batch).
async fn futures_catch<F: Future>(f: std::panic::AssertUnwindSafe<F>) -> Result<F::Output, String> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(p) => std::task::Poll::Ready(Err(p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()))),
        }
    })
    .await
}
