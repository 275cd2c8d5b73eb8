//! The hub's own metrics, exposed in Prometheus text format on the admin port's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use hub_policy::{Decision, EvalFailureKind};

use crate::failure::LoadFailure;

/// Most config errors exported as `sextant_hub_config_error` series at once.
const MAX_ERROR_SERIES: usize = 50;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    front_door: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    front_door: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HitLabels {
    policy: String,
    rule: String,
    action: &'static str,
    dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    ratelimit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    resource: String,
    field: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnreadLabels {
    group: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabels {
    door: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    door: &'static str,
}

/// The admission gate's metrics (see `shed.rs`): refusals by door and calls in flight.
#[derive(Clone, Debug, Default)]
pub struct GateMetrics {
    shed: Family<ShedLabels, Counter>,
    in_flight: Gauge,
}

impl GateMetrics {
    /// Counts a call of `door` refused because the hub was full.
    pub fn shed(&self, door: &'static str) {
        self.shed.get_or_create(&ShedLabels { door }).inc();
    }

    /// Adds `delta` to the calls in flight.
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    file: String,
    line: String,
    field: String,
}

/// Every metric the hub exports about itself.
pub struct Metrics {
    registry: Registry,
    checks: Family<CheckLabels, Counter>,
    duration: Family<DoorLabels, Histogram, fn() -> Histogram>,
    hits: Family<HitLabels, Counter>,
    rate_limited: Family<RateLimitLabels, Counter>,
    eval_failures: Family<FailureLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    revision: Gauge,
    config_errors: Family<ErrorLabels, Gauge>,
    unread: Family<UnreadLabels, Gauge>,
    buckets: Family<RateLimitLabels, Gauge>,
    buckets_evicted: Family<RateLimitLabels, Gauge>,
    window_evicted: Family<KindLabels, Gauge>,
    buckets_overflow: Family<RateLimitLabels, Gauge>,
    dedup_evicted: Counter,
    reports: Family<CheckLabels, Counter>,
    records: Family<KindLabels, Counter>,
    telemetry_failures: Counter,
    untraced: Counter,
    segments_dropped: Counter,
    gate: GateMetrics,
    caller_mismatches: Family<CallerLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 10 µs to ~80 ms.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        Self::with_extra(|_| {})
    }

    /// Registers every family, and lets `extra` register more (the adapter runtime's).
    pub fn with_extra(extra: impl FnOnce(&mut Registry)) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            checks: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            hits: Family::default(),
            rate_limited: Family::default(),
            eval_failures: Family::default(),
            reloads: Family::default(),
            revision: Gauge::default(),
            config_errors: Family::default(),
            unread: Family::default(),
            buckets: Family::default(),
            buckets_evicted: Family::default(),
            window_evicted: Family::default(),
            buckets_overflow: Family::default(),
            dedup_evicted: Counter::default(),
            reports: Family::default(),
            records: Family::default(),
            telemetry_failures: Counter::default(),
            untraced: Counter::default(),
            segments_dropped: Counter::default(),
            gate: GateMetrics::default(),
            caller_mismatches: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sextant_hub_checks",
            "Check decisions by front door and result",
            m.checks.clone(),
        );
        registry.register(
            "sextant_hub_check_duration_seconds",
            "Time to decide a Check, decoding included",
            m.duration.clone(),
        );
        registry.register(
            "sextant_hub_rule_hits",
            "Policy rules that matched, by policy, rule and action",
            m.hits.clone(),
        );
        registry.register(
            "sextant_hub_ratelimit_denials",
            "Requests refused by a RateLimit",
            m.rate_limited.clone(),
        );
        registry.register(
            "sextant_hub_eval_failures",
            "CEL expressions that failed at run time (treated as not matching)",
            m.eval_failures.clone(),
        );
        registry.register(
            "sextant_hub_config_reloads",
            "Configuration reload attempts by result (success; partial: invalid Policy/RateLimit/Telemetry \
             resources kept at their last good version or left out, the rest changed; failure: the change was \
             refused whole)",
            m.reloads.clone(),
        );
        registry.register(
            "sextant_hub_config_revision",
            "Revision of the configuration serving Checks",
            m.revision.clone(),
        );
        registry.register(
            "sextant_hub_config_error",
            "1 per error of the last rejected configuration (cleared by a good one)",
            m.config_errors.clone(),
        );
        registry.register(
            "sextant_hub_config_unread_documents",
            "Documents of Istio API groups and kinds neither the hub nor pilot reads, in the configuration \
             loaded last, by group and kind (_other beyond the known ones)",
            m.unread.clone(),
        );
        registry.register(
            "sextant_hub_ratelimit_buckets",
            "Rate-limit buckets held in memory",
            m.buckets.clone(),
        );
        registry.register(
            "sextant_hub_window_evicted",
            "What the query API's telemetry window did not keep since start, by kind (edges, decisions, \
             decision_counts, rate_limits, traces, spans): its memory is fixed",
            m.window_evicted.clone(),
        );
        registry.register(
            "sextant_hub_ratelimit_buckets_evicted",
            "Idle rate-limit buckets dropped to make room for new keys (each was full again)",
            m.buckets_evicted.clone(),
        );
        registry.register(
            "sextant_hub_ratelimit_overflow",
            "Requests of new keys charged to a RateLimit's shared overflow bucket (or refused) because all its buckets were in use",
            m.buckets_overflow.clone(),
        );
        registry.register(
            "sextant_hub_dedup_evictions",
            "Deduplication entries dropped before their time to stay within capacity",
            m.dedup_evicted.clone(),
        );
        registry.register(
            "sextant_hub_reports",
            "Reported attribute bags by front door and result (accepted, invalid, unavailable)",
            m.reports.clone(),
        );
        registry.register(
            "sextant_hub_telemetry_records",
            "Records Telemetry rules made for adapters, by kind (metric, log, span; once per adapter)",
            m.records.clone(),
        );
        registry.register(
            "sextant_hub_telemetry_eval_failures",
            "Metric values or span fields that could not be computed (the record is skipped)",
            m.telemetry_failures.clone(),
        );
        registry.register(
            "sextant_hub_telemetry_untraced",
            "Reports without trace context (or not sampled) for a Telemetry with traces",
            m.untraced.clone(),
        );
        registry.register(
            "sextant_hub_telemetry_segments_dropped",
            "Batch segments an adapter's queue refused (see sextant_hub_adapter_dropped for records)",
            m.segments_dropped.clone(),
        );
        registry.register(
            "sextant_hub_shed",
            "Calls refused with RESOURCE_EXHAUSTED because --max-in-flight calls were in flight, by door \
             (mixer_check, mixer_report, ext_authz, ratelimit)",
            m.gate.shed.clone(),
        );
        registry.register(
            "sextant_hub_in_flight",
            "Gated calls (Checks, Reports, ext_authz, rate-limit) admitted and not yet answered",
            m.gate.in_flight.clone(),
        );
        registry.register(
            "sextant_hub_caller_mismatches",
            "Calls whose attributes named another workload than their client certificate, by door and \
             action (overridden, rejected; --caller-identity)",
            m.caller_mismatches.clone(),
        );
        extra(&mut registry);
        Metrics { registry, ..m }
    }

    /// Counts `n` reported bags of `front_door` with `result`.
    pub fn reports(&self, front_door: &'static str, result: &'static str, n: u64) {
        self.reports
            .get_or_create(&CheckLabels { front_door, result })
            .inc_by(n);
    }

    /// Counts what Telemetry rules produced.
    pub fn telemetry(&self, s: &hub_telemetry::RecordStats, segments_dropped: u64) {
        for (kind, n) in [("metric", s.metrics), ("log", s.logs), ("span", s.spans)] {
            if n > 0 {
                self.records.get_or_create(&KindLabels { kind }).inc_by(n);
            }
        }
        self.telemetry_failures.inc_by(s.failures);
        self.untraced.inc_by(s.untraced);
        self.segments_dropped.inc_by(segments_dropped);
    }

    /// Records one decision made through `front_door`.
    pub fn decision(&self, front_door: &'static str, d: &Decision, seconds: f64) {
        let result = if d.allowed() {
            "ok"
        } else if d.rate_limited_by.is_some() {
            "rate_limited"
        } else {
            "denied"
        };
        self.checks
            .get_or_create(&CheckLabels { front_door, result })
            .inc();
        self.duration
            .get_or_create(&DoorLabels { front_door })
            .observe(seconds);
        for h in &d.hits {
            let labels = HitLabels {
                policy: h.policy.to_string(),
                rule: h.rule.to_string(),
                action: h.action,
                dry_run: if h.dry_run { "true" } else { "false" },
            };
            self.hits.get_or_create(&labels).inc();
        }
        if let Some(rl) = &d.rate_limited_by {
            self.rate_limited
                .get_or_create(&RateLimitLabels {
                    ratelimit: rl.to_string(),
                })
                .inc();
        }
        self.failures(&d.failures);
    }

    /// Records runtime expression failures.
    pub fn failures(&self, failures: &[hub_policy::EvalFailure]) {
        for f in failures {
            let kind = match f.kind {
                EvalFailureKind::Absent => "absent",
                EvalFailureKind::Error => "error",
            };
            self.eval_failures
                .get_or_create(&FailureLabels {
                    resource: f.resource.to_string(),
                    field: f.field.clone(),
                    kind,
                })
                .inc();
        }
    }

    /// Records a rate-limit-service decision.
    pub fn rate_limit(&self, over: Option<&str>, seconds: f64) {
        let result = if over.is_some() { "rate_limited" } else { "ok" };
        self.checks
            .get_or_create(&CheckLabels {
                front_door: "envoy_rls",
                result,
            })
            .inc();
        self.duration
            .get_or_create(&DoorLabels {
                front_door: "envoy_rls",
            })
            .observe(seconds);
        if let Some(rl) = over {
            self.rate_limited
                .get_or_create(&RateLimitLabels {
                    ratelimit: rl.to_string(),
                })
                .inc();
        }
    }

    /// Records a request refused before evaluation (malformed attributes, no configuration).
    pub fn rejected(&self, front_door: &'static str, result: &'static str) {
        self.checks
            .get_or_create(&CheckLabels { front_door, result })
            .inc();
    }

    pub(crate) fn reload_succeeded(&self, revision: u64) {
        self.reloads
            .get_or_create(&ResultLabels { result: "success" })
            .inc();
        self.revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
        self.config_errors.clear();
    }

    /// The documents of Istio kinds the last load did not read.
    pub(crate) fn unread(&self, unread: &[hub_config::istio::Unread]) {
        self.unread.clear();
        for u in unread {
            let labels = UnreadLabels {
                group: u.group_label,
                kind: u.kind_label,
            };
            self.unread
                .get_or_create(&labels)
                .inc_by(i64::try_from(u.documents).unwrap_or(i64::MAX));
        }
    }

    /// A reload that went on without the resources at fault (or with their last good versions).
    pub(crate) fn reload_partial(&self, revision: u64, failure: &LoadFailure) {
        self.reload_failed(failure);
        self.revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    pub(crate) fn reload_failed(&self, failure: &LoadFailure) {
        let result = if failure.partial {
            "partial"
        } else {
            "failure"
        };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.config_errors.clear();
        for (file, line, field) in failure.locations.iter().take(MAX_ERROR_SERIES) {
            self.config_errors
                .get_or_create(&ErrorLabels {
                    file: file.clone(),
                    line: line.to_string(),
                    field: field.clone(),
                })
                .set(1);
        }
    }

    pub(crate) fn rate_limit_buckets(&self, stats: &[hub_quota::LimiterStats]) {
        self.buckets.clear();
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for s in stats {
            let labels = RateLimitLabels {
                ratelimit: s.name.clone(),
            };
            self.buckets
                .get_or_create(&labels)
                .set(gauge(s.keys as u64));
            self.buckets_evicted
                .get_or_create(&labels)
                .set(gauge(s.evicted));
            self.buckets_overflow
                .get_or_create(&labels)
                .set(gauge(s.overflowed));
        }
    }

    pub(crate) fn window(&self, e: &hub_window::Evictions) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (kind, n) in [
            ("edges", e.edges),
            ("decisions", e.decisions),
            ("decision_counts", e.decision_counts),
            ("rate_limits", e.rate_limits),
            ("traces", e.traces),
            ("spans", e.spans),
        ] {
            self.window_evicted
                .get_or_create(&KindLabels { kind })
                .set(gauge(n));
        }
    }

    pub(crate) fn dedup_evicted(&self, n: u64) {
        self.dedup_evicted.inc_by(n);
    }

    /// Counts a call of `door` that claimed another workload than its certificate, and what it got.
    pub(crate) fn caller_mismatch(&self, door: &'static str, action: &'static str) {
        self.caller_mismatches
            .get_or_create(&CallerLabels { door, action })
            .inc();
    }

    /// The admission gate's metrics, to count with.
    pub fn gate(&self) -> GateMetrics {
        self.gate.clone()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
