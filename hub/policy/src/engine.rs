//! Check evaluation.
//!
//! 1. The policy index names the candidate policies for the bag; only their selectors run.
//! 2. In each applicable policy, AUDIT rules are recorded, then the first matching DENY rule decides; failing
//!    that the first matching ALLOW rule; failing that the default action. A dry-run policy is evaluated and
//!    recorded but never denies. The first denying policy ends evaluation.
//! 3. If the request is still allowed, the policy adapters of the applicable policies are asked in order
//!    ([`PolicyAdapters`]); the first denial decides. An adapter that fails follows its policy's failure
//!    policy: FAIL_OPEN lets the request through, FAIL_CLOSE denies it with UNAVAILABLE (503).
//! 4. If the request is still allowed, every RateLimit whose selector matches takes one unit from the bucket
//!    named by its dimensions; a refusal answers RESOURCE_EXHAUSTED (429) with the time until a retry would
//!    succeed. Quotas the client asked for by name take their `amount` instead.
//!
//! Runtime errors: an expression that fails at run time is reported in [`Decision::failures`] as `Absent` (it
//! read a missing attribute or map key) or `Error`, and decides what its `onError` says: DENY refuses the
//! request naming the policy, the rule (or selector) and the error; SKIP makes it false. Unset, selectors and
//! DENY rules deny, ALLOW and AUDIT rules skip. A RateLimit selector that fails does not select; a dimension
//! that fails evaluates to one shared "absent" value, so clients cannot escape a per-key limit by omitting
//! the key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use cel::objects::Value as CelValue;
use cel::{Context, ExecutionError};
use hub_config::{Action, DefaultAction, FailurePolicy, HeaderEdits, OnError};
use hub_quota::{LimitSpec, Outcome};
use sextant_attributes::{AttrId, AttrType, Bag, VOCABULARY, Value};
use tracing::Instrument;

use crate::codes;
use crate::decision::{
    Decision, EvalFailure, EvalFailureKind, HeaderAction, HeaderOp, HeaderTarget, Presence,
    QuotaGrant, Reference, RuleHit,
};
use crate::expr::{ENV, Expr};
use crate::resolve::{BagResolver, ReadSet};
use crate::snapshot::{CompiledPolicy, CompiledRule, Snapshot};

/// A quota the client asks for by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaRequest {
    /// RateLimit name: `name` or `namespace/name`.
    pub name: String,
    /// Units wanted (at least 1).
    pub amount: u32,
    /// Grant what is available instead of all or nothing.
    pub best_effort: bool,
}

/// A policy adapter's answer about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterVerdict {
    /// Let the request through.
    pub allow: bool,
    /// HTTP status of a denial (0: 403).
    pub http_status: u16,
    /// Why, for the caller.
    pub message: String,
    /// How long the answer holds for requests with the same (non-volatile) attributes; zero: not cacheable.
    pub valid_for: Duration,
}

/// The future of one [`PolicyAdapters::check`].
pub type VerdictFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<AdapterVerdict, String>> + Send + 'a>,
>;

/// Asks policy adapters about requests; implemented by the hub over its adapter runtime.
pub trait PolicyAdapters: Sync {
    /// Asks the adapter `key` (`namespace/name`) about `bag`. An error (the adapter is not running, trapped,
    /// timed out, answered an error) is handled by the policy's failure policy.
    fn check<'a>(&'a self, key: &'a str, bag: &'a Bag) -> VerdictFuture<'a>;
}

/// No adapter runtime: every adapter is unavailable.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdapters;

impl PolicyAdapters for NoAdapters {
    fn check<'a>(&'a self, key: &'a str, _bag: &'a Bag) -> VerdictFuture<'a> {
        Box::pin(std::future::ready(Err(format!(
            "no adapter runtime to run {key}"
        ))))
    }
}

/// The rule name recorded when a policy's default action decides.
static DEFAULT_RULE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("(default)"));

/// The rule name recorded when a policy's selector could not be evaluated and denied.
static SELECTOR_RULE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("(selector)"));

/// The dimension value used when a dimension cannot be evaluated.
pub const ABSENT_DIMENSION: &str = "\u{0}absent";

