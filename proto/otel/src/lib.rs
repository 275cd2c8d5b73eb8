//! The mesh's own telemetry over OTLP, for every role (hub, pilot, proxy): their `tracing` spans exported as
//! OpenTelemetry spans, and their Prometheus metrics exported as OTLP metrics under the same names.
//! Neutral: no role's internals, only `tracing`, the OpenTelemetry SDK and the trace context readers.
//!
//! - [`options`]: `--otlp-endpoint`/`--otlp-protocol` and the standard `OTEL_*` variables, validated purely.
//! - [`install`]: a `tracing` layer exporting spans of target [`TARGET`] through a bounded queue on a
//!   thread of its own (`queue`), sampled as the options say (parent-based ratio by default).
//! - [`join`]: a request's span continues its caller's trace (W3C `traceparent` or B3, as
//!   `sextant-tracectx` reads them); [`traceparent`] gives the header to send on.
//! - [`metrics`]: a role's Prometheus text exported periodically over OTLP.
//! - [`stats`]: every span exported or dropped, counted, for the role's `/metrics`.
//!
//! Spans of [`TARGET`] exist only while export is on: with it off, no layer is interested in them, so
//! `tracing` skips them at the call site and the hot paths pay nothing.

pub mod metrics;
pub mod options;
mod queue;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use options::{Flags, Options, OptionsError, Protocol, resolve};

/// The `tracing` target of every span meant for export: `tracing::info_span!(target: sextant_otel::TARGET, …)`.
pub const TARGET: &str = "otel";

static ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported (roles skip reading a caller's context when not).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Setting export up failed.
#[derive(Debug, thiserror::Error)]
#[error("OTLP export to {endpoint}: {why}")]
pub struct InstallError {
    /// Where it was to go.
    pub endpoint: String,
    /// What failed.
    pub why: String,
}

/// Export running; [`Exporting::shutdown`] (or dropping it) exports what is queued, within 5 s.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    /// Exports what is queued (at most 5 s) and stops.
    pub fn shutdown(self) {}
}

impl Drop for Exporting {
    fn drop(&mut self) {
        ON.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "OTLP span export did not finish at shutdown");
        }
    }
}

/// The layer a role adds to its subscriber. Give it a filter passing [`TARGET`] (see [`filter`]).
pub type Layer<S> = tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>;

/// The per-layer filter for [`Layer`]: the spans meant for export, and warnings and errors as their events.
pub fn filter() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target(TARGET, tracing::Level::TRACE)
        .with_default(tracing::Level::WARN)
}

/// The resource every span and metric carries: `service.name` and the options' attributes.
fn resource(options: &Options) -> Resource {
    Resource::builder_empty()
        .with_service_name(options.service_name.clone())
        .with_attributes(
            options
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

fn sampler(s: options::Sampling) -> Sampler {
    use options::{Root, Sampling};
    let root = |r: Root| match r {
        Root::AlwaysOn => Sampler::AlwaysOn,
        Root::AlwaysOff => Sampler::AlwaysOff,
        Root::Ratio(r) => Sampler::TraceIdRatioBased(r),
    };
    match s {
        Sampling::AlwaysOn => Sampler::AlwaysOn,
        Sampling::AlwaysOff => Sampler::AlwaysOff,
        Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
        Sampling::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
    }
}

/// Starts span export as `options` say and returns the layer to add (with [`filter`]) and the handle
/// that flushes at shutdown. The exporter is built before this returns: a bad endpoint is an error now.
pub fn install<S>(options: &Options) -> Result<(Layer<S>, Exporting), InstallError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fail = |why: String| InstallError {
        endpoint: options.endpoint.clone(),
        why,
    };
    let url = options.signal_url("traces");
    let (protocol, timeout) = (options.protocol, options.timeout);
    let queue = queue::Queue::start(
        queue::Batching {
            queue_size: options.queue_size,
            batch_size: options.batch_size,
            delay: options.schedule_delay,
            timeout,
        },
        resource(options),
        move || {
            let b = opentelemetry_otlp::SpanExporter::builder();
            match protocol {
                Protocol::Grpc => b
                    .with_tonic()
                    .with_endpoint(url)
                    .with_timeout(timeout)
                    .build(),
                Protocol::HttpProtobuf => b
                    .with_http()
                    .with_endpoint(url)
                    .with_timeout(timeout)
                    .build(),
            }
            .map_err(|e| e.to_string())
        },
    )
    .map_err(fail)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(sampler(options.sampling))
        .with_resource(resource(options))
        .build();
    let tracer = provider.tracer("sextant");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false);
    ON.store(true, Ordering::Relaxed);
    Ok((layer, Exporting { provider }))
}

/// Makes `span` (not yet entered) continue the caller's trace: a child of the caller's span, sampled if the
/// caller's was (the parent-based sampler follows it). Does nothing when export is off.
pub fn join(span: &tracing::Span, caller: &sextant_tracectx::Context) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let flags = if caller.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(
        TraceId::from_bytes(caller.trace_id),
        SpanId::from_bytes(caller.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}

/// Joins `span` to the trace context in headers `header` looks up (lower-case names), if any.
pub fn join_from<'a>(span: &tracing::Span, header: impl Fn(&str) -> Option<&'a str>) {
    if !enabled() || span.is_disabled() {
        return;
    }
    if let Some(caller) = sextant_tracectx::read(header) {
        join(span, &caller);
    }
}

/// The W3C `traceparent` value naming `span` as the parent, to send on a call made inside it; `None` when
/// export is off or the span is not recorded.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_map_to_the_sdk() {
        use options::{Root, Sampling};
        assert!(
            format!("{:?}", sampler(Sampling::ParentBased(Root::Ratio(0.5))))
                .contains("TraceIdRatioBased(0.5)")
        );
        assert!(matches!(sampler(Sampling::AlwaysOff), Sampler::AlwaysOff));
    }
}
