//! Sextant adapter `faulty`: misbehaves on purpose, for the hub's fault-isolation tests. Not shipped as a
//! `builtin:` adapter.
//!
//! Config: `{"mode": "ok" | "trap" | "loop" | "oom" | "error", "after": N, "deny": {ATTRIBUTE: TEXT},
//! "validForMs": MS}` (defaults `ok`, 0, none, 0). The first `after` calls (batches of any kind and checks)
//! succeed; from then on every `handle-*` and `check` call
//! - `trap`: panics (the instance traps);
//! - `loop`: spins forever (the hub's time limit must interrupt it);
//! - `oom`: allocates and touches memory without bound (the hub's memory limit must stop it);
//! - `error`: returns a retryable error;
//! - `ok`: succeeds, like the first batches.
//!
//! A `check` that succeeds denies (403) when an attribute named in `deny` has that text value, and allows
//! otherwise; either answer may be cached for `validForMs`. With `"checksBehave": true` only batches
//! misbehave: every `check` succeeds.

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, CheckDecision, Host, Level, Value, parse_config,
};

/// What to do once `after` batches were handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Behave.
    #[default]
    Ok,
    /// Panic, which traps the instance.
    Trap,
    /// Never return.
    Loop,
    /// Allocate without bound.
    Oom,
    /// Return a retryable error.
    Error,
}

/// The adapter's configuration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The misbehaviour.
    #[serde(default)]
    pub mode: Mode,
    /// Calls handled normally before misbehaving.
    #[serde(default)]
    pub after: u64,
    /// `check` denies requests with any of these attribute values.
    #[serde(default)]
    pub deny: std::collections::BTreeMap<String, String>,
    /// How long a `check` answer may be cached, in milliseconds.
    #[serde(default, rename = "validForMs")]
    pub valid_for_ms: u32,
    /// Only batches misbehave; `check` always succeeds.
    #[serde(default, rename = "checksBehave")]
    pub checks_behave: bool,
}

/// The adapter.
#[derive(Debug)]
pub struct Faulty {
    config: Config,
    handled: u64,
}

impl Faulty {
    fn batch(&mut self, host: &Host) -> Result<(), AdapterError> {
        if self.handled < self.config.after {
            self.handled += 1;
            return Ok(());
        }
        self.handled += 1;
        match self.config.mode {
            Mode::Ok => Ok(()),
            Mode::Error => Err(AdapterError::retryable(format!(
                "faulty: batch {} fails",
                self.handled
            ))),
            Mode::Trap => {
                host.log(Level::Warn, "faulty: trapping");
                panic!("faulty: trap after {} batches", self.config.after)
            }
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    // black_box keeps the loop from being optimized into something else.
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really committed.
                    hoard.push(vec![0xa5; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
        }
    }
}

impl Adapter for Faulty {
    fn init(config: &str, _host: &Host) -> Result<Self, String> {
        Ok(Self {
            config: parse_config(config)?,
            handled: 0,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::METRICS | Capabilities::LOGS | Capabilities::SPANS | Capabilities::CHECK
    }

    fn handle_metrics(&mut self, _batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        self.batch(host)
    }

    fn handle_logs(&mut self, _batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        self.batch(host)
    }

    fn handle_spans(&mut self, _batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        self.batch(host)
    }

    fn check(
        &mut self,
        attributes: &Batch<'_>,
        host: &Host,
    ) -> Result<CheckDecision, AdapterError> {
        if !self.config.checks_behave {
            self.batch(host)?;
        }
        let denied = attributes.attributes().find_map(|f| {
            let want = self.config.deny.get(f.key)?;
            (f.value == Value::Str(want)).then(|| format!("faulty: {} is {want:?}", f.key))
        });
        let decision = match denied {
            Some(reason) => CheckDecision::deny(403, reason),
            None => CheckDecision::allow(),
        };
        Ok(decision.valid_for(self.config.valid_for_ms))
    }
}

sextant_adapter_sdk::export_adapter!(Faulty);

#[cfg(test)]
mod tests {
    use sextant_adapter_sdk::testing::{self, Harness};

    use super::*;

    #[test]
    fn compliance() {
        testing::compliance::<Faulty>("{}");
        testing::compliance::<Faulty>(r#"{"mode": "ok", "after": 3}"#);
    }

    #[test]
    fn traps_after_n_batches() {
        let mut h = Harness::<Faulty>::new(r#"{"mode": "trap", "after": 2}"#).unwrap();
        h.handle_metrics(&testing::metrics_batch()).unwrap();
        h.handle_spans(&testing::spans_batch()).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.handle_logs(&testing::logs_batch())
        }));
        assert!(r.is_err());
    }

    #[test]
    fn error_mode_is_retryable() {
        let mut h = Harness::<Faulty>::new(r#"{"mode": "error", "after": 1}"#).unwrap();
        h.handle_logs(&testing::logs_batch()).unwrap();
        assert!(
            h.handle_logs(&testing::logs_batch())
                .unwrap_err()
                .is_retryable()
        );
    }

    #[test]
    fn check_denies_the_configured_values() {
        let mut h = Harness::<Faulty>::new(
            r#"{"deny": {"request.path": "/reviews/1"}, "validForMs": 500}"#,
        )
        .unwrap();
        let d = h.check(&testing::attributes_batch()).unwrap();
        assert!(!d.allow && d.http_status == 403, "{d:?}");
        assert!(d.message.contains("request.path"), "{d:?}");
        assert_eq!(d.valid_for_ms, 500);
        let mut h = Harness::<Faulty>::new(r#"{"deny": {"request.path": "/admin"}}"#).unwrap();
        assert!(h.check(&testing::attributes_batch()).unwrap().allow);
    }

    #[test]
    fn unknown_modes_are_refused() {
        assert!(Harness::<Faulty>::new(r#"{"mode": "explode"}"#).is_err());
    }
}