/// Why a policy denied.
enum Denial<'s> {
    /// A DENY rule matched.
    Rule(&'s CompiledRule),
    /// No rule matched and the default action is DENY.
    Default,
    /// The selector (no rule) or a rule could not be evaluated, and its `onError` is DENY.
    Error {
        rule: Option<&'s CompiledRule>,
        message: String,
    },
}

/// What a condition came to.
enum Match {
    Yes,
    No,
    /// It could not be evaluated (the failure is the last one recorded).
    Failed,
}

/// A hit of `rule` of `p` with `action`.
fn hit(p: &CompiledPolicy, rule: &Arc<str>, action: &'static str) -> RuleHit {
    RuleHit {
        policy: p.name.clone(),
        rule: rule.clone(),
        action,
        dry_run: p.dry_run,
    }
}

/// Everything decided synchronously, before any quota is taken.
#[derive(Default)]
struct Evaluation<'s> {
    failures: Vec<EvalFailure>,
    evaluated: Vec<&'s Expr>,
    hits: Vec<RuleHit>,
    denied: Option<(&'s CompiledPolicy, Denial<'s>)>,
    allow_rules: Vec<&'s CompiledRule>,
    failure_policy: Option<FailurePolicy>,
    /// (rate limit index, bucket key) to charge one unit each.
    charges: Vec<(usize, Vec<String>)>,
    /// (request index, rate limit index or error, bucket key).
    explicit: Vec<(usize, Result<usize, String>, Vec<String>)>,
    /// (policy, adapter key) to ask, in order, while nothing denies.
    consults: Vec<(&'s CompiledPolicy, &'s Arc<str>)>,
    /// Filled by the adapter phase: (code, HTTP status, message) of a denial or a FAIL_CLOSE failure.
    adapter_denied: Option<(i32, u16, String)>,
    /// Filled by the adapter phase: the shortest validity an adapter gave, if one was asked.
    adapter_valid_for: Option<Duration>,
    /// Filled by the quota phase: the RateLimit that refused and the wait it named.
    refused: Option<(Arc<str>, Duration)>,
    /// Filled by the quota phase: the explicit quotas' outcomes, by requested name.
    grants: Vec<(String, QuotaGrant)>,
    /// Whether the caller asked for a lease of the charged buckets (a proxy's quota prefetch).
    leasing: bool,
    /// Filled by the quota phase when leasing: the requests every charged bucket granted, and the time they
    /// represent at the slowest of those limits' rates.
    lease: Option<(u32, Duration)>,
}

impl<'s> Evaluation<'s> {
    fn eval(
        &mut self,
        ctx: &Context<'_, '_>,
        e: &'s Expr,
        resource: &Arc<str>,
        field: impl FnOnce() -> String,
    ) -> Option<CelValue> {
        self.evaluated.push(e);
        match e.execute(ctx) {
            Ok(v) => Some(v),
            Err(err) => {
                let kind = match err {
                    ExecutionError::NoSuchKey(_) => EvalFailureKind::Absent,
                    _ => EvalFailureKind::Error,
                };
                self.failures.push(EvalFailure {
                    resource: resource.clone(),
                    field: field(),
                    kind,
                    message: err.to_string(),
                });
                None
            }
        }
    }

    /// Evaluates a condition (None holds always); a failure is recorded and returned.
    fn condition(
        &mut self,
        ctx: &Context<'_, '_>,
        e: Option<&'s Expr>,
        resource: &Arc<str>,
        field: impl Fn() -> String,
    ) -> Match {
        let Some(e) = e else { return Match::Yes };
        // The field name is only built when something fails: this runs for every rule of every request.
        match self.eval(ctx, e, resource, &field) {
            Some(CelValue::Bool(true)) => Match::Yes,
            Some(CelValue::Bool(false)) => Match::No,
            Some(other) => {
                self.failures.push(EvalFailure {
                    resource: resource.clone(),
                    field: field(),
                    kind: EvalFailureKind::Error,
                    message: format!("expected a bool, got {other:?}"),
                });
                Match::Failed
            }
            None => Match::Failed,
        }
    }

