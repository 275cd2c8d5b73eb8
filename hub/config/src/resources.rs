//! The hub's resource kinds (`policy.sextant.dev/v1alpha1`). The doc comments become the CRD schema.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the hub's resources.
pub const GROUP: &str = "policy.sextant.dev";
/// The API version of the hub's resources.
pub const API_VERSION: &str = "policy.sextant.dev/v1alpha1";

/// What the hub says about a resource it reads from the Kubernetes API server (`sextant hub --kubernetes`):
/// the generation it judged and its `Accepted` condition (`True`, or `False` with the reason and the same
/// field-level message `sextant validate` prints).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The `metadata.generation` the conditions are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The `Accepted` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
}

/// Decides whether requests may proceed: rules with CEL conditions, evaluated by the hub on every Check whose
/// attributes match `selector`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sextant.dev",
    version = "v1alpha1",
    kind = "Policy",
    namespaced,
    status = "ResourceStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// CEL boolean expression choosing the requests this policy applies to, e.g.
    /// `destination.service.name == "reviews"`. Absent: every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// What happens when no rule matches: ALLOW (the default) or DENY.
    #[serde(default)]
    pub default_action: DefaultAction,
    /// What a proxy does for these requests when it cannot reach the hub: FAIL_OPEN (the default) or FAIL_CLOSE.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// Evaluate and record decisions, but never deny.
    #[serde(default)]
    pub dry_run: bool,
    /// What an expression of this policy that cannot be evaluated (it read an attribute or map key the request
    /// lacks, or failed at run time) decides: DENY (the request is refused, naming the rule and the error) or
    /// SKIP (the selector does not select, the rule does not match). Unset: DENY for the selector and for DENY
    /// rules, SKIP for ALLOW and AUDIT rules. A rule's own `onError` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// The rules, in order. A matching DENY rule wins over any matching ALLOW rule.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Policy adapters (names of `Adapter` resources in this namespace whose module implements `check`) asked,
    /// in order, about every request this policy applies to that nothing denied yet, before rate limits are
    /// charged. An adapter's denial denies (unless `dryRun`); an adapter that fails, traps or times out lets
    /// the request through under FAIL_OPEN and denies it with UNAVAILABLE (503) under FAIL_CLOSE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<String>,
}

/// The outcome when no rule of a policy matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DefaultAction {
    /// Let the request proceed.
    #[default]
    Allow,
    /// Refuse the request with PERMISSION_DENIED (403).
    Deny,
}

/// What an expression that cannot be evaluated decides.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnError {
    /// Refuse the request, with a message naming the rule and the error.
    Deny,
    /// Treat the expression as false: the selector does not select, the rule does not match.
    Skip,
}

/// Proxy behaviour when the hub is unreachable.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailurePolicy {
    /// Let requests through.
    #[default]
    FailOpen,
    /// Refuse requests.
    FailClose,
}

/// One rule of a policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Name, unique within the policy; used in metrics and logs.
    pub name: String,
    /// CEL boolean condition. Absent: the rule always matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// ALLOW, DENY or AUDIT (record the match, decide nothing).
    pub action: Action,
    /// What this rule's condition decides when it cannot be evaluated: DENY or SKIP (does not match). Unset: the
    /// policy's `onError`, else DENY for DENY rules and SKIP for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// For DENY: the status returned. Default PERMISSION_DENIED, HTTP 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RuleStatus>,
    /// Header operations applied when this rule decides the request (ALLOW: to the request; DENY: to the
    /// direct response), and to the response in both cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderRules>,
}

/// What a matching rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Let the request proceed (unless a DENY rule also matches).
    Allow,
    /// Refuse the request.
    Deny,
    /// Record the match in logs and metrics; no effect on the decision.
    Audit,
}

/// The status a DENY rule answers with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleStatus {
    /// google.rpc code name, e.g. PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND.
    #[serde(default = "default_deny_code")]
    pub code: String,
    /// HTTP status for HTTP front doors (Envoy ext_authz, direct responses). Default: the code's usual status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Message for the caller; the body of the HTTP response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn default_deny_code() -> String {
    "PERMISSION_DENIED".to_string()
}

/// Header operations of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRules {
    /// Changes to the request's headers (or, for DENY, to the direct response's headers).
    #[serde(default)]
    pub request: HeaderEdits,
    /// Changes to the response's headers.
    #[serde(default)]
    pub response: HeaderEdits,
}

/// Set, append and remove headers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderEdits {
    /// Headers to set, replacing existing values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers to append.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Limits the rate of requests that match `selector`, per bucket: the tuple of the values of `dimensions`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sextant.dev",
    version = "v1alpha1",
    kind = "RateLimit",
    namespaced,
    status = "ResourceStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// CEL boolean expression choosing the requests this limit counts. Absent: every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Dimension name to CEL expression; each distinct tuple of values has its own bucket. Empty: one bucket.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// The limit of each bucket.
    pub limit: Limit,
    /// Where the buckets are counted: LOCAL (each hub on its own, the default) or GLOBAL (once across every
    /// hub sharing the hub's Redis; see docs/policies.md for the accuracy bound).
    #[serde(default, skip_serializing_if = "is_default")]
    pub scope: LimitScope,
    /// What a GLOBAL limit decides while Redis cannot answer in time: LOCAL (each hub counts the limit
    /// divided by the live hubs, the default), ALLOW or DENY.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_backend_failure: BackendFailure,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Where a RateLimit's buckets are counted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LimitScope {
    /// In each hub on its own.
    #[default]
    Local,
    /// Once across every hub sharing the hub's global backend (Redis).
    Global,
}

