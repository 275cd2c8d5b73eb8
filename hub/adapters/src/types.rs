//! Values adapters return, in host-side form.

use crate::bindings;

/// What an adapter handles (its `init` answer); the hub sends it only these kinds of batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Handles metric batches.
    pub metrics: bool,
    /// Handles log batches.
    pub logs: bool,
    /// Handles span batches.
    pub spans: bool,
    /// Answers `check`.
    pub check: bool,
}

impl Capabilities {
    pub(crate) fn from_wit(c: bindings::Capabilities) -> Self {
        Self {
            metrics: c.contains(bindings::Capabilities::METRICS),
            logs: c.contains(bindings::Capabilities::LOGS),
            spans: c.contains(bindings::Capabilities::SPANS),
            check: c.contains(bindings::Capabilities::CHECK),
        }
    }

    /// Whether batches of `kind` are handled (`Attributes` means `check`).
    pub fn handles(&self, kind: sextant_batch::BatchKind) -> bool {
        match kind {
            sextant_batch::BatchKind::Metrics => self.metrics,
            sextant_batch::BatchKind::Logs => self.logs,
            sextant_batch::BatchKind::Spans => self.spans,
            sextant_batch::BatchKind::Attributes => self.check,
        }
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

impl From<bindings::CheckDecision> for CheckDecision {
    fn from(d: bindings::CheckDecision) -> Self {
        Self {
            allow: d.allow,
            http_status: d.http_status,
            message: d.message,
            valid_for_ms: d.valid_for_ms,
        }
    }
}
