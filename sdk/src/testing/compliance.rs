//! The check every adapter must pass (after Vector's sink compliance helper).

use std::panic::{AssertUnwindSafe, catch_unwind};

use sextant_batch::{BatchKind, BatchWriter};

use super::{
    Harness, HarnessBuilder, attributes_batch, logs_batch, malformed_batches, metrics_batch,
    spans_batch,
};
use crate::{Adapter, Capabilities, ErrorKind};

/// Checks what every adapter must do, on a host that allows every URL and answers `200`; panics listing
/// every failed expectation. Call it from a `#[test]` with a config the adapter accepts.
///
/// - `init` with `config` succeeds, declares at least one capability, and the same config gives the same
///   capabilities again;
/// - an empty buffer and an empty segment are accepted by every declared handler;
/// - malformed buffers are permanent errors, never panics, for every handler and `check`;
/// - every declared capability handles a representative batch ([`metrics_batch`], [`logs_batch`],
///   [`spans_batch`], [`attributes_batch`]) without error;
/// - the handlers the adapter does not declare do not panic (the hub never calls them, but a bug might);
/// - the instance still works after all of that.
pub fn compliance<A: Adapter>(config: &str) {
    compliance_with::<A>(HarnessBuilder::default, config);
}

/// [`compliance`] on hosts made by `host` (for an allowlist or scripted responses); it is called once per
/// instance the check creates.
pub fn compliance_with<A: Adapter>(host: impl Fn() -> HarnessBuilder, config: &str) {
    let mut failures = Vec::new();
    run::<A>(&host, config, &mut failures);
    assert!(
        failures.is_empty(),
        "adapter {} fails the compliance check:\n  - {}",
        std::any::type_name::<A>(),
        failures.join("\n  - ")
    );
}

fn run<A: Adapter>(host: &impl Fn() -> HarnessBuilder, config: &str, failures: &mut Vec<String>) {
    let mut h = match catch_unwind(AssertUnwindSafe(|| host().build::<A>(config))) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return failures.push(format!("init failed: {e}")),
        Err(_) => return failures.push("init panicked".into()),
    };
    let caps = h.capabilities();
    if caps.is_empty() {
        failures.push("declares no capability: the hub would never call it".into());
    }
    match catch_unwind(AssertUnwindSafe(|| host().build::<A>(config))) {
        Ok(Ok(again)) if again.capabilities() != caps => failures.push(format!(
            "capabilities differ between two inits with the same config: {caps} then {}",
            again.capabilities()
        )),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => failures.push(format!("a second init with the same config failed: {e}")),
        Err(_) => failures.push("a second init with the same config panicked".into()),
    }

    let kinds = [
        (Capabilities::METRICS, BatchKind::Metrics, metrics_batch()),
        (Capabilities::LOGS, BatchKind::Logs, logs_batch()),
        (Capabilities::SPANS, BatchKind::Spans, spans_batch()),
    ];
    for (cap, kind, batch) in &kinds {
        let declared = caps.contains(*cap);
        let empty_segment = BatchWriter::new(*kind).finish();
        for (what, bytes) in [
            ("an empty buffer", &[][..]),
            ("an empty segment", &empty_segment[..]),
        ] {
            match call(&mut h, *kind, bytes) {
                Err(()) => failures.push(format!("handle-{cap} panicked on {what}")),
                Ok(Err(e)) if declared => {
                    failures.push(format!("handle-{cap} rejected {what}: {e}"))
                }
                Ok(_) => {}
            }
        }
        for (i, bad) in malformed_batches().iter().enumerate() {
            match call(&mut h, *kind, bad) {
                Err(()) => failures.push(format!("handle-{cap} panicked on malformed batch #{i}")),
                Ok(Ok(())) => failures.push(format!("handle-{cap} accepted malformed batch #{i}")),
                Ok(Err(e)) if e.kind != ErrorKind::Permanent => failures.push(format!(
                    "handle-{cap}: malformed batch #{i} is not a permanent error: {e}"
                )),
                Ok(Err(_)) => {}
            }
        }
        match call(&mut h, *kind, batch) {
            Err(()) => failures.push(format!("handle-{cap} panicked on a representative batch")),
            Ok(Err(e)) if declared => {
                failures.push(format!("handle-{cap} failed a representative batch: {e}"))
            }
            Ok(_) => {}
        }
    }

    for (i, bad) in malformed_batches().iter().enumerate() {
        match catch_unwind(AssertUnwindSafe(|| h.check(bad))) {
            Err(_) => failures.push(format!("check panicked on malformed batch #{i}")),
            Ok(Ok(_)) => failures.push(format!("check accepted malformed batch #{i}")),
            Ok(Err(e)) if e.kind != ErrorKind::Permanent => failures.push(format!(
                "check: malformed batch #{i} is not a permanent error: {e}"
            )),
            Ok(Err(_)) => {}
        }
    }
    match catch_unwind(AssertUnwindSafe(|| h.check(&attributes_batch()))) {
        Err(_) => failures.push("check panicked on a representative request".into()),
        Ok(Err(e)) if caps.contains(Capabilities::CHECK) => {
            failures.push(format!("check failed a representative request: {e}"))
        }
        Ok(_) => {}
    }

    // The instance must still serve its declared capabilities after errors.
    for (cap, kind, batch) in &kinds {
        if caps.contains(*cap) && !matches!(call(&mut h, *kind, batch), Ok(Ok(()))) {
            failures.push(format!(
                "handle-{cap} no longer handles a representative batch after errors"
            ));
        }
    }
}

type CallResult = Result<Result<(), crate::AdapterError>, ()>;

fn call<A: Adapter>(h: &mut Harness<A>, kind: BatchKind, bytes: &[u8]) -> CallResult {
    catch_unwind(AssertUnwindSafe(|| h.handle(kind, bytes))).map_err(|_| ())
}