/// What a GLOBAL RateLimit decides while its backend fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackendFailure {
    /// Each hub counts locally, allowing the limit divided by the number of live hubs.
    #[default]
    Local,
    /// Allow every request.
    Allow,
    /// Refuse every request.
    Deny,
}

/// A rate: `requests` per `per`, spaced evenly (GCRA), with `burst` extra requests allowed at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window, e.g. `1s`, `60s`, `1m`, `1h`.
    pub per: String,
    /// Extra requests that may arrive at once. A bucket grants at most `requests + burst` in any window of
    /// length `per`; with burst 0 requests must be spaced `per / requests` apart.
    #[serde(default)]
    pub burst: u32,
}

/// Turns reported attribute bags into telemetry: metrics, log entries and spans computed with CEL, delivered
/// to the named adapters. Evaluated by the hub on every reported bag whose attributes match `selector`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sextant.dev",
    version = "v1alpha1",
    kind = "Telemetry",
    namespaced,
    status = "ResourceStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySpec {
    /// CEL boolean expression choosing the reports this resource applies to, e.g.
    /// `context.protocol != "tcp"`. Absent: every report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Metric instances computed from each report.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// Log entries computed from each report.
    #[serde(default)]
    pub logs: Vec<LogSpec>,
    /// A span computed from each report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces: Option<TraceSpec>,
    /// The `Adapter` resources that receive what this resource produces: `name` (same namespace) or
    /// `namespace/name`. Each adapter receives the kinds it declares it handles.
    #[serde(default)]
    pub adapters: Vec<String>,
}

/// A metric computed from each report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// Metric name, e.g. `istio_requests_total` (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: String,
    /// COUNTER (adds `value`), GAUGE (sets it) or HISTOGRAM (observes it).
    pub kind: MetricKind,
    /// CEL numeric expression. Default for counters: `1`; required for gauges and histograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Label name to CEL expression. A dimension that cannot be evaluated (an absent attribute) is `unknown`.
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// Histogram bucket upper bounds, ascending. Absent: the adapter's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<f64>,
    /// Description, shown as the Prometheus HELP text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// CEL boolean condition on top of the resource's selector. Absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A metric's type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetricKind {
    /// A monotonic sum.
    Counter,
    /// The last value.
    Gauge,
    /// A distribution of observations.
    Histogram,
}

/// A log entry computed from each report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogSpec {
    /// Name of the log stream, e.g. `accesslog`.
    pub name: String,
    /// A severity name (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) or a CEL expression giving one, e.g.
    /// `response.code >= 500 ? "ERROR" : "INFO"`. Default INFO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Field name to CEL expression. A field that cannot be evaluated is left out of the entry.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// CEL boolean condition on top of the resource's selector. Absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// How to build a span from a report. Trace, span and parent ids come from the W3C `traceparent` header, or
/// else from B3 (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, or the single `b3` header). A report
/// without trace context makes no span.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceSpec {
    /// CEL string expression for the span name. Default: `request.method + " " + request.url_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SERVER (default: the span of the destination) or CLIENT.
    #[serde(default)]
    pub kind: TraceSpanKind,
    /// CEL string expression naming the service that recorded the span. Default: `destination.service.name`
    /// for SERVER spans, `source.workload.name` for CLIENT spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// CEL string expression naming the other side. Default: the opposite of `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_service: Option<String>,
    /// CEL timestamp expression for the start. Default: `request.time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// CEL timestamp expression for the end. Default: `response.time`, else start + `response.duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// CEL boolean expression marking the span as failed. Default: `response.code >= 500`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tag name to CEL expression. A tag that cannot be evaluated is left out.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// CEL boolean condition on top of the resource's selector. Absent: always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// The side of a request a span describes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceSpanKind {
    /// The server side.
    #[default]
    Server,
    /// The client side.
    Client,
}

/// A Wasm adapter: a component that receives telemetry batches (and may answer checks), run by the hub with
/// memory, time and network limits.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sextant.dev",
    version = "v1alpha1",
    kind = "Adapter",
    namespaced,
    status = "ResourceStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterSpec {
    /// A path to a `.wasm` component (relative paths are relative to the file that declares the adapter), or
    /// one the hub ships: `builtin:prometheus`, `builtin:zipkin`, `builtin:otlp`, `builtin:logs`.
    pub module: String,
    /// The adapter's own configuration, passed to its init as JSON; the adapter validates it.
    #[serde(default)]
    #[schemars(schema_with = "free_form")]
    pub config: serde_json::Value,
    /// Resource limits.
    #[serde(default)]
    pub limits: AdapterLimits,
    /// Hosts the adapter may send HTTP requests to: `host:port`, `host` (any port) or `*.domain`. Empty: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// A file the adapter's standard output is appended to (the logs adapter writes its lines there).
    /// Absent: the hub's standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
}

/// An adapter's limits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdapterLimits {
    /// Linear memory of an instance, e.g. `64Mi` (default), `512Ki`, `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The longest one call may run, e.g. `2s` (default). A call past it is stopped and the instance replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_per_batch: Option<String>,
    /// Records waiting for the adapter before new ones are dropped (counted). Default 10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u32>,
    /// Records per call. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// The longest a record waits for a batch to fill, e.g. `1s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval: Option<String>,
}

fn free_form(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
