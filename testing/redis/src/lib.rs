//! Real `redis-server` processes for tests (Debian's `redis-server` and `redis-tools`, installed by
//! `.ci/peers`): one server on a free loopback port, or a Redis Cluster of three masters made with
//! `redis-cli --cluster create`. Every server keeps nothing on disk and is killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listened on a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Runs `redis-cli -p PORT ARGS…` and returns its output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `f` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server on a free loopback port.
pub struct Redis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Its TLS port, when started by [`Redis::start_tls`].
    pub tls_port: Option<u16>,
    dir: PathBuf,
    extra: Vec<String>,
    password: Option<String>,
    /// A configuration file given first (a Sentinel's, which it rewrites).
    config: Option<PathBuf>,
}

impl Redis {
    /// Starts a server with `extra` arguments (e.g. `--cluster-enabled yes`) and waits until it answers.
    pub fn start(extra: &[&str]) -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "sextant-test-redis-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mut r = Redis {
            child: None,
            port: 0,
            tls_port: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            password: None,
            config: None,
        };
        if let Some(i) = extra.iter().position(|a| *a == "--requirepass") {
            r.password = extra.get(i + 1).map(|p| p.to_string());
        }
        // A port probed free may be taken before redis binds it: try others.
        for _ in 0..5 {
            r.port = free_port();
            if r.restart() {
                return r;
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts the server again on its port (after [`Redis::kill`]); false if it did not come up.
    pub fn restart(&mut self) -> bool {
        self.kill();
        let mut cmd = Command::new("redis-server");
        if let Some(config) = &self.config {
            cmd.arg(config).arg("--sentinel");
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.cli(&["PING"]) == "PONG" {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A server that requires `password` and serves TLS on [`Redis::tls_port`] (with a certificate for
    /// 127.0.0.1 from a CA made for the run, [`Redis::ca_file`]) besides plain text on [`Redis::port`].
    pub fn start_tls(password: &str) -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "sextant-test-redis-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let (ca, server_cert, server_key) = certificates();
        for (name, pem) in [
            ("ca.pem", &ca),
            ("server.pem", &server_cert),
            ("server.key", &server_key),
        ] {
            std::fs::write(dir.join(name), pem).expect("write a PEM file");
        }
        let file = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let tls_port = free_port();
        let tls_args = [
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            password.into(),
        ];
        let args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
        let mut r = Redis::start(&args);
        r.tls_port = Some(tls_port);
        let _ = std::fs::remove_dir_all(std::mem::replace(&mut r.dir, dir));
        r
    }

    /// A Sentinel on a free port watching the master at `master_port` as `name` (quorum 1: it alone
    /// decides a failover, one second after the master stops answering).
    pub fn start_sentinel(name: &str, master_port: u16) -> Redis {
        let mut r = Redis::start(&[]);
        let config = r.dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n"
            ),
        )
        .expect("write the Sentinel's configuration");
        r.config = Some(config);
        assert!(r.restart(), "the Sentinel started");
        r
    }

    /// The address Sentinel `self` gives for master `name`: `HOST:PORT`.
    pub fn master_of(&self, name: &str) -> String {
        self.cli(&["SENTINEL", "get-master-addr-by-name", name])
            .lines()
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Runs `redis-cli` against this server (with its password, if any).
    pub fn cli(&self, args: &[&str]) -> String {
        match &self.password {
            Some(p) => {
                let mut all = vec!["--no-auth-warning", "-a", p.as_str()];
                all.extend_from_slice(args);
                cli(self.port, &all)
            }
            None => cli(self.port, args),
        }
    }

    /// Kills the server (SIGKILL: nothing is saved, clients see the connection drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Calls of `command` (lower case, e.g. `evalsha`) the server ran, from INFO commandstats.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.cli(&["INFO", "commandstats"]);
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.cli(&["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("the CA certificate").pem();
    let issuer = Issuer::new(ca, ca_key);
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server parameters");
    let key = KeyPair::generate().expect("a server key");
    let cert = server
        .signed_by(&key, &issuer)
        .expect("the server certificate");
    (ca_pem, cert.pem(), key.serialize_pem())
}

/// A Redis Cluster of three masters, each with `replicas` replicas, on loopback.
pub struct Cluster {
    /// Its nodes.
    pub nodes: Vec<Redis>,
}

impl Cluster {
    /// Makes the cluster and waits until every node says it is ok and every replica is in sync (a replica
    /// that never synced cannot take over).
    pub fn start(replicas: usize) -> Cluster {
        let conf = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            "--cluster-config-file",
            "nodes.conf",
            "--repl-diskless-sync-delay",
            "0",
        ];
        let nodes: Vec<Redis> = (0..3 * (1 + replicas))
            .map(|_| Redis::start(&conf))
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Cluster { nodes };
        wait_until("cluster_state:ok", Duration::from_secs(30), || {
            c.nodes
                .iter()
                .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        wait_until("replicas in sync", Duration::from_secs(30), || {
            c.nodes.iter().all(|n| {
                let info = cli(n.port, &["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
        c
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
