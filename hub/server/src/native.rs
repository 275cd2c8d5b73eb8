//! `sextant.mixer.v1.Mixer`: the native Check (plain or compressed attributes, quotas, deduplication).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_config::FailurePolicy;
use hub_policy::{Decision, HeaderAction, HeaderTarget, Presence, QuotaRequest};
use sextant_proto::google::protobuf::Duration as PbDuration;
use sextant_proto::google::rpc::Status as RpcStatus;
use sextant_proto::mixer::{self, mixer_server::Mixer};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::dedup::{self, DedupCache};
use crate::state::HubState;

/// The native Mixer service.
pub struct MixerService {
    state: Arc<HubState>,
    dedup: DedupCache,
}

impl MixerService {
    /// A service deciding with `state`'s snapshot.
    pub fn new(state: Arc<HubState>) -> Self {
        MixerService {
            state,
            dedup: DedupCache::new(10_000, Duration::from_secs(30)),
        }
    }
}

/// Converts a duration to protobuf, saturating.
pub fn pb_duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The `retry-after` header value for a wait: whole seconds, rounded up.
pub(crate) fn retry_after_secs(wait: Duration) -> String {
    wait.as_secs_f64().ceil().to_string()
}

/// The native response for a decision.
pub fn to_check_response(d: &Decision) -> mixer::CheckResponse {
    use mixer::attribute_match::Condition;
    use mixer::header_operation::{Operation, Target};
    let referenced = d
        .referenced
        .iter()
        .map(|r| mixer::AttributeMatch {
            name: r.name.to_string(),
            condition: match r.presence {
                Presence::Exact => Condition::Exact,
                Presence::Absent => Condition::Absence,
            } as i32,
            map_key: r.map_key.clone().unwrap_or_default(),
        })
        .collect();
    let mut header_operations = Vec::new();
    let mut direct_headers = std::collections::HashMap::new();
    for h in &d.headers {
        if !d.allowed() && h.target == HeaderTarget::Request {
            // For a denial, "request" edits shape the direct response.
            if h.action != HeaderAction::Remove {
                direct_headers.insert(h.name.clone(), h.value.clone());
            }
            continue;
        }
        header_operations.push(mixer::HeaderOperation {
            target: match h.target {
                HeaderTarget::Request => Target::Request,
                HeaderTarget::Response => Target::Response,
            } as i32,
            name: h.name.clone(),
            value: h.value.clone(),
            operation: match h.action {
                HeaderAction::Replace => Operation::Replace,
                HeaderAction::Append => Operation::Append,
                HeaderAction::Remove => Operation::Remove,
            } as i32,
        });
    }
    if let Some(wait) = d.retry_after {
        direct_headers.insert("retry-after".to_string(), retry_after_secs(wait));
    }
    let precondition = mixer::PreconditionResult {
        status: Some(RpcStatus {
            code: d.code,
            message: d.message.clone(),
            details: Vec::new(),
        }),
        valid_duration: Some(pb_duration(d.valid_duration)),
        valid_use_count: d.valid_use_count,
        referenced_attributes: Some(mixer::ReferencedAttributes {
            attribute_matches: referenced,
        }),
        header_operations,
        direct_response: (!d.allowed()).then(|| mixer::DirectResponse {
            http_status: u32::from(d.http_status),
            headers: direct_headers,
            body: d.message.clone(),
        }),
        config_revision: d.revision,
        failure_policy: match d.failure_policy {
            None => mixer::FailurePolicy::Unspecified,
            Some(FailurePolicy::FailOpen) => mixer::FailurePolicy::FailOpen,
            Some(FailurePolicy::FailClose) => mixer::FailurePolicy::FailClose,
        } as i32,
        retry_after: d.retry_after.map(pb_duration),
    };
    let quotas = d
        .quotas
        .iter()
        .map(|(name, g)| {
            (
                name.clone(),
                mixer::QuotaResult {
                    valid_duration: Some(pb_duration(if g.granted > 0 {
                        Duration::from_secs(1)
                    } else {
                        Duration::ZERO
                    })),
                    granted_amount: i64::from(g.granted),
                    retry_after: g.retry_after.map(pb_duration),
                    error: g.error.clone().unwrap_or_default(),
                },
            )
        })
        .collect();
    mixer::CheckResponse {
        precondition: Some(precondition),
        quotas,
    }
}

