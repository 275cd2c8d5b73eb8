//! Validation of a configuration (pure) and the immutable snapshot the engine decides with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hub_config::{
    Action, ConfigError, ConfigErrors, ConfigSet, DefaultAction, FailurePolicy, HeaderRules,
    OnError, Resource,
};
use hub_quota::{LimitSpec, Limiter, QuotaBackend};

use crate::codes;
use crate::expr::{self, Expr};
use crate::index::Index;

/// A rule, compiled.
#[derive(Debug)]
pub struct CompiledRule {
    /// Rule name.
    pub name: Arc<str>,
    /// Condition; None matches always.
    pub when: Option<Expr>,
    /// Action.
    pub action: Action,
    /// google.rpc code for DENY.
    pub code: i32,
    /// HTTP status for DENY.
    pub http_status: u16,
    /// Message for DENY.
    pub message: String,
    /// Header operations.
    pub headers: HeaderRules,
    /// What the condition decides when it cannot be evaluated (the rule's, else the policy's, else the
    /// action's default: DENY for DENY rules, SKIP for the others).
    pub on_error: OnError,
}

/// A policy, compiled.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// `namespace/name`.
    pub name: Arc<str>,
    /// Selector; None applies to every request.
    pub selector: Option<Expr>,
    /// What the selector decides when it cannot be evaluated (the policy's `onError`, else DENY).
    pub selector_on_error: OnError,
    /// When no rule matches.
    pub default_action: DefaultAction,
    /// For proxies that cannot reach the hub.
    pub failure_policy: FailurePolicy,
    /// Never deny.
    pub dry_run: bool,
    /// Rules, in order.
    pub rules: Vec<CompiledRule>,
    /// Policy adapters (`namespace/name` of Adapter resources) asked about requests nothing denied.
    pub adapters: Vec<Arc<str>>,
}

/// A rate limit, compiled (its buckets are attached by [`Validated::build`]).
#[derive(Debug)]
pub struct CompiledRateLimit {
    /// `namespace/name`.
    pub name: Arc<str>,
    /// Selector; None counts every request.
    pub selector: Option<Expr>,
    /// Dimension name and expression, sorted by name.
    pub dimensions: Vec<(String, Expr)>,
    /// The limit.
    pub spec: LimitSpec,
}

/// A configuration that passed validation; nothing has run yet.
#[derive(Debug)]
pub struct Validated {
    /// Policies.
    pub policies: Vec<CompiledPolicy>,
    /// Rate limits.
    pub rate_limits: Vec<CompiledRateLimit>,
    /// The resources as written, for `/debug/config`.
    pub source: ConfigSet,
}

/// Compiled expressions by source text and whether a boolean was wanted: those of a serving snapshot, so
/// that validating the next configuration compiles only the expressions new to it (compiling is most of a
/// reload's work, and a reload usually changes a few resources of many), and those compiled since, so that
/// an expression written in many resources is compiled once.
#[derive(Debug, Default)]
pub struct Compiled<'a> {
    earlier: HashMap<(&'a str, bool), &'a Expr>,
    fresh: HashMap<(String, bool), Expr>,
}

impl<'a> Compiled<'a> {
    /// The expressions of `snapshot`'s policies and rate limits.
    pub fn of(snapshot: &'a Snapshot) -> Compiled<'a> {
        let mut earlier = HashMap::new();
        let mut add = |e: &'a Expr, want_bool: bool| {
            earlier.insert((e.source.as_str(), want_bool), e);
        };
        for p in &snapshot.policies {
            p.selector.iter().for_each(|e| add(e, true));
            p.rules
                .iter()
                .flat_map(|r| &r.when)
                .for_each(|e| add(e, true));
        }
        for (r, _) in &snapshot.rate_limits {
            r.selector.iter().for_each(|e| add(e, true));
            r.dimensions.iter().for_each(|(_, e)| add(e, false));
        }
        Compiled {
            earlier,
            fresh: HashMap::new(),
        }
    }

