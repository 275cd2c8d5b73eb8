//! The hub's kinds as the API server serves them.

use kube::api::ApiResource;
use sextant_kube::resources::Kind;

/// The hub's kinds: Policy, RateLimit, Telemetry, Adapter.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "Policy",
            resource: ApiResource::erase::<hub_config::Policy>(&()),
            task: "kube-watch-policies",
        },
        Kind {
            name: "RateLimit",
            resource: ApiResource::erase::<hub_config::RateLimit>(&()),
            task: "kube-watch-ratelimits",
        },
        Kind {
            name: "Telemetry",
            resource: ApiResource::erase::<hub_config::Telemetry>(&()),
            task: "kube-watch-telemetries",
        },
        Kind {
            name: "Adapter",
            resource: ApiResource::erase::<hub_config::Adapter>(&()),
            task: "kube-watch-adapters",
        },
    ]
}
