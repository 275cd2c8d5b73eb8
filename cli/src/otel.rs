//! `--otlp-endpoint`/`--otlp-protocol` on the roles (hub, pilot, proxy), read with OpenTelemetry's `OTEL_*`
//! variables by `sextant-otel` before the role starts: a bad value stops the process with one line naming it.

use crate::{Failure, fail};

/// The roles' OTLP flags: their own traces (and metrics) to an OpenTelemetry collector.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OtlpArgs {
    /// Export this process's own spans (and metrics) over OTLP to this collector: `http://HOST:4317`
    /// (gRPC) or, with `--otlp-protocol http/protobuf`, `http://HOST:4318`. Default: $OTEL_EXPORTER_OTLP_ENDPOINT;
    /// neither set: nothing is exported. OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG)
    /// (default parentbased_traceidratio at 0.01), OTEL_BSP_* and OTEL_METRIC_EXPORT_INTERVAL apply.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// The OTLP transport: `grpc` or `http/protobuf` (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else grpc).
    #[arg(long = "otlp-protocol", value_name = "PROTOCOL")]
    pub protocol: Option<String>,
}

impl OtlpArgs {
    /// The validated options for a role named `service` by default; `None`: export is off.
    pub fn options(&self, service: &str) -> Result<Option<sextant_otel::Options>, Failure> {
        sextant_otel::resolve(
            &sextant_otel::Flags {
                endpoint: self.endpoint.clone(),
                protocol: self.protocol.clone(),
            },
            |name| std::env::var(name).ok(),
            service,
        )
        .map_err(|e| {
            fail(
                e,
                "see `sextant help` for --otlp-endpoint and the OTEL_* variables it reads",
            )
        })
    }
}
