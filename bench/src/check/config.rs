//! The benchmark's hub configuration: 20 `Policy` resources (5 rules each, 100 rules) over the services
//! `svc-0..svc-19` and 5 `RateLimit` resources that select the benchmark traffic but never deny. The policies
//! are described once ([`policies`]) and written out as the hub's YAML here and as OPA's Rego in
//! [`crate::rego`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Number of destination services (one `Policy` each).
pub const SERVICES: usize = 20;
/// Rules per `Policy`.
pub const RULES_PER_POLICY: usize = 5;
/// Number of `RateLimit` resources.
pub const RATE_LIMITS: usize = 5;
/// Number of distinct callers (`x-user` values) in the traffic.
pub const USERS: usize = 64;

/// The user that service `svc` bans (one of the 64 traffic users, so ~1/64 of each service's traffic is denied).
pub fn banned_user(svc: usize) -> usize {
    (svc * 3 + 5) % USERS
}

/// Whether user `u` is staff (its `x-user` ends with `@staff`).
pub fn is_staff(u: usize) -> bool {
    u.is_multiple_of(16)
}

/// The `x-user` header value of user `u`.
pub fn user_name(u: usize) -> String {
    if is_staff(u) {
        format!("user-{u}@staff")
    } else {
        format!("user-{u}")
    }
}

/// A limit so high that no bucket ever refuses during a run.
const HUGE_LIMIT: &str = "{requests: 1000000000, per: 1s, burst: 1000000}";

/// A rule's condition, over the few request attributes the benchmark's policies read. It is the one source
/// of the rules: rendered as CEL for the hub ([`Cond::cel`]) and as Rego for OPA ([`crate::rego`]), so the two
/// engines cannot be given different rules.
#[derive(Clone, Debug)]
pub enum Cond {
    /// The request header (lower-case name) is one of the values.
    HeaderIn(&'static str, Vec<String>),
    /// The request header ends with the suffix.
    HeaderEndsWith(&'static str, &'static str),
    /// The request path starts with the prefix.
    PathStartsWith(String),
    /// The request method is one of these.
    MethodIn(&'static [&'static str]),
    /// The request method is this one.
    MethodIs(&'static str),
    /// The condition does not hold (of a single condition, not of [`Cond::All`]: Rego's `not` takes one
    /// expression).
    Not(Box<Cond>),
    /// Every condition holds.
    All(Vec<Cond>),
}

/// A CEL string literal (the benchmark's values hold no quote or backslash).
fn quoted(v: &str) -> String {
    format!("\"{v}\"")
}

impl Cond {
    /// The condition in CEL, as the hub's `when`.
    pub fn cel(&self) -> String {
        let list =
            |vs: &mut dyn Iterator<Item = &str>| vs.map(quoted).collect::<Vec<_>>().join(", ");
        match self {
            Cond::HeaderIn(h, vs) => format!(
                "request.headers[\"{h}\"] in [{}]",
                list(&mut vs.iter().map(String::as_str))
            ),
            Cond::HeaderEndsWith(h, suffix) => {
                format!("request.headers[\"{h}\"].endsWith(\"{suffix}\")")
            }
            Cond::PathStartsWith(p) => format!("request.path.startsWith(\"{p}\")"),
            Cond::MethodIn(ms) => format!("request.method in [{}]", list(&mut ms.iter().copied())),
            Cond::MethodIs(m) => format!("request.method == \"{m}\""),
            Cond::Not(c) => format!("!{}", c.cel()),
            Cond::All(cs) => cs.iter().map(Cond::cel).collect::<Vec<_>>().join(" && "),
        }
    }
}

/// What a rule does when its condition holds.
#[derive(Clone, Debug)]
pub enum Action {
    /// Refuse with PERMISSION_DENIED / HTTP 403, with this message (else the hub's default naming the rule).
    Deny(Option<String>),
    /// Record only.
    Audit,
    /// Allow, setting this request header if given.
    Allow(Option<(&'static str, &'static str)>),
}

/// One rule of a [`Policy`].
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name.
    pub name: &'static str,
    /// When it matches.
    pub when: Cond,
    /// What it does then.
    pub action: Action,
}

