//! OPA's side of the comparison: the benchmark's policies ([`crate::config::policies`], the source the hub's
//! YAML is written from) as Rego, and each ext_authz request as the JSON input OPA is asked to decide.
//!
//! The Rego follows the hub's semantics (docs/policies.md): the policy whose selector holds
//! (`destination.service.name`, from the route's `context_extensions` as the hub's ext_authz door reads it)
//! decides by its first matching DENY rule, else its first matching ALLOW rule (with its header), else its
//! default (ALLOW); every matching AUDIT rule is collected. What has no Rego counterpart here: the 5
//! RateLimits (OPA keeps no state between decisions; the hub charges a token bucket per RateLimit on every
//! allowed request, work OPA is spared), `failurePolicy` (only read when a policy adapter fails; these
//! policies have none) and the hub's default `onError` (a DENY rule whose header is missing denies in the hub;
//! in Rego the rule is undefined and does not match — every benchmark request has the header).
//!
//! The input has the shape opa-envoy-plugin gives its policies (`input.attributes.request.http.headers` …),
//! so the same Rego would run behind Envoy's ext_authz there.

use std::fmt::Write as _;

use hyper::body::Bytes;
use sextant_proto::envoy::service::auth::v3 as authz;

use crate::config::{Action, Cond, Policy};

/// The Rego package.
pub const PACKAGE: &str = "sextant.bench";

/// The document the benchmark asks OPA for: `{"decision": …, "audit": [...]}`.
pub const DECISION_PATH: &str = "/v1/data/sextant/bench/result";

/// Where the service name is read from (the ext_authz route's `context_extensions`).
const SERVICE: &str = r#"input.attributes.context_extensions["destination.service.name"]"#;

/// A Rego string literal (the benchmark's values hold no quote or backslash).
fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

/// One expression of a rule body; `None` for a conjunction (see [`body`]).
fn expr(c: &Cond) -> Option<String> {
    let header = |h: &str| format!("http.headers[{}]", quoted(h));
    let set = |vs: &mut dyn Iterator<Item = &str>| {
        format!("{{{}}}", vs.map(quoted).collect::<Vec<_>>().join(", "))
    };
    Some(match c {
        Cond::HeaderIn(h, vs) => format!(
            "{} in {}",
            header(h),
            set(&mut vs.iter().map(String::as_str))
        ),
        Cond::HeaderEndsWith(h, suffix) => format!("endswith({}, {})", header(h), quoted(suffix)),
        Cond::PathStartsWith(p) => format!("startswith(http.path, {})", quoted(p)),
        Cond::MethodIn(ms) => format!("http.method in {}", set(&mut ms.iter().copied())),
        Cond::MethodIs(m) => format!("http.method == {}", quoted(m)),
        Cond::Not(c) => format!("not {}", expr(c)?),
        Cond::All(_) => return None,
    })
}

/// The expressions of a rule body (one per line in Rego), or an error for a condition Rego cannot say in
/// one body (a negated conjunction).
fn body(c: &Cond) -> anyhow::Result<Vec<String>> {
    match c {
        Cond::All(cs) => Ok(cs
            .iter()
            .map(body)
            .collect::<anyhow::Result<Vec<_>>>()?
            .concat()),
        other => Ok(vec![expr(other).ok_or_else(|| {
            anyhow::anyhow!("no Rego for {other:?}: `not` of a conjunction")
        })?]),
    }
}

