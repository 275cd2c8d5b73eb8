//! `--redis-url`: which Redis deployment holds the GLOBAL buckets, checked before anything connects.
//!
//! - `redis://[user:password@]host:port[/db]` — one server (`rediss://` for TLS);
//! - `redis+cluster://[user:password@]host:port,host:port,…` — a Redis Cluster, from any of its nodes
//!   (`rediss+cluster://` for TLS);
//! - `redis+sentinel://[user:password@]host:port,host:port,…/MASTER` — the master Sentinel names MASTER
//!   (`rediss+sentinel://` for TLS to the master; the credentials are the master's).

/// A Redis deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server, as a URL the `redis` crate opens.
    Standalone(String),
    /// A Redis Cluster: seed node URLs.
    Cluster(Vec<String>),
    /// Sentinels watching `master`.
    Sentinel {
        /// Sentinel node URLs (plain `redis://host:port`).
        sentinels: Vec<String>,
        /// The master's name.
        master: String,
        /// TLS to the master.
        tls: bool,
        /// The master's user name.
        username: Option<String>,
        /// The master's password.
        password: Option<String>,
    },
}

/// A `--redis-url` that cannot name a Redis deployment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--redis-url {url:?}: {why}")]
pub struct UrlError {
    url: String,
    why: String,
}

impl Topology {
    /// Parses `url` (see the module's documentation).
    pub fn parse(url: &str) -> Result<Topology, UrlError> {
        let fail = |why: &str| UrlError {
            // Never echo a password back.
            url: redact(url),
            why: why.to_string(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| fail("expected SCHEME://HOST:PORT"))?;
        let (tls, kind) = match scheme {
            "redis" => (false, ""),
            "rediss" => (true, ""),
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            _ => {
                return Err(fail(
                    "unknown scheme: use redis://, rediss://, redis+cluster://, rediss+cluster://, \
                     redis+sentinel:// or rediss+sentinel://",
                ));
            }
        };
        let (auth, hosts_and_path) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hosts, path) = hosts_and_path
            .split_once('/')
            .map_or((hosts_and_path, ""), |(h, p)| (h, p));
        let hosts: Vec<&str> = hosts.split(',').collect();
        for h in &hosts {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| fail(&format!("node {h:?} has no :PORT")))?;
            if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(fail(&format!("node {h:?} is not HOST:PORT")));
            }
        }
        let prefix = |tls: bool| {
            let s = if tls { "rediss" } else { "redis" };
            match auth {
                Some(a) => format!("{s}://{a}@"),
                None => format!("{s}://"),
            }
        };
        match kind {
            "" => {
                if hosts.len() != 1 {
                    return Err(fail(
                        "several nodes: use redis+cluster:// or redis+sentinel://",
                    ));
                }
                if !path.is_empty() && path.parse::<u32>().is_err() {
                    return Err(fail(&format!("database {path:?} is not a number")));
                }
                Ok(Topology::Standalone(url.to_string()))
            }
            "cluster" => {
                if !path.is_empty() {
                    return Err(fail("a cluster has no databases: remove the /PATH"));
                }
                Ok(Topology::Cluster(
                    hosts
                        .iter()
                        .map(|h| format!("{}{h}", prefix(tls)))
                        .collect(),
                ))
            }
            _ => {
                if path.is_empty() || path.contains('/') {
                    return Err(fail("name the master: redis+sentinel://HOST:PORT,…/MASTER"));
                }
                let (username, password) = match auth {
                    None => (None, None),
                    Some(a) => match a.split_once(':') {
                        Some((u, p)) => {
                            ((!u.is_empty()).then(|| u.to_string()), Some(p.to_string()))
                        }
                        None => (Some(a.to_string()), None),
                    },
                };
                Ok(Topology::Sentinel {
                    sentinels: hosts.iter().map(|h| format!("redis://{h}")).collect(),
                    master: path.to_string(),
                    tls,
                    username,
                    password,
                })
            }
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((auth, hosts)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            format!("{scheme}://{user}:***@{hosts}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_cluster_and_sentinel() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379/2"),
            Ok(Topology::Standalone("redis://127.0.0.1:6379/2".into()))
        );
        assert_eq!(
            Topology::parse("rediss+cluster://u:p@a:1,b:2"),
            Ok(Topology::Cluster(vec![
                "rediss://u:p@a:1".into(),
                "rediss://u:p@b:2".into()
            ]))
        );
        assert_eq!(
            Topology::parse("redis+sentinel://:secret@a:26379,b:26379/mymaster"),
            Ok(Topology::Sentinel {
                sentinels: vec!["redis://a:26379".into(), "redis://b:26379".into()],
                master: "mymaster".into(),
                tls: false,
                username: None,
                password: Some("secret".into()),
            })
        );
    }

    #[test]
    fn errors_name_the_fault_and_hide_the_password() {
        let e = Topology::parse("http://u:hunter2@a:1")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown scheme") && !e.contains("hunter2"),
            "{e}"
        );
        for (url, why) in [
            ("redis://a", "no :PORT"),
            ("redis://a:0", "not HOST:PORT"),
            ("redis://a:1,b:2", "redis+cluster"),
            ("redis://a:1/x", "not a number"),
            ("redis+sentinel://a:1", "name the master"),
            ("redis+cluster://a:1/0", "no databases"),
            ("localhost:6379", "SCHEME://"),
        ] {
            let e = Topology::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
