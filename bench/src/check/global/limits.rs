//! The limits of `check-bench --global`: the hub's RateLimits (the benchmark's five, LOCAL or GLOBAL, for
//! native Check; two for Envoy's rate-limit service) and the equivalent envoyproxy/ratelimit configuration.

use std::fmt::Write as _;

use crate::config::{self, RATE_LIMIT_NAMES};
use crate::traffic::RLS_DOMAIN;

/// The window of a limit: one of the units both the hub and envoyproxy/ratelimit know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
}

impl Per {
    /// As a hub RateLimit writes it.
    pub fn hub(self) -> &'static str {
        match self {
            Per::Second => "1s",
            Per::Minute => "1m",
            Per::Hour => "1h",
            Per::Day => "24h",
        }
    }

    /// As envoyproxy/ratelimit writes it.
    pub fn peer(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// `requests` per `per`, `burst` more at once (the hub's GCRA; envoyproxy/ratelimit's fixed windows have no
/// burst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Requests per window.
    pub requests: u32,
    /// The window.
    pub per: Per,
    /// Requests allowed at once beyond the even spacing.
    pub burst: u32,
}

impl Limit {
    /// Parses `REQUESTS/PER[+BURST]`, PER one of `1s`, `1m`, `1h`, `1d` (e.g. `100000000/1m+1000000`).
    pub fn parse(text: &str) -> Result<Limit, String> {
        let (requests, rest) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected REQUESTS/PER[+BURST], e.g. 100000000/1m"))?;
        let (per, burst) = rest.split_once('+').unwrap_or((rest, "0"));
        let burst = burst
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("{text:?}: BURST must be a non-negative integer"))?;
        let requests = requests
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| format!("{text:?}: REQUESTS must be a positive integer"))?;
        let per = match per.trim() {
            "1s" => Per::Second,
            "1m" => Per::Minute,
            "1h" => Per::Hour,
            "1d" => Per::Day,
            other => {
                return Err(format!(
                    "{text:?}: PER {other:?} is not one of 1s, 1m, 1h, 1d"
                ));
            }
        };
        Ok(Limit {
            requests,
            per,
            burst,
        })
    }

    /// The RateLimit `limit:` field.
    pub fn yaml(self) -> String {
        format!(
            "{{requests: {}, per: {}, burst: {}}}",
            self.requests,
            self.per.hub(),
            self.burst
        )
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = match self.per {
            Per::Day => "1d",
            other => other.hub(),
        };
        write!(f, "{}/{per}", self.requests)?;
        if self.burst > 0 {
            write!(f, "+{}", self.burst)?;
        }
        Ok(())
    }
}

/// The RateLimit that the over-limit runs hold to the lower limit.
pub const OVER_LIMIT_RATE_LIMIT: &str = RATE_LIMIT_NAMES[2];

/// The native Check configuration: the benchmark's policies and its five RateLimits with `scope`, each
/// limited to `limit`, except [`OVER_LIMIT_RATE_LIMIT`] to `over` when given.
pub fn native_files(scope: &str, limit: Limit, over: Option<Limit>) -> Vec<(&'static str, String)> {
    let limit_of = |name: &str| match over {
        Some(o) if name == OVER_LIMIT_RATE_LIMIT => o.yaml(),
        _ => limit.yaml(),
    };
    vec![
        ("policies.yaml", config::policies_yaml()),
        (
            "ratelimits.yaml",
            config::rate_limits_with(limit_of, Some(scope)),
        ),
    ]
}

/// The rate-limit service configuration of the hub: per user (descriptor `[user]`) and per user and
/// service (descriptor `[user, service]`), both `limit`, with `scope`.
pub fn rls_files(scope: &str, limit: Limit) -> Vec<(&'static str, String)> {
    let mut y = String::new();
    let limits = [
        (
            "rls-per-user",
            r#"!("service" in ratelimit.descriptor)"#,
            r#"{user: 'ratelimit.descriptor["user"]'}"#,
        ),
        (
            "rls-per-user-service",
            r#""service" in ratelimit.descriptor"#,
            r#"{user: 'ratelimit.descriptor["user"]', service: 'ratelimit.descriptor["service"]'}"#,
        ),
    ];
    for (name, which, dimensions) in limits {
        // `write!` to a String cannot fail.
        let _ = write!(
            y,
            r#"---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {{name: {name}, namespace: bench}}
spec:
  selector: 'ratelimit.domain == "{RLS_DOMAIN}" && {which}'
  dimensions: {dimensions}
  limit: {limit}
  scope: {scope}
"#,
            limit = limit.yaml()
        );
    }
    vec![("ratelimits.yaml", y)]
}

/// The same two limits in envoyproxy/ratelimit's configuration format.
pub fn peer_yaml(limit: Limit) -> String {
    let (n, unit) = (limit.requests, limit.per.peer());
    format!(
        r#"domain: {RLS_DOMAIN}
descriptors:
  - key: user
    rate_limit: {{unit: {unit}, requests_per_unit: {n}}}
    descriptors:
      - key: service
        rate_limit: {{unit: {unit}, requests_per_unit: {n}}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_print_in_both_formats() {
        let l = Limit::parse("600/1m").expect("a valid limit");
        assert_eq!(l.yaml(), "{requests: 600, per: 1m, burst: 0}");
        let b = Limit::parse("600/1h+6").expect("a valid limit");
        assert_eq!((b.burst, b.to_string()), (6, "600/1h+6".to_string()));
        assert!(peer_yaml(l).contains("{unit: minute, requests_per_unit: 600}"));
        assert!(Limit::parse("0/1s").is_err());
        assert!(Limit::parse("5/2s").is_err());
        assert!(Limit::parse("5").is_err());
    }
}