    /// The text of the failure [`Match::Failed`] stands for.
    fn last_failure(&self) -> &str {
        self.failures.last().map_or("", |f| f.message.as_str())
    }

    /// Whether a RateLimit's selector selects; one that cannot be evaluated does not (the failure is counted).
    fn selects(&mut self, ctx: &Context<'_, '_>, e: Option<&'s Expr>, resource: &Arc<str>) -> bool {
        matches!(
            self.condition(ctx, e, resource, || "selector".into()),
            Match::Yes
        )
    }

    /// What rule `r` of `p` comes to: whether it matches, or the denial its failure makes under `onError: DENY`.
    fn rule(
        &mut self,
        ctx: &Context<'_, '_>,
        p: &CompiledPolicy,
        r: &'s CompiledRule,
    ) -> Result<bool, Denial<'s>> {
        match self.condition(ctx, r.when.as_ref(), &p.name, || {
            format!("rules[{}].when", r.name)
        }) {
            Match::Yes => Ok(true),
            Match::No => Ok(false),
            Match::Failed if r.on_error == OnError::Skip => Ok(false),
            Match::Failed => Err(Denial::Error {
                rule: Some(r),
                message: format!(
                    "policy {} rule {} could not be evaluated ({}); denied by its onError: DENY",
                    p.name,
                    r.name,
                    self.last_failure()
                ),
            }),
        }
    }

    /// The first rule of `p` with `action` whose condition holds, or the first failure that denies.
    fn first_match(
        &mut self,
        ctx: &Context<'_, '_>,
        p: &'s CompiledPolicy,
        action: Action,
    ) -> Result<Option<&'s CompiledRule>, Denial<'s>> {
        for r in p.rules.iter().filter(|r| r.action == action) {
            if self.rule(ctx, p, r)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    fn policy(&mut self, ctx: &Context<'_, '_>, p: &'s CompiledPolicy) {
        let denied = match self.condition(ctx, p.selector.as_ref(), &p.name, || "selector".into()) {
            Match::No => return,
            Match::Failed if p.selector_on_error == OnError::Skip => return,
            Match::Failed => Some(Denial::Error {
                rule: None,
                message: format!(
                    "policy {} could not tell whether it applies: its selector could not be evaluated ({}); \
                     denied by its onError: DENY",
                    p.name,
                    self.last_failure()
                ),
            }),
            Match::Yes => None,
        };
        self.failure_policy = self.failure_policy.max(Some(p.failure_policy));
        let denied = denied.or_else(|| self.rules(ctx, p));
        match &denied {
            Some(Denial::Rule(r)) => self.hits.push(hit(p, &r.name, "DENY")),
            Some(Denial::Default) => self.hits.push(hit(p, &DEFAULT_RULE, "DENY")),
            Some(Denial::Error { rule, .. }) => {
                self.hits
                    .push(hit(p, rule.map_or(&*SELECTOR_RULE, |r| &r.name), "DENY"))
            }
            None => {}
        }
        if let Some(denial) = denied
            && !p.dry_run
            && self.denied.is_none()
        {
            self.denied = Some((p, denial));
        }
        if self.denied.is_none() {
            self.consults.extend(p.adapters.iter().map(|a| (p, a)));
        }
    }

    /// The rules of an applicable policy: AUDIT rules recorded, then the first DENY, else ALLOW, else default.
    fn rules(&mut self, ctx: &Context<'_, '_>, p: &'s CompiledPolicy) -> Option<Denial<'s>> {
        for r in p.rules.iter().filter(|r| r.action == Action::Audit) {
            match self.rule(ctx, p, r) {
                Ok(true) => self.hits.push(hit(p, &r.name, "AUDIT")),
                Ok(false) => {}
                Err(denial) => return Some(denial),
            }
        }
        match self.first_match(ctx, p, Action::Deny) {
            Ok(Some(r)) => return Some(Denial::Rule(r)),
            Ok(None) => {}
            Err(denial) => return Some(denial),
        }
        match self.first_match(ctx, p, Action::Allow) {
            Ok(Some(r)) => {
                self.hits.push(hit(p, &r.name, "ALLOW"));
                if !p.dry_run {
                    self.allow_rules.push(r);
                }
                None
            }
            Ok(None) if p.default_action == DefaultAction::Deny => Some(Denial::Default),
            Ok(None) => {
                self.hits.push(hit(p, &DEFAULT_RULE, "ALLOW"));
                None
            }
            Err(denial) => Some(denial),
        }
    }

    /// Records what adapter `key` of policy `p` answered.
    fn adapter_answered(
        &mut self,
        p: &CompiledPolicy,
        key: &Arc<str>,
        answer: Result<AdapterVerdict, String>,
    ) {
        let rule: Arc<str> = Arc::from(format!("adapter:{key}"));
        let adapter_hit = |action| hit(p, &rule, action);
        match answer {
            Ok(v) => {
                self.adapter_valid_for = Some(
                    self.adapter_valid_for
                        .map_or(v.valid_for, |d| d.min(v.valid_for)),
                );
                if v.allow {
                    self.hits.push(adapter_hit("ALLOW"));
                    return;
                }
                self.hits.push(adapter_hit("DENY"));
                if !p.dry_run {
                    let http = if v.http_status == 0 {
                        403
                    } else {
                        v.http_status
                    };
                    let message = if v.message.is_empty() {
                        format!("denied by adapter {key} of policy {}", p.name)
                    } else {
                        v.message
                    };
                    self.adapter_denied = Some((codes::for_http(http), http, message));
                }
            }
            Err(message) => {
                self.adapter_valid_for = Some(Duration::ZERO);
                self.failures.push(EvalFailure {
                    resource: p.name.clone(),
                    field: format!("adapters[{key}]"),
                    kind: EvalFailureKind::Error,
                    message: message.clone(),
                });
                if p.failure_policy == FailurePolicy::FailClose && !p.dry_run {
                    self.hits.push(adapter_hit("DENY"));
                    self.adapter_denied = Some((
                        codes::UNAVAILABLE,
                        503,
                        format!("policy {} could not ask adapter {key}: {message}", p.name),
                    ));
                }
            }
        }
    }

    /// Queues a charge for every RateLimit whose selector matches, except those `skip` names.
    fn rate_limits(
        &mut self,
        ctx: &Context<'_, '_>,
        snap: &'s Snapshot,
        bag: &Bag,
        reads: &ReadSet,
        skip: impl Fn(usize) -> bool,
    ) {
        for i in snap.rate_limit_index.candidates(bag, reads) {
            let (rl, _) = &snap.rate_limits[i];
            if !skip(i) && self.selects(ctx, rl.selector.as_ref(), &rl.name) {
                let key = self.bucket(ctx, &rl.dimensions, &rl.name);
                self.charges.push((i, key));
            }
        }
    }

    fn bucket(
        &mut self,
        ctx: &Context<'_, '_>,
        dims: &'s [(String, Expr)],
        resource: &Arc<str>,
    ) -> Vec<String> {
        dims.iter()
            .map(
                |(name, e)| match self.eval(ctx, e, resource, || format!("dimensions.{name}")) {
                    Some(v) => dimension_key(dimension_text(&v)),
                    None => ABSENT_DIMENSION.to_string(),
                },
            )
            .collect()
    }
}

/// The most bytes a dimension value takes in a bucket's key; longer values are replaced by their digest.
pub const MAX_DIMENSION_BYTES: usize = 256;

/// A dimension value as held in a bucket's key: itself up to [`MAX_DIMENSION_BYTES`], beyond that its
/// SHA-256 (distinct values stay distinct buckets, but a client cannot make the hub hold its long strings:
/// a RateLimit's keys take at most `--max-rate-limit-keys` × dimensions × this many bytes).
fn dimension_key(text: String) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    if text.len() <= MAX_DIMENSION_BYTES {
        return text;
    }
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut key = String::with_capacity(8 + 2 * digest.len());
    key.push_str("\u{0}sha256:");
    for b in digest {
        let _ = write!(key, "{b:02x}");
    }
    key
}

fn dimension_text(v: &CelValue) -> String {
    match v {
        CelValue::String(s) => s.to_string(),
        CelValue::Int(i) => i.to_string(),
        CelValue::UInt(u) => u.to_string(),
        CelValue::Float(f) => f.to_string(),
        CelValue::Bool(b) => b.to_string(),
        CelValue::Null => "null".to_string(),
        CelValue::Timestamp(t) => t.to_rfc3339(),
        CelValue::Duration(d) => format!("{}s", d.num_milliseconds() as f64 / 1000.0),
        other => format!("{other:?}"),
    }
}

fn header_ops(edits: &HeaderEdits, target: HeaderTarget, out: &mut Vec<HeaderOp>) {
    let op = |action, name: &String, value: &str| HeaderOp {
        target,
        action,
        name: name.to_ascii_lowercase(),
        value: value.to_string(),
    };
    out.extend(
        edits
            .set
            .iter()
            .map(|(n, v)| op(HeaderAction::Replace, n, v)),
    );
    out.extend(
        edits
            .add
            .iter()
            .map(|(n, v)| op(HeaderAction::Append, n, v)),
    );
    out.extend(edits.remove.iter().map(|n| op(HeaderAction::Remove, n, "")));
}

/// Decides a Check without policy adapters (a policy that names one fails as its failure policy says).
pub async fn check(snap: &Snapshot, bag: &Bag, quotas: &[QuotaRequest]) -> Decision {
    check_with(snap, bag, quotas, &NoAdapters).await
}

/// Decides a Check, asking the policy adapters of the applicable policies through `adapters`.
pub async fn check_with(
    snap: &Snapshot,
    bag: &Bag,
    quotas: &[QuotaRequest],
    adapters: &dyn PolicyAdapters,
) -> Decision {
    check_leasing(snap, bag, quotas, adapters, false).await
}

/// The most requests one lease covers.
pub const MAX_LEASE: u32 = 1000;

/// The requests a lease of `spec`'s buckets covers: a tenth of its window's requests, at most what the
/// bucket lets through at once (its burst and one), at least one. A limit without burst leases one request
/// at a time: a larger lease would let a burst through that the limit does not allow.
pub fn lease_size(spec: LimitSpec) -> u32 {
    (spec.requests / 10)
        .min(spec.capacity())
        .clamp(1, MAX_LEASE)
}

/// [`check_with`], and with `leasing` (a proxy's quota prefetch) each RateLimit the request is charged
/// grants a lease of up to [`lease_size`] requests at once (best effort; every later bucket at most what
/// the earlier granted), so the answer is cacheable for as many requests as the lease covers, for the time
/// they represent at the limit's rate. Leased units are taken from the bucket whether or not they are used:
/// a lease can only make the limit stricter, never looser. A request a limit refuses is cacheable until its
/// `retry_after`.
pub async fn check_leasing(
    snap: &Snapshot,
    bag: &Bag,
    quotas: &[QuotaRequest],
    adapters: &dyn PolicyAdapters,
    leasing: bool,
) -> Decision {
    let reads = ReadSet::default();
    let evaluating = sextant_otel::child_span!(
        "policy.evaluate",
        sextant.expressions_evaluated = tracing::field::Empty,
        sextant.rules_matched = tracing::field::Empty,
        sextant.adapters_to_ask = tracing::field::Empty,
        sextant.rate_limits_charged = tracing::field::Empty,
    );
    let mut ev = evaluating.in_scope(|| evaluate(snap, bag, &reads, quotas));
    if !evaluating.is_disabled() {
        evaluating.record("sextant.expressions_evaluated", ev.evaluated.len());
        evaluating.record("sextant.rules_matched", ev.hits.len());
        evaluating.record("sextant.adapters_to_ask", ev.consults.len());
        evaluating.record("sextant.rate_limits_charged", ev.charges.len());
    }
    drop(evaluating);
    ev.leasing = leasing;
    if !ev.consults.is_empty() {
        // An adapter sees the whole bag: the decision depends on every attribute a cache could key on.
        for (i, def) in VOCABULARY.iter().enumerate() {
            if !def.volatile {
                reads.mark(AttrId(u16::try_from(i).unwrap_or(u16::MAX)));
            }
        }
    }
    for (p, key) in std::mem::take(&mut ev.consults) {
        if ev.denied.is_some() || ev.adapter_denied.is_some() {
            break;
        }
        let asking = sextant_otel::child_span!(
            "policy.adapter",
            sextant.adapter = &**key,
            sextant.policy = &*p.name,
        );
        let answer = adapters.check(key, bag).instrument(asking).await;
        ev.adapter_answered(p, key, answer);
    }
    if ev.adapter_denied.is_some() {
        ev.charges.clear();
    }
    // One span for every RateLimit charged (not one each: a Check may charge several).
    let charging = sextant_otel::child_span!(
        "quota.acquire",
        sextant.rate_limits = ev.charges.len(),
        sextant.refused_by = tracing::field::Empty,
    );
    async {
        for (i, key) in &ev.charges {
            let (rl, limiter) = &snap.rate_limits[*i];
            let wanted = match ev.lease {
                _ if !leasing => 1,
                Some((granted, _)) => granted,
                None => lease_size(limiter.spec()),
            };
            match limiter.acquire(key, wanted, leasing).await {
                Outcome::Denied { retry_after } => {
                    ev.refused = Some((rl.name.clone(), retry_after));
                    ev.lease = None;
                    break;
                }
                Outcome::Granted { granted, .. } if leasing => {
                    let granted = granted.max(1);
                    let window = limiter.spec().emission_interval().saturating_mul(granted);
                    ev.lease = Some(match ev.lease {
                        Some((_, w)) => (granted, w.min(window)),
                        None => (granted, window),
                    });
                }
                Outcome::Granted { .. } => {}
            }
        }
    }
    .instrument(charging.clone())
    .await;
    if let Some((name, _)) = &ev.refused {
        charging.record("sextant.refused_by", &**name);
    }
    drop(charging);
    for (req_i, target, key) in &ev.explicit {
        let req = &quotas[*req_i];
        let grant = match target {
            Err(e) => QuotaGrant {
                granted: 0,
                retry_after: None,
                error: Some(e.clone()),
            },
            Ok(i) => match snap.rate_limits[*i]
                .1
                .acquire(key, req.amount.max(1), req.best_effort)
                .await
            {
                Outcome::Granted { granted, .. } => QuotaGrant {
                    granted,
                    retry_after: None,
                    error: None,
                },
                Outcome::Denied { retry_after } => QuotaGrant {
                    granted: 0,
                    retry_after: Some(retry_after),
                    error: None,
                },
            },
        };
        ev.grants.push((req.name.clone(), grant));
    }
    let decision = finish(snap, bag, &reads, ev);
    log_failures(&decision.failures);
    decision
}

/// Logs expressions that could not be evaluated: at most one line a second for the whole process, saying how
/// many were left out since (every failure is counted in `sextant_hub_eval_failures_total`).
fn log_failures(failures: &[EvalFailure]) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static LEFT_OUT: AtomicU64 = AtomicU64::new(0);
    let Some(first) = failures.first() else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_SECOND.load(Ordering::Relaxed);
    if now > last
        && LAST_SECOND
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            resource = %first.resource,
            field = %first.field,
            kind = ?first.kind,
            error = %first.message,
            more_in_this_check = failures.len() - 1,
            left_out_since_last_line = LEFT_OUT.swap(0, Ordering::Relaxed),
            "an expression could not be evaluated"
        );
    } else {
        LEFT_OUT.fetch_add(failures.len() as u64, Ordering::Relaxed);
    }
}

