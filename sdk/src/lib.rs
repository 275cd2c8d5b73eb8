//! The Sextant adapter SDK: write a Wasm telemetry or policy adapter for the Sextant hub.
//!
//! An adapter is a Wasm component (world `sextant:adapter/adapter`, `sdk/wit/adapter.wit`) that the hub
//! instantiates once per `Adapter` resource. The hub calls `init` with the resource's `spec.config`, then hands
//! it batches of metrics, logs or spans (pre-encoded with [`sextant_batch`]) and, for policy adapters, one
//! request's attributes per `check`. The adapter reaches the outside only through the host: the hub's log, its
//! clock, its Prometheus registry and an allowlisted HTTP client ([`Host`]).
//!
//! Writing one:
//!
//! ```
//! use sextant_adapter_sdk::{Adapter, AdapterError, Batch, Capabilities, Host, Level};
//!
//! struct Counter {
//!     seen: u64,
//! }
//!
//! impl Adapter for Counter {
//!     fn init(_config: &str, _host: &Host) -> Result<Self, String> {
//!         Ok(Self { seen: 0 })
//!     }
//!
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::LOGS
//!     }
//!
//!     fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
//!         self.seen += batch.logs().count() as u64;
//!         host.log(Level::Debug, &format!("{} log entries so far", self.seen));
//!         Ok(())
//!     }
//! }
//!
//! // Exports the component's functions (on wasm32 only; natively this expands to nothing).
//! sextant_adapter_sdk::export_adapter!(Counter);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`), or let the
//! `sextant-adapter-build` crate pick a toolchain. Test it natively, without Wasm, with [`testing::Harness`]
//! and pass [`testing::compliance`].

// The generated guest bindings name the runtime through this crate's path, so that adapters need not depend
// on wit-bindgen themselves.
extern crate self as sextant_adapter_sdk;

mod adapter;
mod config;
#[doc(hidden)]
pub mod dispatch;
mod error;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;
mod host;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use adapter::{Adapter, Capabilities, CheckDecision};
pub use config::parse_config;
pub use error::{AdapterError, ErrorKind};
pub use host::{
    FamilyHandle, Host, HttpClient, HttpError, Level, MetricFamily, MetricsRegistry, Request,
    Response,
};
pub use sextant_batch;
pub use sextant_batch::{
    Batch, BatchKind, BatchWriter, DecodeError, Family, FamilyId, FamilyRef, Field, LabelSet,
    LogRef, MetricKind, MetricRef, SPAN_ERROR, SPAN_SAMPLED, SampleWriter, SeriesKey, Severity,
    Span, SpanKind, SpanRef, Value,
};

/// Exports an [`Adapter`] as the component's `init`, `handle-*` and `check` functions.
///
/// Use it once per crate, at the top level: `sextant_adapter_sdk::export_adapter!(MyAdapter);`. The instance
/// `init` returns lives in a per-instance cell; every later call goes to it. A batch that does not decode is
/// answered with a permanent error without calling the adapter; a call before a successful `init` is a
/// permanent error too.
///
/// On targets other than wasm32 this expands to nothing, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct __SextantAdapterExports;

            impl $crate::guest::Guest for __SextantAdapterExports {
                fn init(config: ::std::string::String) -> ::std::result::Result<$crate::guest::WitCapabilities, ::std::string::String> {
                    $crate::guest::init::<$ty>(&config)
                }
                fn handle_metrics(batch: ::std::vec::Vec<u8>) -> ::std::result::Result<(), $crate::guest::WitAdapterError> {
                    $crate::guest::handle($crate::BatchKind::Metrics, &batch)
                }
                fn handle_logs(batch: ::std::vec::Vec<u8>) -> ::std::result::Result<(), $crate::guest::WitAdapterError> {
                    $crate::guest::handle($crate::BatchKind::Logs, &batch)
                }
                fn handle_spans(batch: ::std::vec::Vec<u8>) -> ::std::result::Result<(), $crate::guest::WitAdapterError> {
                    $crate::guest::handle($crate::BatchKind::Spans, &batch)
                }
                fn check(attributes: ::std::vec::Vec<u8>) -> ::std::result::Result<$crate::guest::WitCheckDecision, $crate::guest::WitAdapterError> {
                    $crate::guest::check(&attributes)
                }
            }

            $crate::guest::bindings::__export_adapter_world!(__SextantAdapterExports with_types_in $crate::guest::bindings);
        };
    };
}

#[cfg(test)]
mod abi {
    /// The crate is versioned with the ABI it binds: the WIT package `sextant:adapter@VERSION`.
    #[test]
    fn the_crate_version_is_the_wit_package_version() {
        let wit = include_str!("../wit/adapter.wit");
        let package = wit
            .lines()
            .find_map(|l| l.trim().strip_prefix("package sextant:adapter@"))
            .and_then(|v| v.strip_suffix(';'));
        assert_eq!(package, Some(env!("CARGO_PKG_VERSION")));
    }
}
