//! A role's Prometheus metrics exported over OTLP under the same names. Every `metric_interval` a thread of
//! its own (`otlp-metrics`, with a current-thread runtime, never the role's) calls the role's `render`,
//! reads the text exposition it returns (`parse`: OpenMetrics as prometheus-client writes it, or Envoy-style
//! 0.0.4 text), turns it into one OTLP request (`convert`) and sends it (`send`: gRPC or HTTP/protobuf),
//! each export bounded by `options.timeout`. A failed export is counted in
//! `otel_metric_export_failures_total` and dropped: the next one carries the cumulative values again.

mod convert;
mod parse;
mod send;
#[cfg(test)]
mod tests;

use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::oneshot;

use crate::InstallError;
use crate::options::Options;
use crate::stats::stats;

/// How long a drop waits for the last export beyond `options.timeout` (the render and the encoding).
const DROP_MARGIN: Duration = Duration::from_secs(1);

/// Metric export running; dropping it stops it. The drop attempts a last export (the values as they are at
/// the end) and blocks the dropping thread until it is done, at most `options.timeout` and a second; past
/// that the export thread is left to end on its own.
#[derive(Debug)]
pub struct MetricsExport {
    stop: Option<oneshot::Sender<()>>,
    /// Disconnected when the thread ends.
    ended: std::sync::mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
    wait: Duration,
}

impl Drop for MetricsExport {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.ended.recv_timeout(self.wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("the last OTLP metric export did not finish in time");
            }
        }
    }
}

/// Exports `render()`'s Prometheus text every `options.metric_interval` over OTLP until the handle drops.
/// The first export is one interval after this returns. The client is built before this returns: an
/// endpoint it cannot use (an `https://` one: this build has no TLS for OTLP) is an error now; a collector
/// that is down is not (its exports fail and are counted).
pub fn start(
    options: &Options,
    render: impl Fn() -> String + Send + 'static,
) -> Result<MetricsExport, InstallError> {
    let fail = |why: String| InstallError {
        endpoint: options.endpoint.clone(),
        why,
    };
    let url = options.signal_url("metrics");
    let (protocol, timeout) = (options.protocol, options.timeout);
    let interval = options.metric_interval.max(Duration::from_millis(1));
    let resource = convert::resource(&options.service_name, &options.resource);
    let started = unix_nanos(SystemTime::now());
    let (stop, stopped) = oneshot::channel();
    let (ended_tx, ended) = sync_channel::<()>(0);
    let thread = crate::thread::spawn(
        "otlp-metrics",
        move || send::Sender::new(protocol, &url, timeout),
        move |sender| async move {
            // Dropped when the thread ends: what the handle waits for.
            let _ended = ended_tx;
            let exporter = Exporter {
                sender,
                resource,
                started,
                timeout,
                failing: false,
                warned_skips: false,
            };
            exporter.run(render, interval, stopped).await;
        },
    )
    .map_err(fail)?;
    Ok(MetricsExport {
        stop: Some(stop),
        ended,
        thread: Some(thread),
        wait: timeout + DROP_MARGIN,
    })
}

/// The export thread's state.
struct Exporter {
    sender: send::Sender,
    resource: Resource,
    /// When [`start`] was called: every point is cumulative from it.
    started: u64,
    timeout: Duration,
    /// Whether the last export failed (logged once per run of failures).
    failing: bool,
    /// Whether skipped lines were logged (once per export's life).
    warned_skips: bool,
}

impl Exporter {
    /// Exports every `interval` until `stop` fires (or its sender drops), then once more, so the collector
    /// gets the values as they are at the end. An export under way when it fires is abandoned for that one.
    async fn run(
        mut self,
        render: impl Fn() -> String,
        interval: Duration,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = self.export(&render) => {}
            }
        }
        self.export(&render).await;
    }

    /// One export: render, read, convert, send within the timeout; the outcome counted and logged.
    async fn export(&mut self, render: &impl Fn() -> String) {
        let request = match self.request(render) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(why) => return self.failed(why),
        };
        let outcome = tokio::time::timeout(self.timeout, self.sender.send(request)).await;
        match outcome {
            Ok(Ok(())) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("OTLP metric export works again");
                }
            }
            Ok(Err(why)) => self.failed(why),
            Err(_) => self.failed(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// The request for what `render` returns now; `None` when it holds no metric to export; `Err` when
    /// `render` panicked.
    fn request(
        &mut self,
        render: &impl Fn() -> String,
    ) -> Result<Option<ExportMetricsServiceRequest>, String> {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let text = render();
            parse::parse(&text)
        }))
        .map_err(|p| {
            let why = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            format!("rendering the metrics panicked: {why}")
        })?;
        if (read.malformed > 0 || read.over_cap > 0)
            && !std::mem::replace(&mut self.warned_skips, true)
        {
            tracing::warn!(
                malformed_lines = read.malformed,
                over_limit = read.over_cap,
                max_samples = parse::MAX_SAMPLES,
                "some Prometheus lines are not exported over OTLP (malformed, or past the limit)"
            );
        }
        let times = convert::Times {
            start: self.started,
            now: unix_nanos(SystemTime::now()),
        };
        let request = convert::request(self.resource.clone(), read.families, times);
        let empty = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .all(|s| s.metrics.is_empty());
        Ok((!empty).then_some(request))
    }

    /// Counts a failed export; logs the first of a run of failures.
    fn failed(&mut self, why: String) {
        stats().metric_export_failures.inc();
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(
                error = %why,
                "OTLP metric export failed; failures are counted in otel_metric_export_failures_total until it works again"
            );
        }
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
