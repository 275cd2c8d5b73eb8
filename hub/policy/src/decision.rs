//! What a Check decides, independent of the front door that carries it.

use std::sync::Arc;
use std::time::Duration;

use hub_config::FailurePolicy;

/// Where a header operation applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderTarget {
    /// The request, before forwarding (or the direct response, for a denial).
    Request,
    /// The response.
    Response,
}

/// What a header operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderAction {
    /// Set, replacing existing values.
    Replace,
    /// Append a value.
    Append,
    /// Remove.
    Remove,
}

/// One header change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderOp {
    /// Request or response.
    pub target: HeaderTarget,
    /// Operation.
    pub action: HeaderAction,
    /// Header name.
    pub name: String,
    /// Value (empty for Remove).
    pub value: String,
}

/// Presence condition of a referenced attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Presence {
    /// The decision holds while it is absent.
    Absent,
    /// The decision holds while it has exactly its current value.
    Exact,
}

/// An attribute (or map key) a decision depended on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Attribute name.
    pub name: &'static str,
    /// Map key, for map attributes read by key.
    pub map_key: Option<String>,
    /// Presence.
    pub presence: Presence,
}

/// A rule that matched, for metrics and audit logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleHit {
    /// `namespace/name` of the policy.
    pub policy: Arc<str>,
    /// Rule name, or `(default)` for a policy's default action.
    pub rule: Arc<str>,
    /// ALLOW, DENY or AUDIT.
    pub action: &'static str,
    /// The policy is in dry-run mode: the hit did not affect the decision.
    pub dry_run: bool,
}

/// Why an expression could not be evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalFailureKind {
    /// It read an attribute or map key that is absent.
    Absent,
    /// Any other runtime error (a type mismatch, a bad regex, …).
    Error,
}

/// An expression that failed at run time; by the documented rule it did not match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalFailure {
    /// `namespace/name` of the resource.
    pub resource: Arc<str>,
    /// The field, e.g. `rules[no-guests].when`.
    pub field: String,
    /// Kind.
    pub kind: EvalFailureKind,
    /// cel's message.
    pub message: String,
}

/// The outcome of an explicitly requested quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaGrant {
    /// Units granted.
    pub granted: u32,
    /// When nothing was granted: time until the units would be.
    pub retry_after: Option<Duration>,
    /// Why nothing could be allocated (unknown quota name), if so.
    pub error: Option<String>,
}

/// The answer to one Check.
#[derive(Clone, Debug)]
pub struct Decision {
    /// google.rpc code: 0 to proceed.
    pub code: i32,
    /// Message for the caller (empty when OK).
    pub message: String,
    /// HTTP status for HTTP front doors (200 when OK).
    pub http_status: u16,
    /// Header changes.
    pub headers: Vec<HeaderOp>,
    /// Whether the answer may be cached by the proxy (no volatile attribute read, no rate limit applied).
    pub cacheable: bool,
    /// Cache lifetime when cacheable.
    pub valid_duration: Duration,
    /// Cache use count when cacheable.
    pub valid_use_count: i32,
    /// What the decision depended on.
    pub referenced: Vec<Reference>,
    /// Config revision that decided.
    pub revision: u64,
    /// Strictest failure policy among the policies that applied.
    pub failure_policy: Option<FailurePolicy>,
    /// For RESOURCE_EXHAUSTED: time until a request would be allowed.
    pub retry_after: Option<Duration>,
    /// Results of explicitly requested quotas, by requested name.
    pub quotas: Vec<(String, QuotaGrant)>,
    /// Rules that matched.
    pub hits: Vec<RuleHit>,
    /// The RateLimit that refused the request, if one did.
    pub rate_limited_by: Option<Arc<str>>,
    /// Expressions that failed at run time.
    pub failures: Vec<EvalFailure>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.code == 0
    }
}
