//! The [`Adapter`] trait and the values it exchanges with the hub.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use sextant_batch::Batch;

use crate::Host;
use crate::error::AdapterError;

/// A Sextant adapter. One value lives per Wasm instance, created by [`Adapter::init`].
///
/// The hub only sends the kinds of batches [`Adapter::capabilities`] declares; every handler has a default so
/// an adapter implements only what it declares. Handlers run one at a time (an instance is single-threaded)
/// and should return within the adapter's time limit: the hub interrupts a call that runs too long and
/// re-instantiates the adapter, as it does after a panic.
pub trait Adapter: Sized + 'static {
    /// Creates the adapter from the `Adapter` resource's `spec.config`, as JSON text (`{}` when none was
    /// given; see [`crate::parse_config`]). An error makes the resource invalid: the message is shown by
    /// `sextant validate` and in the hub's log, so say which field is wrong.
    fn init(config: &str, host: &Host) -> Result<Self, String>;

    /// What this adapter handles; the hub sends only these kinds of batches.
    ///
    /// By default this is [`Capabilities::NONE`], which receives nothing (and fails [`crate::testing::compliance`]):
    /// every adapter overrides it.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    /// Handles a batch of metric records.
    ///
    /// By default this ignores the batch and returns `Ok(())`.
    fn handle_metrics(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let _ = (batch, host);
        Ok(())
    }

    /// Handles a batch of log entries.
    ///
    /// By default this ignores the batch and returns `Ok(())`.
    fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let _ = (batch, host);
        Ok(())
    }

    /// Handles a batch of spans.
    ///
    /// By default this ignores the batch and returns `Ok(())`.
    fn handle_spans(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let _ = (batch, host);
        Ok(())
    }

    /// Decides on one request; `attributes` holds one attributes record ([`Batch::attributes`]).
    ///
    /// By default this allows every request ([`CheckDecision::allow`]).
    fn check(
        &mut self,
        attributes: &Batch<'_>,
        host: &Host,
    ) -> Result<CheckDecision, AdapterError> {
        let _ = (attributes, host);
        Ok(CheckDecision::allow())
    }
}

/// The kinds of calls an adapter handles (the WIT `capabilities` flags). Combine with `|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Nothing.
    pub const NONE: Self = Self(0);
    /// Metric batches (`handle-metrics`).
    pub const METRICS: Self = Self(1);
    /// Log batches (`handle-logs`).
    pub const LOGS: Self = Self(2);
    /// Span batches (`handle-spans`).
    pub const SPANS: Self = Self(4);
    /// Policy checks (`check`).
    pub const CHECK: Self = Self(8);

    /// True when every capability of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when nothing is declared.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Capabilities {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::METRICS, "metrics"),
            (Self::LOGS, "logs"),
            (Self::SPANS, "spans"),
            (Self::CHECK, "check"),
        ];
        let mut first = true;
        for (c, name) in names {
            if self.contains(c) {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// A policy adapter's answer to `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDecision {
    /// Allow the request.
    pub allow: bool,
    /// HTTP status for a denial (0 = 403).
    pub http_status: u16,
    /// Human-readable reason, returned to the caller on denial.
    pub message: String,
    /// How long the decision may be cached, in milliseconds (0 = not cacheable).
    pub valid_for_ms: u32,
}

impl CheckDecision {
    /// Allows the request; not cacheable.
    pub fn allow() -> Self {
        Self {
            allow: true,
            http_status: 0,
            message: String::new(),
            valid_for_ms: 0,
        }
    }

    /// Denies the request with `http_status` (0 = 403) and a reason; not cacheable.
    pub fn deny(http_status: u16, message: impl Into<String>) -> Self {
        Self {
            allow: false,
            http_status,
            message: message.into(),
            valid_for_ms: 0,
        }
    }

    /// The same decision, cacheable for `ms` milliseconds.
    pub fn valid_for(mut self, ms: u32) -> Self {
        self.valid_for_ms = ms;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_combine_and_print() {
        let c = Capabilities::METRICS | Capabilities::SPANS;
        assert!(c.contains(Capabilities::METRICS));
        assert!(!c.contains(Capabilities::LOGS));
        assert_eq!(c.to_string(), "metrics|spans");
        assert_eq!(Capabilities::NONE.to_string(), "none");
        assert!(Capabilities::default().is_empty());
    }

    #[test]
    fn errors_say_their_kind() {
        assert!(AdapterError::retryable("x").is_retryable());
        assert_eq!(AdapterError::permanent("bad").to_string(), "permanent: bad");
        let d = CheckDecision::deny(429, "slow down").valid_for(1000);
        assert!(!d.allow);
        assert_eq!((d.http_status, d.valid_for_ms), (429, 1000));
    }
}
