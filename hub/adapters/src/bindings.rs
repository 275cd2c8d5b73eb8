//! Host bindings generated from `sdk/wit/adapter.wit`, the single source of truth of the ABI.
#![allow(missing_docs)]
// The generated export wrappers use `TypedFunc::new_unchecked` on indices checked at pre-instantiation.
#![allow(unsafe_code)]

// Imports are synchronous: every wasm call runs on the adapter's own worker thread (see `worker.rs`), so a
// host function may block that thread (http.send waits on the tokio runtime) without stalling any tokio
// worker.
wasmtime::component::bindgen!({
    world: "adapter",
    path: "../../sdk/wit",
});
