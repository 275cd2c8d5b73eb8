//! The hub filter (`sextant.filters.http.mixer`): which cluster is the hub, the attributes the proxy adds to
//! every request, whether requests are checked and reported, and the limits of both (defaults in
//! `proto/sextant/filters/http/mixer/v1/mixer.proto`).

use std::sync::Arc;
use std::time::Duration;

use sextant_attributes::Bag;
use sextant_proto::google::protobuf::Any;
use sextant_proto::mixer::FailurePolicy;
use sextant_proto::mixer_filter::Mixer;

use crate::error::{Partial, at, within};

/// The default longest wait for a Check answer.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_millis(200);
/// The default time a cached answer stands in for an unreachable hub after its validity ended.
pub const DEFAULT_STALE_TTL: Duration = Duration::from_secs(60);
/// The default entries per Report call.
pub const DEFAULT_BATCH_ENTRIES: usize = 100;
/// The default longest wait of a finished request before it is reported.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// The default number of finished requests held for reporting.
pub const DEFAULT_BUFFER_ENTRIES: usize = 10_000;
/// The most entries per Report call or held for reporting that a configuration may ask for.
pub const MAX_ENTRIES: usize = 1_000_000;

/// What happens without the hub's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Forward the request (counted as bypassed).
    Open,
    /// Answer 503.
    Close,
}

/// One hub filter's settings.
#[derive(Debug, Clone)]
pub struct HubFilter {
    /// The hub's cluster.
    pub cluster: String,
    /// Attributes added to every request's bag.
    pub attributes: Arc<Bag>,
    /// Whether requests are checked before they are forwarded.
    pub check: bool,
    /// Whether finished requests are reported.
    pub report: bool,
    /// The longest wait for a Check answer.
    pub check_timeout: Duration,
    /// For a request no earlier answer covers, when the hub does not answer.
    pub on_failure: OnFailure,
    /// How long after its validity a cached answer still stands in for an unreachable hub.
    pub stale_ttl: Duration,
    /// Entries per Report call.
    pub batch_entries: usize,
    /// The longest a finished request waits to be reported.
    pub flush_interval: Duration,
    /// Finished requests held for reporting; more are dropped and counted.
    pub buffer_entries: usize,
}

/// Reads a hub filter's `typed_config`.
pub(crate) fn hub_filter(config: &Any) -> Partial<HubFilter> {
    let m: Mixer = crate::decode_payload(config)?;
    if m.cluster.is_empty() {
        return at("cluster", "the hub's cluster is not named");
    }
    let attributes = m.attributes.unwrap_or_default();
    // The decoder refuses a bag as a whole: decode each attribute alone first, to name the one refused.
    let mut names: Vec<&String> = attributes.values.keys().collect();
    names.sort();
    for name in names {
        let one = sextant_proto::mixer::Attributes {
            values: [(name.clone(), attributes.values[name].clone())].into(),
        };
        if let Err(e) = sextant_attributes::from_plain(one) {
            return at(format!("attributes.values[{name:?}]"), e.to_string());
        }
    }
    let bag = match sextant_attributes::from_plain(attributes) {
        Ok(b) => b,
        Err(e) => return at("attributes", e.to_string()),
    };
    let duration =
        |field: &str, d: Option<&sextant_proto::google::protobuf::Duration>, default| match d {
            Some(d) => within(field, crate::duration(d)),
            None => Ok(default),
        };
    let check_timeout = duration(
        "check_timeout",
        m.check_timeout.as_ref(),
        DEFAULT_CHECK_TIMEOUT,
    )?;
    if check_timeout.is_zero() || check_timeout > Duration::from_secs(60) {
        return at(
            "check_timeout",
            format!("{check_timeout:?} is not within (0, 60s]"),
        );
    }
    let stale_ttl = duration("stale_ttl", m.stale_ttl.as_ref(), DEFAULT_STALE_TTL)?;
    let flush_interval = duration(
        "report_flush_interval",
        m.report_flush_interval.as_ref(),
        DEFAULT_FLUSH_INTERVAL,
    )?;
    if flush_interval.is_zero() {
        return at("report_flush_interval", "must be above zero");
    }
    let count = |field: &str, n: u32, default: usize| -> Partial<usize> {
        let n = if n == 0 { default } else { n as usize };
        if n > MAX_ENTRIES {
            return at(field, format!("{n} is above the limit of {MAX_ENTRIES}"));
        }
        Ok(n)
    };
    let batch_entries = count(
        "report_batch_entries",
        m.report_batch_entries,
        DEFAULT_BATCH_ENTRIES,
    )?;
    let buffer_entries = count(
        "report_buffer_entries",
        m.report_buffer_entries,
        DEFAULT_BUFFER_ENTRIES,
    )?;
    let on_failure = match FailurePolicy::try_from(m.failure_policy) {
        Ok(FailurePolicy::FailClose) => OnFailure::Close,
        Ok(_) => OnFailure::Open,
        Err(_) => {
            return at(
                "failure_policy",
                format!("{} is not a failure policy", m.failure_policy),
            );
        }
    };
    Ok(HubFilter {
        cluster: m.cluster,
        attributes: Arc::new(bag),
        check: m.check,
        report: m.report,
        check_timeout,
        on_failure,
        stale_ttl,
        batch_entries,
        flush_interval,
        buffer_entries: buffer_entries.max(batch_entries),
    })
}
