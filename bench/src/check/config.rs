//! The benchmark's hub configuration: 20 `Policy` resources (5 rules each, 100 rules) over the services
//! `svc-0..svc-19` and 5 `RateLimit` resources that select the benchmark traffic but never deny.

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

/// The YAML of the 20 policies.
pub fn policies_yaml() -> String {
    let mut y = String::new();
    for s in 0..SERVICES {
        let banned = user_name(banned_user(s));
        let failure_policy = if s % 4 == 3 {
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
metadata: {{name: svc-{s}-guard, namespace: bench}}
spec:
  selector: 'destination.service.name == "svc-{s}"'
  defaultAction: ALLOW
  failurePolicy: {failure_policy}
  rules:
  - name: banned-users
    when: 'request.headers["x-user"] in ["guest", "{banned}"]'
    action: DENY
    status: {{code: PERMISSION_DENIED, httpStatus: 403, message: "banned from svc-{s}"}}
  - name: admin-is-staff-only
    when: 'request.path.startsWith("/admin") && !request.headers["x-user"].endsWith("@staff")'
    action: DENY
  - name: audit-writes
    when: 'request.method in ["POST", "PUT", "DELETE"]'
    action: AUDIT
  - name: staff
    when: 'request.headers["x-user"].endsWith("@staff")'
    action: ALLOW
    headers:
      request: {{set: {{x-sextant-staff: "true"}}}}
  - name: api-reads
    when: 'request.method == "GET" && request.path.startsWith("/api/v1/svc-{s}/")'
    action: ALLOW
"#
        );
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
