//! What an adapter's handle sends its worker thread: record segments, wake-ups and drains on one channel,
//! `check` calls on the bounded check lane.

use std::time::Instant;

use sextant_batch::BatchKind;

use crate::CheckDecision;
use crate::error::AdapterCallError;

/// What the handle sends the worker.
pub(crate) enum Msg {
    /// Records to deliver.
    Segment {
        kind: BatchKind,
        bytes: Vec<u8>,
        records: usize,
    },
    /// A check was put in the check lane: look at it.
    Wake,
    /// Deliver what is queued until the deadline, then stop.
    Drain {
        deadline: Instant,
        reply: tokio::sync::oneshot::Sender<()>,
    },
}

/// A `check` call, sent through the check lane.
pub(crate) struct CheckCall {
    pub(crate) attributes: Vec<u8>,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<CheckDecision, AdapterCallError>>,
    /// When the caller stops waiting: a call still queued then is skipped.
    pub(crate) deadline: Instant,
}

/// The most `check` calls waiting for one adapter; more are refused at once.
pub const CHECK_LANE: usize = 1024;
