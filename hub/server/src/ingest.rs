//! The Report handler: a Report's bags decoded one at a time, straight into Telemetry.

use sextant_attributes::{Bag, Changes, ReportWire};
use sextant_proto::mixer;
use tonic::Status;

use crate::refusal::RequestError;
use crate::state::HubState;

/// Evaluates an encoded `ReportRequest` and answers how many bags were accepted. With the caller's verified
/// SPIFFE ID, the attributes naming the caller of each bag are bound to it (`caller.rs`): a bag claiming
/// another workload is overridden, or with `--caller-identity reject` rejected.
pub fn report(
    state: &HubState,
    bytes: &[u8],
    caller: Option<&str>,
    span: &tracing::Span,
) -> Result<mixer::ReportResponse, Status> {
    let _in_span = span.enter();
    let wire = sextant_attributes::ReportWire::parse(bytes).map_err(|e| {
        // A Report refused whole counts as one invalid report: how many bags it meant to carry is unknown.
        state.metrics.reports("native", "invalid", 1);
        malformed_report(bytes, e).into_status()
    })?;
    if wire.len() > MAX_REPORT_BAGS {
        state
            .metrics
            .reports("native", "invalid", wire.len() as u64);
        return Err(Status::invalid_argument(format!(
            "ReportRequest has {} attribute bags; the most one Report may carry is {MAX_REPORT_BAGS}: send smaller batches",
            wire.len()
        )));
    }
    let mut decoded = DecodedReport::default();
    let mut refused = None;
    state.ingest_each("native", |visit| match caller {
        None => decoded = each_report_bag(&wire, visit),
        Some(identity) => {
            let mode = state.caller_identity();
            let mut bind = |bag: &Bag, changes: Changes<'_>| {
                if crate::caller::bound(bag, identity) {
                    return visit(bag, changes);
                }
                let mut bound = bag.clone();
                match crate::caller::apply(
                    &mut bound,
                    identity,
                    mode,
                    "mixer_report",
                    &state.metrics,
                ) {
                    Ok(()) => visit(&bound, Changes::All),
                    Err(status) => {
                        let (n, _) = refused.get_or_insert((0u64, status.message().to_string()));
                        *n += 1;
                    }
                }
            };
            decoded = each_report_bag(&wire, &mut bind);
        }
    });
    if let Some((n, reason)) = refused {
        decoded.accepted -= n;
        decoded.rejected += n;
        if decoded.errors.len() < 10 {
            decoded.errors.push(format!("{n} bags: {reason}"));
        }
    }
    if decoded.rejected > 0 {
        state.metrics.reports("native", "invalid", decoded.rejected);
    }
    span.record("sextant.accepted", decoded.accepted);
    span.record("sextant.rejected", decoded.rejected);
    Ok(mixer::ReportResponse {
        accepted: decoded.accepted,
        rejected: decoded.rejected,
        errors: decoded.errors,
    })
}

/// Why `bytes` are not a `ReportRequest`. [`sextant_attributes::ReportWire`] reads only the top level and says
/// what was wrong but not in which field; prost, run again on this (refused, so rare) path only, names the
/// field. Its answer is used when it finds the bytes malformed too, which it does for every malformed top
/// level.
fn malformed_report(bytes: &[u8], wire: sextant_attributes::DecodeError) -> RequestError {
    match <mixer::ReportRequest as prost::Message>::decode(bytes) {
        Err(e) => RequestError::malformed("ReportRequest", &e),
        Ok(_) => RequestError::Report(wire),
    }
}

/// The most attribute bags one Report may carry.
pub const MAX_REPORT_BAGS: usize = 10_000;

/// Decodes the bags of a Report: the accepted bags, how many were rejected, and one line per distinct reason.
/// With delta encoding each entry overlays the previous bag, so an entry after a rejected one is rejected too.
pub fn report_bags(req: &mixer::ReportRequest) -> (Vec<Bag>, u64, Vec<String>) {
    let bytes = prost::Message::encode_to_vec(req);
    let mut bags = Vec::with_capacity(req.attributes.len());
    let decoded = match ReportWire::parse(&bytes) {
        Ok(wire) => each_report_bag(&wire, &mut |b: &Bag, _| bags.push(b.clone())),
        Err(e) => DecodedReport {
            accepted: 0,
            rejected: req.attributes.len() as u64,
            errors: vec![e.to_string()],
        },
    };
    (bags, decoded.rejected, decoded.errors)
}

/// What [`each_report_bag`] decoded.
#[derive(Debug, Default)]
pub struct DecodedReport {
    /// Bags accepted (handed to the visitor).
    pub accepted: u64,
    /// Entries rejected.
    pub rejected: u64,
    /// One line per distinct reason (at most ten).
    pub errors: Vec<String>,
}

/// Decodes the bags of a Report one at a time and hands each to `visit` with what its entry changed from the
/// previous bag: with delta encoding each entry overlays the previous bag in place.
pub fn each_report_bag(
    report: &ReportWire<'_>,
    visit: &mut dyn FnMut(&Bag, Changes<'_>),
) -> DecodedReport {
    let delta = report.is_delta();
    let mut out = DecodedReport::default();
    let mut broken_at: Option<usize> = None;
    let mut bags = report.bags();
    let mut i = 0;
    while let Some(next) = bags.next() {
        if let Some(first) = broken_at {
            out.rejected += 1;
            let reason = format!("attributes[{first}..]: follow a rejected delta-encoded entry");
            if !out.errors.contains(&reason) {
                out.errors.push(reason);
            }
        } else {
            match next {
                Ok((bag, changes)) => {
                    visit(bag, changes);
                    out.accepted += 1;
                }
                Err(e) => {
                    out.rejected += 1;
                    if out.errors.len() < 10 {
                        // A malformed entry's error names the entry already.
                        let e = e.to_string();
                        let entry = format!("attributes[{i}]");
                        out.errors.push(if e.contains(&entry) {
                            e
                        } else {
                            format!("{entry}: {e}")
                        });
                    }
                    if delta {
                        broken_at = Some(i + 1);
                    }
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_errors_name_the_field() {
        let e = sextant_attributes::ReportWire::parse(&[0x08, 0x01]).expect_err("wrong wire type");
        assert_eq!(
            malformed_report(&[0x08, 0x01], e).to_string(),
            "malformed ReportRequest.attributes: invalid wire type: Varint (expected LengthDelimited)"
        );
    }
}
