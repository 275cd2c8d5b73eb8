//! The hub's resource kinds (`policy.sextant.dev/v1alpha1`). The doc comments become the CRD schema.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the hub's resources.
pub const GROUP: &str = "policy.sextant.dev";
/// The API version of the hub's resources.
pub const API_VERSION: &str = "policy.sextant.dev/v1alpha1";

/// Decides whether requests may proceed: rules with CEL conditions, evaluated by the hub on every Check whose
/// attributes match `selector`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "policy.sextant.dev",
    version = "v1alpha1",
    kind = "Policy",
    namespaced
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
    /// The rules, in order. A matching DENY rule wins over any matching ALLOW rule.
    #[serde(default)]
    pub rules: Vec<Rule>,
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
    namespaced
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
