//! The Redis of `check-bench --global` (Debian's `redis-server` on a free loopback port, through
//! sextant-redis-harness, killed on drop), what it counted (`INFO commandstats`, `INFO cpu`), and what the
//! hubs' GLOBAL backend says about it in their metrics.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::Context as _;
use sextant_redis_harness::{Redis, cli};

/// A running redis-server.
pub struct RedisServer {
    redis: Redis,
    /// `redis-server --version`'s first words.
    pub version: String,
}

impl RedisServer {
    /// Starts one (it runs on the CPUs of the calling thread) and waits until it answers.
    pub fn start() -> anyhow::Result<RedisServer> {
        let out = Command::new("redis-server")
            .arg("--version")
            .output()
            .context("running redis-server --version (apt-get install redis-server)")?;
        let version = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Command::new("redis-cli")
            .arg("--version")
            .output()
            .context("running redis-cli --version (apt-get install redis-tools)")?;
        Ok(RedisServer {
            redis: Redis::start(&[]),
            version,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.redis.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.redis.url()
    }

    /// Its counters now.
    pub fn stats(&self) -> anyhow::Result<RedisStats> {
        let port = self.port();
        let commands = cli(port, &["INFO", "commandstats"]);
        let mut calls = BTreeMap::new();
        for line in commands.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(":calls="))
            else {
                continue;
            };
            let n = rest.split(',').next().and_then(|n| n.parse::<u64>().ok());
            calls.insert(name.to_string(), n.unwrap_or(0));
        }
        anyhow::ensure!(
            !calls.is_empty(),
            "INFO commandstats of the Redis on port {port} lists no command"
        );
        let cpu = cli(port, &["INFO", "cpu"]);
        let seconds = |key: &str| -> f64 {
            cpu.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(RedisStats {
            calls,
            cpu_seconds: seconds("used_cpu_user:") + seconds("used_cpu_sys:"),
        })
    }
}

/// Redis's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct RedisStats {
    /// Calls per command (lower case), from `INFO commandstats`.
    calls: BTreeMap<String, u64>,
    /// Its user + system CPU seconds so far.
    cpu_seconds: f64,
}

/// What Redis did between two [`RedisStats`].
#[derive(Clone, Debug, Default)]
pub struct RedisDelta {
    /// Calls per command, without the `INFO` calls that read the counters.
    pub calls: BTreeMap<String, u64>,
    /// CPU seconds.
    pub cpu_seconds: f64,
}

impl RedisStats {
    /// What happened since `before`.
    pub fn since(&self, before: &RedisStats) -> RedisDelta {
        let calls = self
            .calls
            .iter()
            .filter(|(name, _)| name.as_str() != "info")
            .map(|(name, n)| {
                let was = before.calls.get(name).copied().unwrap_or(0);
                (name.clone(), n.saturating_sub(was))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        RedisDelta {
            calls,
            cpu_seconds: (self.cpu_seconds - before.cpu_seconds).max(0.0),
        }
    }
}

/// The commands that run Lua scripts (`SCRIPT LOAD` is `script|load` in Redis 7's commandstats).
fn runs_scripts(name: &str) -> bool {
    matches!(name, "evalsha" | "eval" | "evalsha_ro" | "eval_ro") || name.starts_with("script")
}

impl RedisDelta {
    /// The commands clients sent. Redis counts the commands a script runs (TIME, GET, SET, …) as calls of
    /// their own: when scripts ran, only the script calls are requests (the hubs send nothing else);
    /// otherwise every command is (envoyproxy/ratelimit's INCRBY and EXPIRE).
    pub fn commands(&self) -> u64 {
        let scripts: u64 = self
            .calls
            .iter()
            .filter(|(name, _)| runs_scripts(name))
            .map(|(_, n)| n)
            .sum();
        if scripts > 0 {
            scripts
        } else {
            self.calls.values().sum()
        }
    }

    /// `name calls, …`, most called first.
    pub fn breakdown(&self) -> String {
        let mut v: Vec<_> = self.calls.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        let parts: Vec<String> = v.iter().map(|(n, c)| format!("{n} {c}")).collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// What the hubs' GLOBAL backends counted (`sextant_quota_*` in their metrics), summed over the hubs.
#[derive(Clone, Debug, Default)]
pub struct QuotaCounters {
    /// `sextant_quota_fallback_total` by `reason`.
    pub fallback: BTreeMap<String, u64>,
    /// `sextant_quota_redis_commands_total` by `script`.
    pub commands: BTreeMap<String, u64>,
    /// `sextant_quota_redis_errors_total`, all failures.
    pub errors: u64,
    /// `sextant_quota_redis_queue_dropped_total`.
    pub dropped: u64,
}

impl QuotaCounters {
    /// Adds the counters of one hub's metrics text (OpenMetrics).
    pub fn add(&mut self, metrics: &str) {
        for line in metrics.lines().filter(|l| l.starts_with("sextant_quota_")) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "sextant_quota_fallback_total" => {
                    *self.fallback.entry(label(labels, "reason")).or_default() += value;
                }
                "sextant_quota_redis_commands_total" => {
                    *self.commands.entry(label(labels, "script")).or_default() += value;
                }
                "sextant_quota_redis_errors_total" => self.errors += value,
                "sextant_quota_redis_queue_dropped_total" => self.dropped += value,
                _ => {}
            }
        }
    }

    /// What was counted since `before`.
    pub fn since(&self, before: &QuotaCounters) -> QuotaCounters {
        let minus = |now: &BTreeMap<String, u64>, was: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, n)| {
                    (
                        k.clone(),
                        n.saturating_sub(was.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        QuotaCounters {
            fallback: minus(&self.fallback, &before.fallback),
            commands: minus(&self.commands, &before.commands),
            errors: self.errors.saturating_sub(before.errors),
            dropped: self.dropped.saturating_sub(before.dropped),
        }
    }

    /// Decisions made by the fallback, all reasons.
    pub fn fallbacks(&self) -> u64 {
        self.fallback.values().sum()
    }
}

/// The value of label `key` in `a="x",b="y"}`; empty when absent.
fn label(labels: &str, key: &str) -> String {
    labels
        .trim_end_matches('}')
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\""))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_metrics_are_summed_by_label() {
        let text = "# TYPE sextant_quota_fallback counter\n\
            sextant_quota_fallback_total{ratelimit=\"bench/a\",reason=\"slow\"} 3\n\
            sextant_quota_fallback_total{ratelimit=\"bench/b\",reason=\"slow\"} 2\n\
            sextant_quota_redis_commands_total{script=\"lease\"} 7\n\
            sextant_quota_redis_queue_dropped_total 1\n";
        let mut c = QuotaCounters::default();
        c.add(text);
        c.add(text);
        assert_eq!(c.fallback.get("slow"), Some(&10));
        assert_eq!(c.commands.get("lease"), Some(&14));
        assert_eq!((c.dropped, c.fallbacks()), (2, 10));
        let mut later = c.clone();
        later.add(text);
        assert_eq!(later.since(&c).fallback.get("slow"), Some(&5));
    }

    #[test]
    fn script_calls_are_the_requests_when_scripts_ran() {
        let delta = |calls: &[(&str, u64)]| RedisDelta {
            calls: calls.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
            cpu_seconds: 0.0,
        };
        let hub = delta(&[("evalsha", 10), ("time", 10), ("get", 10), ("set", 10)]);
        assert_eq!(hub.commands(), 10);
        let peer = delta(&[("incrby", 10), ("expire", 10)]);
        assert_eq!(peer.commands(), 20);
    }
}
