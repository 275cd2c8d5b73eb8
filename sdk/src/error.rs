//! How a handler call fails: [`AdapterError`], retryable or permanent.

use std::fmt;

/// Whether the hub should retry a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Transient (backend down, timeout, 5xx): the hub retries the batch with backoff, then drops and counts it.
    Retryable,
    /// The batch can never succeed (bad data, rejected by the backend): dropped and counted at once.
    Permanent,
}

/// A failed handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    /// Retry or not.
    pub kind: ErrorKind,
    /// What went wrong, for the hub's log and metrics.
    pub message: String,
}

impl AdapterError {
    /// A transient failure: the hub retries the batch.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// A failure retrying cannot fix: the hub drops the batch.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }

    /// True for [`ErrorKind::Retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for AdapterError {}
