//! The hub's configuration as Kubernetes-style resources.
//!
//! Policy authors write `Policy`, `RateLimit`, `Telemetry` and `Adapter` resources
//! (`policy.sextant.dev/v1alpha1`) as multi-document YAML in a directory tree. This crate defines those kinds,
//! picks them from the documents `sextant-resources` reads ([`load_path`], [`load_files`]), each field keeping
//! the file and line it came from so that later validation (CEL compilation in `hub-policy`) can point at it,
//! and generates the CustomResourceDefinitions from the same Rust types ([`crds`]). Resources of other API
//! groups (Istio's, for pilot) are skipped, those of Istio kinds neither role reads counted in
//! [`ConfigSet::unread`] ([`istio`]).

mod load;
mod resources;

pub use load::{ConfigSet, load_each, load_files, load_path, load_texts};
// The shared resource machinery, re-exported so the hub's crates name one configuration crate.
pub use resources::{
    API_VERSION, Action, Adapter, AdapterLimits, AdapterSpec, BackendFailure, DefaultAction,
    FailurePolicy, GROUP, HeaderEdits, HeaderRules, Limit, LimitScope, LogSpec, MetricKind,
    MetricSpec, OnError, Policy, PolicySpec, RateLimit, RateLimitSpec, ResourceStatus, Rule,
    RuleStatus, Telemetry, TelemetrySpec, TraceSpanKind, TraceSpec,
};
pub use sextant_resources::{
    ConfigError, ConfigErrors, ConfigFiles, Location, Origin, RawResource, Resource, istio,
};

/// The CustomResourceDefinitions of the hub's kinds, generated from the Rust types.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Policy::crd(),
        RateLimit::crd(),
        Telemetry::crd(),
        Adapter::crd(),
    ]
}

/// Parses a duration such as `60s`, `1m`, `1h30m` or `250ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 60s, 1m, 1h"))
}

#[cfg(test)]
mod tests;

/// Parses a size in bytes: `1048576`, `512Ki`, `64Mi`, `1Gi` (powers of 1024) or `10k`, `10M`, `1G` (of 1000).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 64Mi, 512Ki, 1Gi"))?;
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use Ki, Mi, Gi, k, M or G"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too large"))
}
