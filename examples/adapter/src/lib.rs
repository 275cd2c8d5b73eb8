//! Example Sextant adapter: counts requests by response code and logs a line for every 5xx.
//!
//! It receives the hub's access-log entries (the `logs` capability), reads each entry's `response_code`
//! field, adds one to the `requests_by_code` counter in the hub's Prometheus registry, and writes a warning
//! into the hub's log for server errors. An `Adapter` resource using it:
//!
//! ```yaml
//! kind: Adapter
//! metadata: { name: status-counter }
//! spec:
//!   module: examples/adapter/target/wasm32-wasip2/release/status_counter.wasm
//!   config: { field: response_code }
//! ```

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, FamilyHandle, Host, Level, MetricFamily,
    MetricKind, SampleWriter, Value, parse_config,
};

/// The `spec.config` this adapter accepts. Unknown fields are an error, so typos show up in
/// `sextant validate` instead of being ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The log field holding the response code.
    #[serde(default = "default_field")]
    pub field: String,
}

fn default_field() -> String {
    "response_code".to_owned()
}

/// One instance of the adapter. The hub creates it with `init` and keeps it for every later batch, so it can
/// hold state (here, the metric family handle).
pub struct StatusCounter {
    config: Config,
    requests: FamilyHandle,
}

impl Adapter for StatusCounter {
    fn init(config: &str, host: &Host) -> Result<Self, String> {
        let config: Config = parse_config(config)?;
        // Define the family once; recording by handle is then one cheap host call per batch.
        let family = MetricFamily::new(
            "requests_by_code",
            "Requests seen in access logs, by response code",
            MetricKind::Counter,
            ["code"],
        );
        let requests = host.metrics().define(&family)?;
        Ok(Self { config, requests })
    }

    // The hub only sends what is declared here: log batches.
    fn capabilities(&self) -> Capabilities {
        Capabilities::LOGS
    }

    fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let mut samples = SampleWriter::new();
        for entry in batch.logs() {
            let code = entry
                .fields()
                .find(|f| f.key == self.config.field)
                .and_then(|f| match f.value {
                    Value::Int(i) => Some(i),
                    Value::Str(s) => s.parse().ok(),
                    _ => None,
                });
            // Entries without a code are not requests: skip them rather than fail the batch.
            let Some(code) = code else { continue };
            let label = code.to_string();
            samples.sample(self.requests.0, 1.0, [label.as_str()]);
            if (500..600).contains(&code) {
                host.log(
                    Level::Warn,
                    &format!("{}: response code {code}", entry.name()),
                );
            }
        }
        // All samples of the batch in one call. A registry error will not go away by retrying.
        host.metrics()
            .record(&samples)
            .map_err(AdapterError::permanent)?;
        Ok(())
    }
}

// Generates the component's exports (init, handle-*, check) on wasm32; nothing natively.
sextant_adapter_sdk::export_adapter!(StatusCounter);

#[cfg(test)]
mod tests {
    use sextant_adapter_sdk::testing::{self, Harness};

    use super::*;

    #[test]
    fn passes_the_compliance_check() {
        testing::compliance::<StatusCounter>("{}");
    }

    #[test]
    fn counts_codes_and_logs_server_errors() {
        // testing::logs_batch() holds a 200 and a 503.
        let mut h = Harness::<StatusCounter>::new("{}").unwrap();
        h.handle_logs(&testing::logs_batch()).unwrap();
        let codes: Vec<_> = h
            .samples()
            .iter()
            .map(|s| s.label("code").unwrap_or("").to_owned())
            .collect();
        assert_eq!(codes, ["200", "503"]);
        assert_eq!(
            h.logs(),
            [(Level::Warn, "accesslog: response code 503".to_owned())]
        );
    }
}
