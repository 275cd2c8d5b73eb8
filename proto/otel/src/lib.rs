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
//! Sampling is decided before a span exists ([`sampled`], [`root_span!`]): a trace not sampled creates no span
//! at all, and the spans inside one are made only inside a recorded span ([`child_span!`]), so a Check at 1%
//! costs almost what it costs with export off. The SDK's own sampler then keeps every span it is given. With
//! export off, no layer is interested in [`TARGET`] and `tracing` skips the call sites altogether.

pub mod metrics;
pub mod options;
mod queue;
pub mod stats;
mod thread;

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

/// The sampler of the running export (set by [`install`]).
static SAMPLING: std::sync::OnceLock<options::Sampling> = std::sync::OnceLock::new();

/// Whether a trace starting here (`parent`: `None`), or continuing `parent`, is sampled, as the options'
/// sampler decides: parent-based follows the caller's flag and samples the ratio of new traces. False while
/// export is off. Decide with this before making a span (see [`root_span!`]).
pub fn sampled(parent: Option<&sextant_tracectx::Context>) -> bool {
    use options::{Root, Sampling};
    if !enabled() {
        return false;
    }
    let coin = |r: f64| r >= 1.0 || (r > 0.0 && fastrand::f64() < r);
    match SAMPLING.get() {
        None | Some(Sampling::AlwaysOff) => false,
        Some(Sampling::AlwaysOn) => true,
        Some(Sampling::Ratio(r)) => coin(*r),
        Some(Sampling::ParentBased(root)) => match (parent, root) {
            (Some(p), _) => p.sampled,
            (None, Root::AlwaysOn) => true,
            (None, Root::AlwaysOff) => false,
            (None, Root::Ratio(r)) => coin(*r),
        },
    }
}

/// Whether the current span is a recorded span for export: a span made inside it belongs to its trace.
pub fn in_trace() -> bool {
    enabled()
        && tracing::Span::current()
            .metadata()
            .is_some_and(|m| m.target() == TARGET)
}

/// A span for export (target [`TARGET`], level INFO) that starts a trace, or continues `$parent` (an
/// `Option<&sextant_tracectx::Context>`), when [`sampled`] says so; else `Span::none()`, which costs nothing.
/// The fields are `tracing::info_span!`'s.
#[macro_export]
macro_rules! root_span {
    ($parent:expr, $name:expr $(, $($fields:tt)*)?) => {{
        let parent: ::core::option::Option<&$crate::Caller> = $parent;
        if $crate::sampled(parent) {
            let span = ::tracing::info_span!(target: $crate::TARGET, $name $(, $($fields)*)?);
            if let ::core::option::Option::Some(p) = parent {
                $crate::join(&span, p);
            }
            span
        } else {
            ::tracing::Span::none()
        }
    }};
}

/// A span for export inside the current one when that is recorded ([`in_trace`]); else `Span::none()`.
#[macro_export]
macro_rules! child_span {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::in_trace() {
            ::tracing::info_span!(target: $crate::TARGET, $name $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// A caller's trace context (W3C or B3), as `sextant-tracectx` reads it.
pub type Caller = sextant_tracectx::Context;

/// The caller's trace context in headers `header` looks up (lower-case names); `None` while export is off
/// (nothing reads it then) or when the headers carry none.
pub fn caller<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Caller> {
    if !enabled() {
        return None;
    }
    sextant_tracectx::read(header)
}

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

/// Export running; dropping it exports what is queued (within 5 s) and stops.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
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
    // Sampling is decided before a span is made (`sampled`); the SDK keeps what it is given.
    let _ = SAMPLING.set(options.sampling);
    let provider = SdkTracerProvider::builder()
        .with_span_processor(queue)
        .with_sampler(Sampler::AlwaysOn)
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
    fn nothing_is_sampled_while_export_is_off() {
        let caller = sextant_tracectx::read(|h| {
            (h == "traceparent")
                .then_some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        });
        assert!(caller.is_some());
        assert!(!sampled(caller.as_ref()));
        assert!(!sampled(None));
        assert!(!in_trace());
    }
}