/// One of the benchmark's policies: it applies to the requests for one service, and allows by default.
#[derive(Clone, Debug)]
pub struct Policy {
    /// `metadata.name` (namespace `bench`).
    pub name: String,
    /// The `destination.service.name` its selector requires.
    pub service: String,
    /// `failurePolicy: FAIL_CLOSE` (else FAIL_OPEN); only a policy adapter's failure would read it, and these
    /// policies have none.
    pub fail_close: bool,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// The request header the rules read the caller from.
pub const USER_HEADER: &str = "x-user";

/// The 20 policies, one per service, 5 rules each.
pub fn policies() -> Vec<Policy> {
    (0..SERVICES)
        .map(|s| Policy {
            name: format!("svc-{s}-guard"),
            service: format!("svc-{s}"),
            fail_close: s % 4 == 3,
            rules: vec![
                Rule {
                    name: "banned-users",
                    when: Cond::HeaderIn(
                        USER_HEADER,
                        vec!["guest".to_string(), user_name(banned_user(s))],
                    ),
                    action: Action::Deny(Some(format!("banned from svc-{s}"))),
                },
                Rule {
                    name: "admin-is-staff-only",
                    when: Cond::All(vec![
                        Cond::PathStartsWith("/admin".to_string()),
                        Cond::Not(Box::new(Cond::HeaderEndsWith(USER_HEADER, "@staff"))),
                    ]),
                    action: Action::Deny(None),
                },
                Rule {
                    name: "audit-writes",
                    when: Cond::MethodIn(&["POST", "PUT", "DELETE"]),
                    action: Action::Audit,
                },
                Rule {
                    name: "staff",
                    when: Cond::HeaderEndsWith(USER_HEADER, "@staff"),
                    action: Action::Allow(Some(("x-sextant-staff", "true"))),
                },
                Rule {
                    name: "api-reads",
                    when: Cond::All(vec![
                        Cond::MethodIs("GET"),
                        Cond::PathStartsWith(format!("/api/v1/svc-{s}/")),
                    ]),
                    action: Action::Allow(None),
                },
            ],
        })
        .collect()
}

/// The YAML of the 20 policies ([`policies`]).
pub fn policies_yaml() -> String {
    let mut y = String::new();
    for p in policies() {
        let failure_policy = if p.fail_close {
            "FAIL_CLOSE"
        } else {
            "FAIL_OPEN"
        };
        // `write!` to a String cannot fail.
        let _ = write!(
            y,
            r#"---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: {}, namespace: bench}}
spec:
  selector: 'destination.service.name == "{}"'
  defaultAction: ALLOW
  failurePolicy: {failure_policy}
  rules:
"#,
            p.name, p.service
        );
        for r in &p.rules {
            let _ = write!(y, "  - name: {}\n    when: '{}'\n", r.name, r.when.cel());
            let _ = match &r.action {
                Action::Deny(None) => writeln!(y, "    action: DENY"),
                Action::Deny(Some(message)) => writeln!(
                    y,
                    "    action: DENY\n    status: {{code: PERMISSION_DENIED, httpStatus: 403, message: \"{message}\"}}"
                ),
                Action::Audit => writeln!(y, "    action: AUDIT"),
                Action::Allow(None) => writeln!(y, "    action: ALLOW"),
                Action::Allow(Some((name, value))) => writeln!(
                    y,
                    "    action: ALLOW\n    headers:\n      request: {{set: {{{name}: \"{value}\"}}}}"
                ),
            };
        }
    }
    y
}

/// The YAML of the 5 rate limits.
pub fn rate_limits_yaml() -> String {
    rate_limits_with(|_| HUGE_LIMIT.to_string(), None)
}

/// The names of the 5 rate limits, in order.
pub const RATE_LIMIT_NAMES: [&str; RATE_LIMITS] = [
    "per-user-api",
    "per-user-service",
    "per-service",
    "reads-per-user",
    "writes-per-user",
];

/// The YAML of the 5 rate limits, each with the limit `limit_of(name)` (a YAML flow mapping) and, if given,
/// `scope` (`LOCAL` or `GLOBAL`).
pub fn rate_limits_with(limit_of: impl Fn(&str) -> String, scope: Option<&str>) -> String {
    let user = r#"'request.headers["x-user"]'"#;
    let [api, user_service, service, reads, writes] = RATE_LIMIT_NAMES;
    let limits = [
        (
            api,
            r#"'request.path.startsWith("/api")'"#,
            format!("{{user: {user}}}"),
        ),
        (
            user_service,
            r#"'request.path.startsWith("/api")'"#,
            format!("{{user: {user}, service: 'destination.service.name'}}"),
        ),
        (
            service,
            r#"'destination.service.name.startsWith("svc-")'"#,
            "{service: 'destination.service.name'}".to_string(),
        ),
        (
            reads,
            r#"'request.method == "GET"'"#,
            format!("{{user: {user}, method: 'request.method'}}"),
        ),
        (
            writes,
            r#"'request.method in ["POST", "PUT", "DELETE"]'"#,
            format!("{{user: {user}}}"),
        ),
    ];
    let mut y = String::new();
    let scope = scope.map_or_else(String::new, |s| format!("  scope: {s}\n"));
    for (name, selector, dimensions) in limits {
        let limit = limit_of(name);
        let _ = write!(
            y,
            r#"---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {{name: {name}, namespace: bench}}
spec:
  selector: {selector}
  dimensions: {dimensions}
  limit: {limit}
{scope}"#
        );
    }
    y
}

/// A temporary directory holding the configuration; removed on drop.
pub struct ConfigDir {
    path: PathBuf,
}

impl ConfigDir {
    /// Writes `policies.yaml` and `ratelimits.yaml` into a fresh directory under the system temp dir.
    pub fn write() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("sextant-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        let dir = ConfigDir { path };
        std::fs::write(dir.path.join("policies.yaml"), policies_yaml())?;
        std::fs::write(dir.path.join("ratelimits.yaml"), rate_limits_yaml())?;
        Ok(dir)
    }

    /// Writes `files` (name, contents) into a fresh directory under the system temp dir, named with `tag`.
    pub fn with_files(tag: &str, files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("sextant-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        let dir = ConfigDir { path };
        for (name, text) in files {
            let file = dir.path.join(name);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(file, text)?;
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
