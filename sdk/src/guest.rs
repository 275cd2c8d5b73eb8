//! The Wasm side (wasm32 only): the generated bindings and what [`crate::export_adapter!`]'s functions do.
//! Not a public API: the macro's expansion refers to it.

use std::cell::RefCell;

use sextant_batch::BatchKind;

use crate::{Adapter, AdapterError, Capabilities, CheckDecision, ErrorKind, Host, dispatch};

/// The bindings wit-bindgen generates from `sdk/wit`.
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "adapter",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_adapter_world",
        runtime_path: "::sextant_adapter_sdk::guest::wit_bindgen::rt",
        bitflags_path: "::sextant_adapter_sdk::guest::wit_bindgen::rt::bitflags",
    });
}

pub use bindings::Guest;
pub use bindings::sextant::adapter::types::{
    AdapterError as WitAdapterError, Capabilities as WitCapabilities,
    CheckDecision as WitCheckDecision,
};
pub use wit_bindgen;

/// The instance's adapter, type-erased so the export functions need not be generic.
trait Instance {
    fn handle(&mut self, kind: BatchKind, bytes: &[u8]) -> Result<(), AdapterError>;
    fn check(&mut self, bytes: &[u8]) -> Result<CheckDecision, AdapterError>;
}

impl<A: Adapter> Instance for A {
    fn handle(&mut self, kind: BatchKind, bytes: &[u8]) -> Result<(), AdapterError> {
        dispatch::handle(self, kind, bytes)
    }

    fn check(&mut self, bytes: &[u8]) -> Result<CheckDecision, AdapterError> {
        dispatch::check(self, bytes)
    }
}

thread_local! {
    // A component instance is single-threaded; the cell is only re-entered if a handler called an export,
    // which the host never does.
    static INSTANCE: RefCell<Option<Box<dyn Instance>>> = const { RefCell::new(None) };
}

/// The `init` export.
pub fn init<A: Adapter>(config: &str) -> Result<WitCapabilities, String> {
    let adapter = A::init(config, &Host::new())?;
    let caps = adapter.capabilities();
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(adapter)));
    let mut out = WitCapabilities::empty();
    for (c, w) in [
        (Capabilities::METRICS, WitCapabilities::METRICS),
        (Capabilities::LOGS, WitCapabilities::LOGS),
        (Capabilities::SPANS, WitCapabilities::SPANS),
        (Capabilities::CHECK, WitCapabilities::CHECK),
    ] {
        if caps.contains(c) {
            out |= w;
        }
    }
    Ok(out)
}

fn with_instance<T>(
    f: impl FnOnce(&mut dyn Instance) -> Result<T, AdapterError>,
) -> Result<T, WitAdapterError> {
    INSTANCE
        .with(|cell| match cell.borrow_mut().as_mut() {
            Some(instance) => f(instance.as_mut()),
            None => Err(AdapterError::permanent("the adapter was not initialized")),
        })
        .map_err(to_wit)
}

/// The `handle-metrics`, `handle-logs` and `handle-spans` exports.
pub fn handle(kind: BatchKind, bytes: &[u8]) -> Result<(), WitAdapterError> {
    with_instance(|i| i.handle(kind, bytes))
}

/// The `check` export.
pub fn check(bytes: &[u8]) -> Result<WitCheckDecision, WitAdapterError> {
    with_instance(|i| i.check(bytes)).map(|d| WitCheckDecision {
        allow: d.allow,
        http_status: d.http_status,
        message: d.message,
        valid_for_ms: d.valid_for_ms,
    })
}

fn to_wit(e: AdapterError) -> WitAdapterError {
    use bindings::sextant::adapter::types::ErrorKind as Wit;
    WitAdapterError {
        kind: match e.kind {
            ErrorKind::Retryable => Wit::Retryable,
            ErrorKind::Permanent => Wit::Permanent,
        },
        message: e.message,
    }
}
