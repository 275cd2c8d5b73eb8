//! The Wasm adapter runtime: wasmtime components, per-adapter workers, limits, restarts and hot reload.
