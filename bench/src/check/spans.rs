//! `check-bench --otlp-endpoint URL`: the hub in this process exports its spans over OTLP as `sextant hub
//! --otlp-endpoint` does (the same `sextant-otel` layer, with the `OTEL_*` variables: sampling, queue,
//! timeout), so a run measures what tracing costs the Check path. Compare a run without the flag (tracing
//! off), with `OTEL_TRACES_SAMPLER_ARG=0.01` and `=1` against a live collector, and against a dead endpoint.
//! The exporter's own thread (`otlp-export`) is not one of the server's threads: its CPU time is reported
//! apart, with the spans exported and dropped.

/// The flags.
#[derive(clap::Args, Debug, Default)]
pub struct Flags {
    /// Export the hub's spans over OTLP to this collector (`http://HOST:4317`); the OTEL_* variables apply.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    #[arg(long = "otlp-protocol", value_name = "PROTOCOL")]
    pub protocol: Option<String>,
}

/// Starts span export when the flags ask for it; call it on a thread pinned to the server's CPU, before the
/// hub starts (the export thread inherits the CPU). The handle flushes when dropped.
pub fn install(flags: &Flags) -> anyhow::Result<Option<sextant_otel::Exporting>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let Some(options) = sextant_otel::resolve(
        &sextant_otel::Flags {
            endpoint: flags.endpoint.clone(),
            protocol: flags.protocol.clone(),
        },
        |name| std::env::var(name).ok(),
        "check-bench-hub",
    )?
    else {
        return Ok(None);
    };
    eprintln!(
        "tracing: spans to {} ({:?}, sampling {:?}, queue {})",
        options.endpoint, options.protocol, options.sampling, options.queue_size
    );
    let (layer, exporting) = sextant_otel::install(&options)?;
    tracing_subscriber::registry()
        .with(layer.with_filter(sextant_otel::filter()))
        .try_init()?;
    Ok(Some(exporting))
}

/// One line on what the exporter did over the run, and the CPU time of its thread.
pub fn summary() -> String {
    let s = sextant_otel::stats::stats();
    format!(
        "tracing: {} spans exported, {} dropped (queue full {}, export failed {}); export thread {:.2} CPU-s",
        s.exported.get(),
        s.dropped("queue_full") + s.dropped("export_failed") + s.dropped("shutdown"),
        s.dropped("queue_full"),
        s.dropped("export_failed"),
        sextant_bench::cpu::threads_seconds("otlp-export").unwrap_or(0.0)
    )
}
