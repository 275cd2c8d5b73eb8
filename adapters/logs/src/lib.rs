//! Sextant adapter `logs`: writes one JSON line per log entry to stdout, which the hub points at its own
//! stdout or at a file.
//!
//! Config (optional): `{ "name": "access" }`, the value of each line's `adapter` key (default `logs`). A line:
//!
//! ```json
//! {"adapter":"logs","name":"accesslog","severity":"INFO","time":"2026-01-01T00:00:00.000000000Z","method":"GET"}
//! ```
//!
//! Fields follow in the entry's order; a field named like a fixed key is written as `field.<key>`. Bytes are
//! hex, timestamps RFC 3339, durations seconds with a trailing `s` (`"0.001500000s"`).

mod format;

use std::io::Write as _;

use sextant_adapter_sdk::{Adapter, AdapterError, Batch, Capabilities, Host, parse_config};

pub use format::{json_line, rfc3339};

/// The adapter's configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `adapter` value of each line.
    #[serde(default = "default_name")]
    pub name: String,
}

fn default_name() -> String {
    "logs".to_owned()
}

/// The adapter.
#[derive(Debug)]
pub struct Logs {
    config: Config,
    buf: Vec<u8>,
}

impl Adapter for Logs {
    fn init(config: &str, _host: &Host) -> Result<Self, String> {
        Ok(Self {
            config: parse_config(config)?,
            buf: Vec::new(),
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::LOGS
    }

    fn handle_logs(&mut self, batch: &Batch<'_>, _host: &Host) -> Result<(), AdapterError> {
        self.buf.clear();
        for entry in batch.logs() {
            json_line(&mut self.buf, &self.config.name, &entry);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        // One write per batch, so lines of concurrent instances interleave whole (when the hub's pipe allows).
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|()| out.flush())
            .map_err(|e| AdapterError::retryable(format!("writing to stdout: {e}")))
    }
}

sextant_adapter_sdk::export_adapter!(Logs);

#[cfg(test)]
mod tests;