fn bag_of(
    req: &mut mixer::CheckRequest,
) -> Result<sextant_attributes::Bag, sextant_attributes::DecodeError> {
    match (req.attributes.take(), req.compressed.take()) {
        (Some(_), Some(_)) => Err(sextant_attributes::DecodeError::BothForms),
        (Some(plain), None) => sextant_attributes::from_plain(plain),
        (None, Some(c)) => sextant_attributes::from_compressed(c),
        (None, None) => Ok(sextant_attributes::Bag::new()),
    }
}

#[tonic::async_trait]
impl Mixer for MixerService {
    async fn check(
        &self,
        request: Request<mixer::CheckRequest>,
    ) -> Result<Response<mixer::CheckResponse>, Status> {
        let span = crate::trace::check("native", "istio.mixer.v1.Mixer/Check", request.metadata());
        let result = self.check_in(request, &span).instrument(span.clone()).await;
        crate::trace::answered(&span, &result);
        result
    }

    async fn report(
        &self,
        request: Request<mixer::ReportRequest>,
    ) -> Result<Response<mixer::ReportResponse>, Status> {
        // The hub's router sends Reports to the routes' `ReportService`, which reads the request bytes
        // itself; this path (a `MixerServer` used on its own) encodes the decoded message again.
        let span = crate::trace::report(request.metadata());
        let caller = crate::caller::identity_of(request.extensions());
        let bytes = prost::Message::encode_to_vec(&request.into_inner());
        crate::ingest::report(&self.state, &bytes, caller.as_deref(), &span).map(Response::new)
    }
}

impl MixerService {
    /// A Check, inside its span.
    async fn check_in(
        &self,
        request: Request<mixer::CheckRequest>,
        span: &tracing::Span,
    ) -> Result<Response<mixer::CheckResponse>, Status> {
        let start = Instant::now();
        let caller = crate::caller::identity_of(request.extensions());
        let mut req = request.into_inner();
        let metrics = &self.state.metrics;
        let Some(snap) = self.state.snapshot() else {
            metrics.rejected("native", "unavailable");
            return Err(Status::unavailable(
                "no valid configuration is loaded yet; see the hub's log or /debug/config",
            ));
        };
        let dedup_id = dedup::checked_id(&req.deduplication_id).map_err(|e| {
            metrics.rejected("native", "invalid");
            Status::invalid_argument(e.to_string())
        })?;
        if let Some(previous) = dedup_id.and_then(|id| self.dedup.get(id)) {
            span.record("sextant.deduplicated", true);
            return Ok(Response::new(previous));
        }
        let mut bag = bag_of(&mut req).map_err(|e| {
            metrics.rejected("native", "invalid");
            Status::invalid_argument(format!("CheckRequest attributes: {e}"))
        })?;
        if let Some(identity) = &caller {
            let mode = self.state.caller_identity();
            crate::caller::apply(&mut bag, identity, mode, "mixer_check", metrics)
                .inspect_err(|_| metrics.rejected("native", "denied_caller"))?;
        }
        let quotas: Vec<QuotaRequest> = req
            .quotas
            .iter()
            .map(|(name, p)| QuotaRequest {
                name: name.clone(),
                amount: u32::try_from(p.amount.max(1)).unwrap_or(u32::MAX),
                best_effort: p.best_effort,
            })
            .collect();
        let decision =
            hub_policy::check_leasing(&snap, &bag, &quotas, &self.state.telemetry, req.lease_quota)
                .await;
        metrics.decision("native", &decision, start.elapsed().as_secs_f64());
        crate::trace::decided(span, &decision);
        self.state.decided(&bag, &decision);
        let response = to_check_response(&decision);
        if !req.deduplication_id.is_empty() {
            metrics.dedup_evicted(self.dedup.put(req.deduplication_id, response.clone()));
        }
        Ok(Response::new(response))
    }
}
