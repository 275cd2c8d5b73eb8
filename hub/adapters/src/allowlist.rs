//! The outbound HTTP allowlist (`spec.allowedHosts`), checked on the URL's host and port before connecting.

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Lower-case host, or the domain suffix (with its leading dot) of a `*.domain` entry.
    host: String,
    wildcard: bool,
    /// `None`: any port.
    port: Option<u16>,
}

/// Hosts an adapter may send HTTP requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

impl Allowlist {
    /// Parses `host:port`, `host` (any port), `*.domain` and `*.domain:port` entries; IPv6 literals in
    /// brackets (`[::1]:8080`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for raw in entries {
            let s = raw.trim();
            let (host, port) =
                split_host_port(s).ok_or_else(|| format!("invalid allowedHosts entry {raw:?}"))?;
            let (host, wildcard) = match host.strip_prefix("*.") {
                Some(domain) => (format!(".{domain}"), true),
                None => (host.to_string(), false),
            };
            if host.is_empty() || host == "." || host.contains('*') || host.contains('/') {
                return Err(format!("invalid allowedHosts entry {raw:?}"));
            }
            out.push(Entry {
                host: host.to_ascii_lowercase(),
                wildcard,
                port,
            });
        }
        Ok(Self { entries: out })
    }

    /// Whether a request to `host:port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.entries.iter().any(|e| {
            let host_ok = if e.wildcard {
                host.ends_with(&e.host) && host.len() > e.host.len()
            } else {
                host == e.host
            };
            host_ok && e.port.is_none_or(|p| p == port)
        })
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid list")
    }

    #[test]
    fn host_port_host_and_wildcards() {
        let l = list(&[
            "collector:9411",
            "metrics.example.com",
            "*.svc.cluster.local:8080",
            "[::1]:80",
        ]);
        assert!(l.allows("collector", 9411));
        assert!(!l.allows("collector", 9412));
        assert!(l.allows("METRICS.example.com", 1));
        assert!(!l.allows("evil.metrics.example.com", 1));
        assert!(l.allows("zipkin.tracing.svc.cluster.local", 8080));
        assert!(!l.allows("svc.cluster.local", 8080));
        assert!(!l.allows("zipkin.tracing.svc.cluster.local", 80));
        assert!(l.allows("[::1]", 80));
        assert!(!list(&[]).allows("collector", 9411));
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in ["", "host:notaport", "a:b:c", "*", "*.", "http://x"] {
            assert!(Allowlist::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
