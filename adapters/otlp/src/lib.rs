//! Sextant adapter `otlp`: exports metrics, logs and spans to an OpenTelemetry collector over OTLP/HTTP
//! (`application/x-protobuf`, `POST <endpoint>/v1/{metrics,logs,traces}`), one request per batch.
//!
//! Config:
//!
//! ```json
//! { "endpoint": "http://collector:4318", "service_name": "mesh", "headers": {"x-tenant": "a"}, "timeout_ms": 2000 }
//! ```
//!
//! Metrics: counters become monotonic delta `Sum`s, gauges `Gauge`s, histograms delta `Histogram`s with
//! explicit bounds (the family's buckets, else Prometheus' defaults); the records of one series in a batch are
//! aggregated into one data point. Spans are grouped by their service into resources (`service.name`); metrics
//! and logs carry `service_name` (default `sextant`). 5xx, 408, 429, connection failures and timeouts are
//! retryable; other non-2xx answers are permanent.

mod convert;
mod proto;

use std::collections::BTreeMap;

use prost::Message;
use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, Host, Request, parse_config,
};

pub use convert::{logs_request, metrics_request, traces_request};
pub use proto::*;

/// The adapter's configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector's OTLP/HTTP base URL, `http://host:port` (the signal paths are appended).
    pub endpoint: String,
    /// `service.name` of the metrics' and logs' resource, and of spans without a service.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra request headers (authentication, tenant).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request timeout in milliseconds (absent or 0: the hub's default).
    #[serde(default)]
    pub timeout_ms: u32,
}

fn default_service_name() -> String {
    "sextant".to_owned()
}

/// The adapter.
#[derive(Debug)]
pub struct Otlp {
    config: Config,
    base: String,
}

impl Otlp {
    fn export(&self, host: &Host, path: &str, body: Vec<u8>) -> Result<(), AdapterError> {
        let mut request = Request::new("POST", format!("{}{path}", self.base))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .timeout_ms(self.config.timeout_ms);
        for (k, v) in &self.config.headers {
            request = request.header(k, v);
        }
        host.http()
            .send(request)?
            .error_for_status("OTLP collector")
    }
}

impl Adapter for Otlp {
    fn init(config: &str, _host: &Host) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if !config.endpoint.starts_with("http://") || config.endpoint.len() <= "http://".len() {
            return Err(format!(
                "endpoint: {:?} is not an absolute http:// URL",
                config.endpoint
            ));
        }
        let base = config.endpoint.trim_end_matches('/').to_owned();
        Ok(Self { config, base })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::METRICS | Capabilities::LOGS | Capabilities::SPANS
    }

    fn handle_metrics(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        match metrics_request(batch, &self.config.service_name) {
            Some(req) => self.export(host, "/v1/metrics", req.encode_to_vec()),
            None => Ok(()),
        }
    }

    fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        match logs_request(batch, &self.config.service_name, host.now_unix_nanos()) {
            Some(req) => self.export(host, "/v1/logs", req.encode_to_vec()),
            None => Ok(()),
        }
    }

    fn handle_spans(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        match traces_request(batch, &self.config.service_name) {
            Some(req) => self.export(host, "/v1/traces", req.encode_to_vec()),
            None => Ok(()),
        }
    }
}

sextant_adapter_sdk::export_adapter!(Otlp);

#[cfg(test)]
mod tests;
