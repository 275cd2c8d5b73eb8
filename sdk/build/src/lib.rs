//! Builds an adapter crate to a wasm32-wasip2 component, choosing the toolchain by itself.
