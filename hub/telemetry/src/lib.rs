//! Telemetry rules: what the hub makes of reported attribute bags.
//!
//! [`validate`] compiles `Telemetry` resources (hub-config) against the attribute vocabulary and resolves
//! their `Adapter` references; it is pure, and is what `sextant validate` runs. [`Rules::record`] evaluates
//! one reported bag: each Telemetry whose selector holds yields metric records (a value and dimensions),
//! log entries and a span, written straight into one batch segment per adapter and kind (the
//! `sextant-batch` encoding the Wasm adapters read). [`Batches::take`] hands the finished segments to the
//! adapter runtime.
//!
//! Semantics (also in docs/adapters.md): a dimension that cannot be evaluated, typically because the
//! attribute is absent, is `unknown`; a log field or span tag that cannot be evaluated is left out; a metric
//! whose value cannot be evaluated is skipped and counted as a failure. Spans need trace context in the
//! request headers ([`tracectx`]); reports without it, or not sampled, make no span.

mod eval;
mod report;
mod rules;
pub mod tracectx;

pub use eval::{CelScope, Eval, Out, Want};
pub use report::{Batches, RecordStats, Segment, attributes_batch};
pub use rules::{FamilyDef, Rules, validate};

/// The Telemetry and Adapter resources a hub loads unless told not to: Istio's standard metrics, with Istio's
/// names and labels, recorded by the builtin prometheus adapter.
pub const DEFAULT_TELEMETRY: &str = include_str!("default-telemetry.yaml");

/// The file name the default resources are reported under in errors and `/debug/config`.
pub const DEFAULT_TELEMETRY_FILE: &str = "<builtin>/istio-standard-telemetry.yaml";

#[cfg(test)]
mod tests;

/// Adds the default Telemetry and Adapter resources ([`DEFAULT_TELEMETRY`]) to `set`, except those whose
/// namespace and name the set already has: a user's resource replaces the default one.
pub fn add_defaults(set: &mut hub_config::ConfigSet) {
    let Ok(defaults) = hub_config::load_texts([(
        std::path::Path::new(DEFAULT_TELEMETRY_FILE),
        DEFAULT_TELEMETRY,
    )]) else {
        // The embedded file is tested to load; nothing to add if it ever did not.
        return;
    };
    for t in defaults.telemetry {
        if !set.telemetry.iter().any(|u| u.key() == t.key()) {
            set.telemetry.push(t);
        }
    }
    for a in defaults.adapters {
        if !set.adapters.iter().any(|u| u.key() == a.key()) {
            set.adapters.push(a);
        }
    }
}