fn evaluate<'s>(
    snap: &'s Snapshot,
    bag: &Bag,
    reads: &ReadSet,
    quotas: &[QuotaRequest],
) -> Evaluation<'s> {
    let resolver = BagResolver::new(bag, reads);
    let mut ctx = Context::with_env(ENV.clone());
    ctx.set_variable_resolver(&resolver);
    let mut ev = Evaluation::default();
    for i in snap.policy_index.candidates(bag, reads) {
        ev.policy(&ctx, &snap.policies[i]);
        if ev.denied.is_some() {
            break;
        }
    }
    let explicit: Vec<Result<usize, String>> = quotas
        .iter()
        .map(|q| match snap.rate_limit_by_name.get(&q.name) {
            Some(Some(i)) => Ok(*i),
            Some(None) => Err(format!("quota name {:?} is ambiguous: several namespaces have a RateLimit of that name; use namespace/name", q.name)),
            None => Err(format!("no RateLimit named {:?}", q.name)),
        })
        .collect();
    if ev.denied.is_none() {
        ev.rate_limits(&ctx, snap, bag, reads, |i| explicit.contains(&Ok(i)));
    }
    for (req_i, target) in explicit.into_iter().enumerate() {
        let key = match &target {
            Ok(i) => {
                let (rl, _) = &snap.rate_limits[*i];
                ev.bucket(&ctx, &rl.dimensions, &rl.name)
            }
            Err(_) => Vec::new(),
        };
        ev.explicit.push((req_i, target, key));
    }
    ev
}

