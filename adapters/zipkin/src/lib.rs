//! Sextant adapter `zipkin`: sends each span batch to a Zipkin collector as one Zipkin v2 JSON array.
//!
//! Config:
//!
//! ```json
//! { "endpoint": "http://zipkin:9411/api/v2/spans", "timeout_ms": 2000 }
//! ```
//!
//! The endpoint's `host:port` must be in the `Adapter`'s `spec.allowedHosts`. A 5xx answer, a failed
//! connection or a timeout is retryable; any other non-2xx answer is permanent (Zipkin rejected the spans).

mod convert;

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, Host, Request, parse_config,
};

pub use convert::to_zipkin;

/// The adapter's configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector's span endpoint, `http://host:port/api/v2/spans`.
    pub endpoint: String,
    /// Request timeout in milliseconds (absent or 0: the hub's default).
    #[serde(default)]
    pub timeout_ms: u32,
}

/// The adapter.
#[derive(Debug)]
pub struct Zipkin {
    config: Config,
}

impl Adapter for Zipkin {
    fn init(config: &str, _host: &Host) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        if !config.endpoint.starts_with("http://") || config.endpoint.len() <= "http://".len() {
            return Err(format!(
                "endpoint: {:?} is not an absolute http:// URL",
                config.endpoint
            ));
        }
        Ok(Self { config })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::SPANS
    }

    fn handle_spans(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let spans = to_zipkin(batch);
        if spans.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&spans)
            .map_err(|e| AdapterError::permanent(format!("encoding spans: {e}")))?;
        let request = Request::new("POST", &self.config.endpoint)
            .header("content-type", "application/json")
            .body(body)
            .timeout_ms(self.config.timeout_ms);
        host.http().send(request)?.error_for_status("zipkin")
    }
}

sextant_adapter_sdk::export_adapter!(Zipkin);

#[cfg(test)]
mod tests;
