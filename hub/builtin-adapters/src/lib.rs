//! The adapters Sextant ships, built to Wasm components and embedded in the binary.
