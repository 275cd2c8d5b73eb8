//! The Wasm adapter runtime of the hub: runs telemetry and policy adapters as isolated wasmtime components
//! (the `sextant:adapter` world of `sdk/wit`).
//!
//! Data flow: the hub's Report path encodes records into `sextant-batch` segments and
//! [`AdapterHandle::submit`]s them; each adapter's worker thread concatenates segments into batches (by size,
//! `limits.batch_size` records, and by time, `limits.flush_interval`) and calls the adapter's
//! `handle-metrics` / `handle-logs` / `handle-spans`. The Check path calls [`AdapterHandle::check`]. Adapters
//! write Prometheus metrics into the shared [`Registry`] (served on the hub's `/metrics`), log into the hub's
//! log, and send HTTP only to their `allowed_hosts`.
//!
//! # Isolation
//! * Each call has a deadline (`limits.time_per_batch`), enforced by epoch interruption: a ticker thread
//!   advances the engine's epoch every `RuntimeOptions::epoch_tick` (10 ms), so a runaway call stops within
//!   one tick of its deadline. Epochs rather than fuel: the limit is wall-clock time (it also bounds what the
//!   guest waits in host calls, which fuel does not see), and epoch checks cost less than fuel accounting
//!   (measured on this toolchain: epoch 8–15 %, fuel 10–23 % on guest code).
//! * Each instance has a memory limit (`limits.memory`, all its linear memories together).
//! * WASI p2 is linked restricted: no preopened directories, no environment or arguments, no sockets or name
//!   lookups; stdout goes to the hub's stdout or is appended to `AdapterConfig::stdout`, stderr to the hub's.
//! * Wasm calls run on the adapter's own thread, never on a tokio worker (see `worker.rs`).
//!
//! # Delivery semantics
//! * **At most once per record, after it is accepted.** `submit` returns `true` when the records were
//!   accepted into the queue; from then on each record is either delivered (the handler returned `ok`) or
//!   dropped and counted, never both. A record is never handed to the adapter twice *after a success*, but a
//!   batch whose call crashed or returned `retryable` is retried whole (`limits.retries` more times, with
//!   exponential backoff from `backoff_initial` to `backoff_max`): an adapter that had already sent part of
//!   it to its backend before failing may send that part again.
//! * **Crashes.** A trap, a deadline overrun or memory exhaustion discards the instance (counted in
//!   `restarts`, by reason); a new one is instantiated and initialised after a backoff (100 ms doubling to
//!   10 s by default, reset by the next successful call). The failed batch counts as one attempt.
//! * **Drops**, by reason (counted in [`DeliveryStats`] and `sextant_hub_adapter_records_dropped_total`):
//!   `queue_full` (refused by `submit`: the queue holds at most `limits.queue_records` records accepted and
//!   not yet delivered or dropped), `unsupported` (a kind the adapter's capabilities exclude),
//!   `adapter_down` (submitted after a drain, or no instance could be created), `permanent_error` (the adapter
//!   said the batch can never succeed), `retries_exhausted`, `drain_deadline` (still queued when a drain's
//!   deadline passed).
//! * **Hot reload** is the hub's: start the new handle, switch submissions to it, then
//!   [`AdapterHandle::drain`] the old one, which stops accepting, delivers what it holds until the deadline
//!   and reports its own counts. Dropping every clone of a handle without draining also delivers what is
//!   queued (bounded by `time_per_batch × (retries + 1)`), in the background.
//!
//! # Component cache
//! Compiled components are cached on disk (`RuntimeOptions::cache_dir`) keyed by the SHA-256 of the
//! component, the wasmtime version and the engine configuration; a corrupt or stale entry is recompiled.
//! Each distinct module is pre-instantiated once (`InstancePre`); instances are created from it.

/// The version of the adapter ABI this hub implements: the WIT package `sextant:adapter` of `sdk/wit`. A
/// component that imports the package's interfaces at another version is refused at load
/// ([`LoadError::IncompatibleSdk`]): the sample encoding of `metrics.record` changed in 0.2.0.
pub const ABI_VERSION: &str = "0.2.0";

mod allowlist;
mod bindings;
mod cache;
mod config;
mod error;
mod handle;
mod host;
mod instance;
mod lane;
mod metrics;
mod outbound;
mod registry;
mod runtime;
mod types;
mod worker;

pub use allowlist::Allowlist;
pub use cache::CacheStats;
pub use config::{AdapterConfig, BuiltinLookup, Limits, ModuleSource, RuntimeOptions};
pub use error::{AdapterCallError, LoadError, RuntimeError};
pub use handle::AdapterHandle;
pub use lane::CHECK_LANE;
pub use metrics::{DeliveryStats, DropReason, Drops, LastError};
pub use registry::{DefineError, FamilyDef, RecordOutcome, Registry, RegistryDrops};
pub use runtime::Runtime;
pub use sextant_batch::BatchKind;
pub use types::{Capabilities, CheckDecision};
