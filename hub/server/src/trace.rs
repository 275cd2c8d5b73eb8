//! The hub's spans for export (`sextant-otel`): one server span per Check, joined to the caller's trace
//! when the request carries one, with the decision as attributes; one per Report. They exist only for
//! sampled traces (`sextant_otel::root_span!`).

use hub_policy::Decision;
use tonic::metadata::MetadataMap;
use tracing::Span;
use tracing::field::Empty;

/// The span of one Check through front door `door` (`rpc`: the gRPC method as `service/method`), a child
/// of the caller's span when `metadata` carries W3C or B3 trace context.
pub(crate) fn check(door: &'static str, rpc: &'static str, metadata: &MetadataMap) -> Span {
    let caller = caller(metadata);
    sextant_otel::root_span!(
        caller.as_ref(),
        "hub.check",
        otel.name = rpc,
        otel.kind = "server",
        rpc.system = "grpc",
        sextant.front_door = door,
        sextant.decision = Empty,
        sextant.code = Empty,
        sextant.policy = Empty,
        sextant.rule = Empty,
        sextant.rules_matched = Empty,
        sextant.rate_limited_by = Empty,
        sextant.revision = Empty,
        sextant.deduplicated = Empty,
        rpc.grpc.status_code = Empty,
        otel.status_code = Empty,
    )
}

/// The span of one Report's ingest, a child of the caller's span when `metadata` carries one.
pub(crate) fn report(metadata: &MetadataMap) -> Span {
    let caller = caller(metadata);
    sextant_otel::root_span!(
        caller.as_ref(),
        "hub.report",
        otel.name = "istio.mixer.v1.Mixer/Report",
        otel.kind = "server",
        rpc.system = "grpc",
        sextant.accepted = Empty,
        sextant.rejected = Empty,
    )
}

/// The caller's trace context in the call's metadata (read only while spans are exported).
fn caller(metadata: &MetadataMap) -> Option<sextant_otel::Caller> {
    sextant_otel::caller(|h| metadata.get(h).and_then(|v| v.to_str().ok()))
}

/// Records how a Check's call ended: its gRPC status code, and an error status when it was refused (the
/// decision itself, allow or deny, is an answer, not an error).
pub(crate) fn answered<T>(span: &Span, result: &Result<T, tonic::Status>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(_) => span.record("rpc.grpc.status_code", 0),
        Err(status) => {
            span.record("rpc.grpc.status_code", status.code() as i32);
            span.record("otel.status_code", "ERROR")
        }
    };
}

/// Records `d` on a Check's span: allow or deny, the code, the policy and rule that decided (the denying
/// one, else the first that matched), how many rules matched, the RateLimit that refused, the revision.
pub(crate) fn decided(span: &Span, d: &Decision) {
    if span.is_disabled() {
        return;
    }
    span.record(
        "sextant.decision",
        if d.code == 0 { "allow" } else { "deny" },
    );
    span.record("sextant.code", d.code);
    let live = || d.hits.iter().filter(|h| !h.dry_run);
    if let Some(h) = live()
        .find(|h| h.action == "DENY")
        .or_else(|| live().next())
    {
        span.record("sextant.policy", &*h.policy);
        span.record("sextant.rule", &*h.rule);
    }
    span.record("sextant.rules_matched", d.hits.len());
    if let Some(rl) = &d.rate_limited_by {
        span.record("sextant.rate_limited_by", &**rl);
    }
    span.record("sextant.revision", d.revision);
}