fn finish(snap: &Snapshot, bag: &Bag, reads: &ReadSet, ev: Evaluation<'_>) -> Decision {
    let referenced = references(bag, reads, &ev.evaluated);
    let volatile = reads.ids().any(|id| id.def().volatile);
    // A decision that charged rate limits is cacheable only for a leasing caller: for the requests its
    // lease covers, or, refused, until the limit would let a request through.
    let (charged_for, uses) = match (&ev.refused, ev.lease) {
        _ if ev.charges.is_empty() => (None, snap.decision_uses),
        (Some((_, wait)), _) if ev.leasing => (Some(*wait), snap.decision_uses),
        (None, Some((granted, window))) => {
            (Some(window), i32::try_from(granted).unwrap_or(i32::MAX))
        }
        _ => (Some(Duration::ZERO), 0),
    };
    let cacheable = !volatile
        && ev.adapter_valid_for != Some(Duration::ZERO)
        && charged_for != Some(Duration::ZERO);
    let ttl = [ev.adapter_valid_for, charged_for]
        .into_iter()
        .flatten()
        .fold(snap.decision_ttl, Duration::min);
    let mut headers = Vec::new();
    let (code, message, http_status) = if let Some((policy, denial)) = ev.denied {
        match denial {
            Denial::Rule(r) => {
                header_ops(&r.headers.request, HeaderTarget::Request, &mut headers);
                header_ops(&r.headers.response, HeaderTarget::Response, &mut headers);
                (r.code, r.message.clone(), r.http_status)
            }
            Denial::Default => (
                codes::PERMISSION_DENIED,
                format!(
                    "denied by policy {}: no rule allowed the request",
                    policy.name
                ),
                403,
            ),
            // A DENY rule that failed answers with its own status; anything else with PERMISSION_DENIED.
            Denial::Error {
                rule: Some(r),
                message,
            } if r.action == Action::Deny => (r.code, message, r.http_status),
            Denial::Error { message, .. } => (codes::PERMISSION_DENIED, message, 403),
        }
    } else if let Some((code, http, message)) = ev.adapter_denied {
        (code, message, http)
    } else if let Some((name, wait)) = &ev.refused {
        (
            codes::RESOURCE_EXHAUSTED,
            format!(
                "rate limit {name} exceeded; retry in {:.3}s",
                wait.as_secs_f64()
            ),
            429,
        )
    } else {
        for r in &ev.allow_rules {
            header_ops(&r.headers.request, HeaderTarget::Request, &mut headers);
            header_ops(&r.headers.response, HeaderTarget::Response, &mut headers);
        }
        (0, String::new(), 200)
    };
    Decision {
        code,
        message,
        http_status,
        headers,
        cacheable,
        valid_duration: if cacheable { ttl } else { Duration::ZERO },
        valid_use_count: if cacheable { uses } else { 0 },
        referenced,
        revision: snap.revision,
        failure_policy: ev.failure_policy,
        retry_after: ev.refused.as_ref().map(|(_, wait)| *wait),
        quotas: ev.grants,
        hits: ev.hits,
        rate_limited_by: ev.refused.map(|(name, _)| name),
        failures: ev.failures,
    }
}