    /// `source` compiled (see [`expr::compile`]), shared with any expression of the same text compiled before.
    fn compile(&mut self, source: &str, want_bool: bool) -> Result<Expr, expr::ExprError> {
        if let Some(e) = self.earlier.get(&(source, want_bool)) {
            return Ok((*e).clone());
        }
        let key = (source.to_string(), want_bool);
        if let Some(e) = self.fresh.get(&key) {
            return Ok(e.clone());
        }
        let e = expr::compile(source, want_bool)?;
        self.fresh.insert(key, e.clone());
        Ok(e)
    }
}

/// Validates a configuration: every CEL expression compiled and type-checked, every value checked. Pure.
pub fn validate(set: ConfigSet) -> Result<Validated, ConfigErrors> {
    validate_reusing(set, Compiled::default())
}

/// Like [`validate`], taking the expressions `compiled` holds instead of compiling them again (the result is
/// the same: compiling depends on nothing but the text and the wanted type).
pub fn validate_reusing(
    set: ConfigSet,
    mut compiled: Compiled<'_>,
) -> Result<Validated, ConfigErrors> {
    let mut errors = Vec::new();
    let adapters: HashSet<String> = set.adapters.iter().map(Resource::key).collect();
    let mut policies = Vec::new();
    for p in &set.policies {
        match validate_policy(p, &adapters, &mut compiled) {
            Ok(c) => policies.push(c),
            Err(e) => errors.extend(e),
        }
    }
    let mut rate_limits = Vec::new();
    for r in &set.rate_limits {
        match validate_rate_limit(r, &mut compiled) {
            Ok(c) => rate_limits.push(c),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(Validated {
            policies,
            rate_limits,
            source: set,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

fn scope(s: hub_config::LimitScope) -> hub_quota::Scope {
    match s {
        hub_config::LimitScope::Local => hub_quota::Scope::Local,
        hub_config::LimitScope::Global => hub_quota::Scope::Global,
    }
}

fn on_failure(f: hub_config::BackendFailure) -> hub_quota::OnBackendFailure {
    match f {
        hub_config::BackendFailure::Local => hub_quota::OnBackendFailure::Local,
        hub_config::BackendFailure::Allow => hub_quota::OnBackendFailure::Allow,
        hub_config::BackendFailure::Deny => hub_quota::OnBackendFailure::Deny,
    }
}

/// The CEL in `r`'s `field`, compiled (or taken from `compiled`); an error is added to `errors`.
fn cel<S>(
    compiled: &mut Compiled<'_>,
    r: &Resource<S>,
    (kind, field): (&str, &str),
    source: &str,
    want_bool: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<Expr> {
    match compiled.compile(source, want_bool) {
        Ok(e) => Some(e),
        Err(e) => {
            errors.push(r.invalid(kind, field, e.to_string()));
            None
        }
    }
}

fn validate_policy(
    p: &Resource<hub_config::PolicySpec>,
    known_adapters: &HashSet<String>,
    compiled: &mut Compiled<'_>,
) -> Result<CompiledPolicy, Vec<ConfigError>> {
    const KIND: &str = "Policy";
    let mut errors = Vec::new();
    let selector = p
        .spec
        .selector
        .as_deref()
        .and_then(|s| cel(compiled, p, (KIND, "spec.selector"), s, true, &mut errors));
    let mut names = HashSet::new();
    let mut rules = Vec::new();
    for (i, r) in p.spec.rules.iter().enumerate() {
        let field = |f: &str| format!("spec.rules[{i}].{f}");
        if !names.insert(r.name.as_str()) {
            errors.push(p.invalid(
                KIND,
                &field("name"),
                format!("rule name {:?} is used twice in this policy", r.name),
            ));
        }
        let when = r
            .when
            .as_deref()
            .and_then(|w| cel(compiled, p, (KIND, &field("when")), w, true, &mut errors));
        let (mut code, mut http_status, mut message) = (
            codes::PERMISSION_DENIED,
            403,
            format!("denied by policy {} rule {}", p.key(), r.name),
        );
        if let Some(st) = &r.status {
            if r.action != Action::Deny {
                errors.push(p.invalid(KIND, &field("status"), "status is only used by DENY rules"));
            }
            match codes::by_name(&st.code) {
                Some((0, _)) => errors.push(p.invalid(
                    KIND,
                    &field("status.code"),
                    "a DENY rule cannot answer OK",
                )),
                Some((c, h)) => (code, http_status) = (c, h),
                None => errors.push(p.invalid(
                    KIND,
                    &field("status.code"),
                    format!("unknown code {:?}; one of {}", st.code, codes::names()),
                )),
            }
            if let Some(h) = st.http_status {
                if !(200..=599).contains(&h) {
                    errors.push(p.invalid(
                        KIND,
                        &field("status.httpStatus"),
                        format!("{h} is not an HTTP status (200-599)"),
                    ));
                }
                http_status = h;
            }
            if let Some(m) = &st.message {
                message.clone_from(m);
            }
        }
        let headers = r.headers.clone().unwrap_or_default();
        for (what, edits) in [
            ("request", &headers.request),
            ("response", &headers.response),
        ] {
            for name in edits
                .set
                .keys()
                .chain(edits.add.keys())
                .chain(edits.remove.iter())
            {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    errors.push(p.invalid(
                        KIND,
                        &field(&format!("headers.{what}")),
                        format!("{name:?} is not a valid header name"),
                    ));
                }
            }
            for value in edits.set.values().chain(edits.add.values()) {
                if http::HeaderValue::from_str(value).is_err() {
                    errors.push(p.invalid(
                        KIND,
                        &field(&format!("headers.{what}")),
                        format!("{value:?} is not a valid header value"),
                    ));
                }
            }
        }
        rules.push(CompiledRule {
            name: Arc::from(r.name.as_str()),
            when,
            action: r.action,
            code,
            http_status,
            message,
            headers,
            on_error: r.on_error.or(p.spec.on_error).unwrap_or(match r.action {
                Action::Deny => OnError::Deny,
                Action::Allow | Action::Audit => OnError::Skip,
            }),
        });
    }
    let mut adapters: Vec<Arc<str>> = Vec::new();
    for (i, name) in p.spec.adapters.iter().enumerate() {
        let key = p.qualify(name);
        let field = format!("spec.adapters[{i}]");
        if !known_adapters.contains(&key) {
            let mut known: Vec<&str> = known_adapters.iter().map(String::as_str).collect();
            known.sort_unstable();
            let hint = if known.is_empty() {
                "no Adapter resource is loaded".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            errors.push(p.invalid(KIND, &field, format!("no Adapter named {key} ({hint})")));
        } else if adapters.iter().any(|a| **a == *key) {
            errors.push(p.invalid(KIND, &field, format!("adapter {key} is listed twice")));
        } else {
            adapters.push(Arc::from(key));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CompiledPolicy {
        name: Arc::from(p.key()),
        selector,
        selector_on_error: p.spec.on_error.unwrap_or(OnError::Deny),
        default_action: p.spec.default_action,
        failure_policy: p.spec.failure_policy,
        dry_run: p.spec.dry_run,
        rules,
        adapters,
    })
}

fn validate_rate_limit(
    r: &Resource<hub_config::RateLimitSpec>,
    compiled: &mut Compiled<'_>,
) -> Result<CompiledRateLimit, Vec<ConfigError>> {
    const KIND: &str = "RateLimit";
    let mut errors = Vec::new();
    let selector = r
        .spec
        .selector
        .as_deref()
        .and_then(|s| cel(compiled, r, (KIND, "spec.selector"), s, true, &mut errors));
    let dimensions = r
        .spec
        .dimensions
        .iter()
        .filter_map(|(name, src)| {
            Some((
                name.clone(),
                cel(
                    compiled,
                    r,
                    (KIND, &format!("spec.dimensions.{name}")),
                    src,
                    false,
                    &mut errors,
                )?,
            ))
        })
        .collect();
    let per = hub_config::parse_duration(&r.spec.limit.per)
        .map_err(|m| r.invalid(KIND, "spec.limit.per", m));
    let spec = per.and_then(|per| {
        LimitSpec::new(r.spec.limit.requests, per, r.spec.limit.burst)
            .map(|spec| spec.scoped(scope(r.spec.scope), on_failure(r.spec.on_backend_failure)))
            .map_err(|e| r.invalid(KIND, "spec.limit", e.to_string()))
    });
    match spec {
        Ok(spec) if errors.is_empty() => Ok(CompiledRateLimit {
            name: Arc::from(r.key()),
            selector,
            dimensions,
            spec,
        }),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push(e);
            Err(errors)
        }
    }
}

/// The immutable configuration a Check is decided with.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every successful load.
    pub revision: u64,
    /// Digest of the source files.
    pub digest: u64,
    /// Policies.
    pub policies: Vec<CompiledPolicy>,
    pub(crate) policy_index: Index,
    /// Rate limits, with their buckets.
    pub rate_limits: Vec<(CompiledRateLimit, Arc<dyn Limiter>)>,
    pub(crate) rate_limit_index: Index,
    pub(crate) rate_limit_by_name: HashMap<String, Option<usize>>,
    /// The resources as written.
    pub source: ConfigSet,
    /// Decision cache lifetime for cacheable decisions.
    pub decision_ttl: Duration,
    /// Decision cache use count for cacheable decisions.
    pub decision_uses: i32,
}

impl Validated {
    /// Attaches rate-limit buckets from `backend` and builds the indexes.
    pub fn build(
        self,
        revision: u64,
        backend: &dyn QuotaBackend,
        decision_ttl: Duration,
        decision_uses: i32,
    ) -> Snapshot {
        let mut policy_index = Index::default();
        for (i, p) in self.policies.iter().enumerate() {
            policy_index.add(
                i,
                p.selector.as_ref().map(Expr::root),
                p.selector_on_error == OnError::Deny,
            );
        }
        let mut rate_limit_index = Index::default();
        let mut rate_limit_by_name: HashMap<String, Option<usize>> = HashMap::new();
        let mut rate_limits = Vec::with_capacity(self.rate_limits.len());
        for (i, r) in self.rate_limits.into_iter().enumerate() {
            rate_limit_index.add(i, r.selector.as_ref().map(Expr::root), false);
            rate_limit_by_name.insert(r.name.to_string(), Some(i));
            // A bare name resolves when it is unique across namespaces.
            let bare = r
                .name
                .split_once('/')
                .map_or(&*r.name, |(_, n)| n)
                .to_string();
            rate_limit_by_name
                .entry(bare)
                .and_modify(|e| *e = None)
                .or_insert(Some(i));
            let limiter = backend.limiter(&r.name, r.spec);
            rate_limits.push((r, limiter));
        }
        let live: Vec<String> = rate_limits
            .iter()
            .map(|(r, _)| r.name.to_string())
            .collect();
        backend.retain(&live);
        Snapshot {
            revision,
            digest: self.source.digest,
            policies: self.policies,
            policy_index,
            rate_limits,
            rate_limit_index,
            rate_limit_by_name,
            source: self.source,
            decision_ttl,
            decision_uses,
        }
    }
}

impl Snapshot {
    /// The active resources as JSON, with the revision, for `/debug/config`.
    pub fn to_json(&self) -> serde_json::Value {
        let res = |kind: &str,
                   name: &str,
                   ns: &str,
                   spec: serde_json::Value,
                   origin: &hub_config::Origin| {
            serde_json::json!({
                "apiVersion": hub_config::API_VERSION, "kind": kind,
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
                "source": format!("{}:{}", origin.file.display(), origin.line),
            })
        };
        let mut resources = Vec::new();
        for p in &self.source.policies {
            resources.push(res(
                "Policy",
                &p.name,
                &p.namespace,
                serde_json::to_value(&p.spec).unwrap_or_default(),
                &p.origin,
            ));
        }
        for r in &self.source.rate_limits {
            resources.push(res(
                "RateLimit",
                &r.name,
                &r.namespace,
                serde_json::to_value(&r.spec).unwrap_or_default(),
                &r.origin,
            ));
        }
        serde_json::json!({
            "revision": self.revision,
            "digest": format!("{:016x}", self.digest),
            "files": self.source.files,
            "policies": self.policies.len(),
            "policiesIndexed": self.policy_index.indexed(),
            "rateLimits": self.rate_limits.len(),
            "resources": resources,
        })
    }
}

#[cfg(test)]
mod tests;
