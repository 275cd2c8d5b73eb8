//! What the exported functions do with their bytes, shared by the Wasm exports and the native test harness
//! so both behave the same.

use sextant_batch::{Batch, BatchKind};

use crate::{Adapter, AdapterError, CheckDecision, Host};

/// Decodes `bytes` and hands the batch to the handler of `kind`. A malformed batch is a permanent error and
/// the adapter is not called.
pub fn handle<A: Adapter>(
    adapter: &mut A,
    kind: BatchKind,
    bytes: &[u8],
) -> Result<(), AdapterError> {
    let batch = decode(bytes)?;
    let host = Host::new();
    match kind {
        BatchKind::Metrics => adapter.handle_metrics(&batch, &host),
        BatchKind::Logs => adapter.handle_logs(&batch, &host),
        BatchKind::Spans => adapter.handle_spans(&batch, &host),
        BatchKind::Attributes => Err(AdapterError::permanent("attributes are only sent to check")),
    }
}

/// Decodes `bytes` and asks the adapter for a decision.
pub fn check<A: Adapter>(adapter: &mut A, bytes: &[u8]) -> Result<CheckDecision, AdapterError> {
    let batch = decode(bytes)?;
    adapter.check(&batch, &Host::new())
}

fn decode(bytes: &[u8]) -> Result<Batch<'_>, AdapterError> {
    Batch::parse(bytes).map_err(|e| AdapterError::permanent(e.to_string()))
}