/// The referenced attributes: every attribute read, and for map attributes read only by constant keys, the
/// keys (with their presence) instead of the whole map.
fn references(bag: &Bag, reads: &ReadSet, evaluated: &[&Expr]) -> Vec<Reference> {
    let mut out = Vec::new();
    for id in reads.ids() {
        let value = bag.get(id);
        let presence = |present: bool| {
            if present {
                Presence::Exact
            } else {
                Presence::Absent
            }
        };
        let whole = evaluated.iter().any(|e| e.whole.contains(&id));
        let mut keys: Vec<&str> = evaluated
            .iter()
            .flat_map(|e| e.keys.iter())
            .filter(|(a, _)| *a == id)
            .map(|(_, k)| k.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if id.ty() == AttrType::StringMap && !whole && !keys.is_empty() {
            let map = match value {
                Some(Value::StringMap(m)) => Some(m),
                _ => None,
            };
            for k in keys {
                let present = map.is_some_and(|m| m.contains_key(k));
                out.push(Reference {
                    name: id.name(),
                    map_key: Some(k.to_string()),
                    presence: presence(present),
                });
            }
        } else {
            out.push(Reference {
                name: id.name(),
                map_key: None,
                presence: presence(value.is_some()),
            });
        }
    }
    out
}

/// The outcome of the rate-limit front door for one descriptor.
#[derive(Clone, Debug)]
pub struct RateLimitDecision {
    /// Whether a RateLimit refused.
    pub over_limit: bool,
    /// The most constraining RateLimit that applied, with its limit.
    pub limit: Option<(Arc<str>, LimitSpec)>,
    /// Units left in that limit's bucket.
    pub remaining: u32,
    /// Time until that bucket is full again (or, when over the limit, until a request would be allowed).
    pub reset_after: Duration,
    /// Expressions that failed at run time.
    pub failures: Vec<EvalFailure>,
    /// Config revision.
    pub revision: u64,
}

/// Applies the RateLimits (only) to `bag`, taking `amount` units from each that matches.
pub async fn rate_limit(snap: &Snapshot, bag: &Bag, amount: u32) -> RateLimitDecision {
    let reads = ReadSet::default();
    let (charges, failures) = {
        let resolver = BagResolver::new(bag, &reads);
        let mut ctx = Context::with_env(ENV.clone());
        ctx.set_variable_resolver(&resolver);
        let mut ev = Evaluation::default();
        ev.rate_limits(&ctx, snap, bag, &reads, |_| false);
        (ev.charges, ev.failures)
    };
    let mut out = RateLimitDecision {
        over_limit: false,
        limit: None,
        remaining: u32::MAX,
        reset_after: Duration::ZERO,
        failures,
        revision: snap.revision,
    };
    for (i, key) in &charges {
        let (rl, limiter) = &snap.rate_limits[*i];
        match limiter.acquire(key, amount.max(1), false).await {
            Outcome::Granted {
                remaining,
                reset_after,
                ..
            } => {
                if !out.over_limit && remaining < out.remaining {
                    out.remaining = remaining;
                    out.reset_after = reset_after;
                    out.limit = Some((rl.name.clone(), rl.spec));
                }
            }
            Outcome::Denied { retry_after } => {
                out.over_limit = true;
                out.remaining = 0;
                out.reset_after = retry_after;
                out.limit = Some((rl.name.clone(), rl.spec));
                break;
            }
        }
    }
    if out.limit.is_none() {
        out.remaining = 0;
    }
    log_failures(&out.failures);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_dimension_values_are_held_as_digests_and_stay_distinct() {
        let short = "user-1".to_string();
        assert_eq!(dimension_key(short.clone()), short);
        let at_bound = "x".repeat(MAX_DIMENSION_BYTES);
        assert_eq!(dimension_key(at_bound.clone()), at_bound);
        // Two 1 MiB values that differ only in their last byte: two buckets, each key a few dozen bytes.
        let mut a = "y".repeat(1 << 20);
        let b = a.clone() + "b";
        a.push('a');
        let (ka, kb) = (dimension_key(a), dimension_key(b));
        assert_ne!(ka, kb);
        assert!(ka.len() <= MAX_DIMENSION_BYTES && kb.len() <= MAX_DIMENSION_BYTES);
        assert_eq!(
            ka,
            dimension_key("y".repeat(1 << 20) + "a"),
            "the same value, the same bucket"
        );
    }
}
