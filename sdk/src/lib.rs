//! The Sextant adapter SDK: write a Wasm telemetry or policy adapter for the Sextant hub.
