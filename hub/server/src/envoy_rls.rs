//! `envoy.service.ratelimit.v3.RateLimitService`: Envoy's rate-limit filter, served by the same RateLimit
//! resources. Each descriptor is decided on its own bag: `ratelimit.domain` and `ratelimit.descriptor` (the
//! descriptor's entries, key to value).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_quota::LimitSpec;
use sextant_attributes::{Bag, Value, attr};
use sextant_proto::envoy::service::ratelimit::v3::{
    RateLimitRequest, RateLimitResponse,
    rate_limit_response::{Code, DescriptorStatus, RateLimit, rate_limit::Unit},
    rate_limit_service_server::RateLimitService,
};
use tonic::{Request, Response, Status};

use crate::native::pb_duration;
use crate::state::HubState;

/// The rate-limit service.
pub struct RlsService {
    state: Arc<HubState>,
}

impl RlsService {
    /// A service deciding with `state`'s snapshot.
    pub fn new(state: Arc<HubState>) -> Self {
        RlsService { state }
    }
}

/// A rate-limit request that decodes but lacks what the hub decides on. Envoy's filter always sends its
/// configured (non-empty) domain and only calls with at least one descriptor, each with entries whose keys
/// are set (a value may be empty).
#[derive(Debug, PartialEq, thiserror::Error)]
enum InvalidRequest {
    /// An empty `domain`.
    #[error("RateLimitRequest.domain is empty")]
    NoDomain,
    /// No descriptor.
    #[error("RateLimitRequest.descriptors is empty: nothing to decide")]
    NoDescriptors,
    /// A descriptor without entries.
    #[error("RateLimitRequest.descriptors[{0}] has no entries")]
    NoEntries(usize),
    /// An entry with an empty key.
    #[error("RateLimitRequest.descriptors[{descriptor}].entries[{entry}].key is empty")]
    EmptyKey {
        /// The descriptor's index.
        descriptor: usize,
        /// The entry's index in it.
        entry: usize,
    },
}

/// Checks that `req` carries what a decision needs.
fn validate(req: &RateLimitRequest) -> Result<(), InvalidRequest> {
    if req.domain.is_empty() {
        return Err(InvalidRequest::NoDomain);
    }
    if req.descriptors.is_empty() {
        return Err(InvalidRequest::NoDescriptors);
    }
    for (i, d) in req.descriptors.iter().enumerate() {
        if d.entries.is_empty() {
            return Err(InvalidRequest::NoEntries(i));
        }
        if let Some(entry) = d.entries.iter().position(|e| e.key.is_empty()) {
            return Err(InvalidRequest::EmptyKey {
                descriptor: i,
                entry,
            });
        }
    }
    Ok(())
}

/// The limit in Envoy's terms, when the window is one of its units.
fn current_limit(name: &str, spec: &LimitSpec) -> Option<RateLimit> {
    let unit = match spec.per {
        d if d == Duration::from_secs(1) => Unit::Second,
        d if d == Duration::from_secs(60) => Unit::Minute,
        d if d == Duration::from_secs(3600) => Unit::Hour,
        d if d == Duration::from_secs(86_400) => Unit::Day,
        d if d == Duration::from_secs(7 * 86_400) => Unit::Week,
        _ => return None,
    };
    Some(RateLimit {
        name: name.to_string(),
        requests_per_unit: spec.requests,
        unit: unit as i32,
    })
}

#[tonic::async_trait]
impl RateLimitService for RlsService {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        if let Err(e) = validate(&req) {
            self.state.metrics.rejected("envoy_rls", "invalid");
            return Err(Status::invalid_argument(e.to_string()));
        }
        let Some(snap) = self.state.snapshot() else {
            self.state.metrics.rejected("envoy_rls", "unavailable");
            return Err(Status::unavailable("no valid configuration is loaded yet"));
        };
        let mut statuses = Vec::with_capacity(req.descriptors.len());
        let mut over = None;
        for descriptor in req.descriptors {
            let mut bag = Bag::new();
            let entries = descriptor
                .entries
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect();
            // Ids and types checked at compile time: neither can fail.
            let set_domain = bag.set(
                attr!("ratelimit.domain", String),
                Value::String(req.domain.clone()),
            );
            let set_descriptor = bag.set(
                attr!("ratelimit.descriptor", StringMap),
                Value::StringMap(entries),
            );
            debug_assert!(set_domain.is_ok() && set_descriptor.is_ok());
            let hits = descriptor.hits_addend.map_or(req.hits_addend, |h| {
                u32::try_from(h.value).unwrap_or(u32::MAX)
            });
            let d = hub_policy::rate_limit(&snap, &bag, hits.max(1)).await;
            self.state.metrics.failures(&d.failures);
            if d.over_limit && over.is_none() {
                over = d.limit.as_ref().map(|(n, _)| n.clone());
            }
            statuses.push(DescriptorStatus {
                code: if d.over_limit {
                    Code::OverLimit
                } else {
                    Code::Ok
                } as i32,
                current_limit: d.limit.as_ref().and_then(|(n, s)| current_limit(n, s)),
                limit_remaining: d.remaining,
                duration_until_reset: d.limit.as_ref().map(|_| pb_duration(d.reset_after)),
                ..Default::default()
            });
        }
        self.state
            .metrics
            .rate_limit(over.as_deref(), start.elapsed().as_secs_f64());
        let overall = if over.is_some() {
            Code::OverLimit
        } else {
            Code::Ok
        };
        Ok(Response::new(RateLimitResponse {
            overall_code: overall as i32,
            statuses,
            ..Default::default()
        }))
    }
}