/// The Rego module deciding as the hub does with `policies`.
pub fn module(policies: &[Policy]) -> anyhow::Result<String> {
    let mut r = String::new();
    let _ = write!(
        r,
        r#"# Written by check-bench from the policies the hub is given (bench/src/check/config.rs); do not edit.
package {PACKAGE}

http := input.attributes.request.http

default decision := {{"allowed": true, "rule": "no policy applies"}}

result := {{"decision": decision, "audit": audit}}
"#
    );
    for (i, p) in policies.iter().enumerate() {
        let _ = write!(
            r,
            "\n# bench/{name}\ndecision := policy_{i} if {SERVICE} == {service}\n\n",
            name = p.name,
            service = quoted(&p.service)
        );
        // The first matching DENY rule, else the first matching ALLOW rule, else the default: one else-chain.
        let deciding = p
            .rules
            .iter()
            .filter(|r| matches!(r.action, Action::Deny(_)))
            .chain(
                p.rules
                    .iter()
                    .filter(|r| matches!(r.action, Action::Allow(_))),
            );
        let mut head = format!("policy_{i} :=");
        for rule in deciding {
            let value = match &rule.action {
                Action::Deny(message) => {
                    let message = message.clone().unwrap_or_else(|| {
                        format!("denied by policy bench/{} rule {}", p.name, rule.name)
                    });
                    format!(
                        r#"{{"allowed": false, "http_status": 403, "body": {}, "rule": {}}}"#,
                        quoted(&message),
                        quoted(rule.name)
                    )
                }
                Action::Allow(Some((name, value))) => format!(
                    r#"{{"allowed": true, "headers": {{{}: {}}}, "rule": {}}}"#,
                    quoted(name),
                    quoted(value),
                    quoted(rule.name)
                ),
                Action::Allow(None) => {
                    format!(r#"{{"allowed": true, "rule": {}}}"#, quoted(rule.name))
                }
                Action::Audit => continue,
            };
            let _ = writeln!(r, "{head} {value} if {{");
            for e in body(&rule.when)? {
                let _ = writeln!(r, "\t{e}");
            }
            r.push('}');
            head = " else :=".to_string();
        }
        let _ = writeln!(r, r#"{head} {{"allowed": true, "rule": "defaultAction"}}"#);
        for rule in p.rules.iter().filter(|r| matches!(r.action, Action::Audit)) {
            let _ = writeln!(
                r,
                "\naudit contains {} if {{\n\t{SERVICE} == {}",
                quoted(&format!("bench/{}/{}", p.name, rule.name)),
                quoted(&p.service)
            );
            for e in body(&rule.when)? {
                let _ = writeln!(r, "\t{e}");
            }
            r.push_str("}\n");
        }
    }
    Ok(r)
}

/// The body of OPA's decision request for `req`: `{"input": …}` with the fields opa-envoy-plugin would give
/// from the same CheckRequest (source principal, the HTTP request, the route's context extensions).
pub fn input(req: &authz::CheckRequest) -> Bytes {
    let attrs = req.attributes.clone().unwrap_or_default();
    let http = attrs.request.and_then(|r| r.http).unwrap_or_default();
    let principal = attrs.source.map(|s| s.principal).unwrap_or_default();
    let doc = serde_json::json!({
        "input": {
            "attributes": {
                "source": {"principal": principal},
                "request": {"http": {
                    "method": http.method,
                    "path": http.path,
                    "host": http.host,
                    "scheme": http.scheme,
                    "protocol": http.protocol,
                    "headers": http.headers,
                }},
                "context_extensions": attrs.context_extensions,
            }
        }
    });
    Bytes::from(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policies;

    #[test]
    fn every_rule_has_rego() {
        let rego = module(&policies()).expect("Rego for the benchmark's policies");
        assert_eq!(rego.matches("decision := policy_").count(), 20);
        assert_eq!(rego.matches("audit contains").count(), 20);
        // 2 DENY, 2 ALLOW and 1 AUDIT rule per policy.
        assert_eq!(rego.matches(" if {").count(), 20 * 5);
        assert!(rego.contains(r#"not endswith(http.headers["x-user"], "@staff")"#));
    }

    #[test]
    fn a_negated_conjunction_is_refused() {
        let c = Cond::Not(Box::new(Cond::All(vec![Cond::MethodIs("GET")])));
        assert!(body(&c).is_err());
    }
}
