//! The proxy under test as a child process, Envoy or `sextant proxy`, both fed by the same pilot as the same
//! node with one worker (`--concurrency 1`): started with its log in a file, ready when its admin `/ready`
//! answers 200 and a request through the tested listener answers 200, pinned to a CPU thread by thread,
//! measured through `/proc/PID/status` and `/proc/PID/stat`, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sextant_bench::process::{self, Memory};
use sextant_bench::{child, http, pin};

use crate::setup::{self, Node, Service};

/// Which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Envoy (the peer).
    Envoy,
    /// `sextant proxy`.
    Sextant,
}

impl Kind {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Envoy => "envoy",
            Kind::Sextant => "sextant",
        }
    }
}

/// A part of the resident memory.
#[derive(Clone, Copy, Debug)]
pub enum RssPart {
    /// Anonymous pages: what the process allocated.
    Anon,
    /// File-backed pages: its code and data mapped from the binary and libraries.
    File,
}

/// A running proxy.
pub struct ProxyProc {
    /// Which one.
    pub kind: Kind,
    child: Child,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl ProxyProc {
    /// Starts Envoy (`envoy`) as `node` in `dir` with an ADS bootstrap pointing at `pilot`; waits until its
    /// admin is ready.
    pub fn start_envoy(
        envoy: &Path,
        dir: &Path,
        pilot: SocketAddr,
        node: &Node,
        timeout: Duration,
    ) -> anyhow::Result<ProxyProc> {
        let config = dir.join(format!("envoy-{}.yaml", node.role));
        std::fs::write(&config, setup::envoy_bootstrap(pilot, node))
            .with_context(|| format!("writing {}", config.display()))?;
        let admin_file = dir.join(format!("envoy-{}-admin-address", node.role));
        let _ = std::fs::remove_file(&admin_file);
        let log = dir.join(format!("envoy-{}.log", node.role));
        let (out, err) = child::log_files(&log, "envoy")?;
        let child = Command::new(envoy)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["--use-dynamic-base-id", "-l", "warning"])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", envoy.display()))?;
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut proxy = ProxyProc {
            kind: Kind::Envoy,
            child,
            admin: unknown,
            log,
        };
        proxy.wait(timeout, "its admin address", |p| {
            if let Some(a) = std::fs::read_to_string(&admin_file)
                .ok()
                .and_then(|a| a.trim().parse().ok())
            {
                p.admin = a;
            }
            p.admin != unknown
        })?;
        proxy.wait_ready(timeout)?;
        Ok(proxy)
    }

    /// Starts `sextant proxy` (`sextant`) as `node` fed by `pilot`, its log in `dir`; waits until its admin
    /// is ready.
    pub fn start_sextant(
        sextant: &Path,
        dir: &Path,
        pilot: SocketAddr,
        node: &Node,
        timeout: Duration,
    ) -> anyhow::Result<ProxyProc> {
        let log = dir.join(format!("sextant-{}.log", node.role));
        let (out, err) = child::log_files(&log, "sextant proxy")?;
        let mut cmd = Command::new(sextant);
        cmd.arg("proxy")
            .args(["--xds-addr", &pilot.to_string()])
            .args(["--node-id", node.id])
            .args(["--admin-addr", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0"])
            .args(["--concurrency", "1"])
            // Envoy runs at `-l warning`; the same here.
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in node.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} proxy", sextant.display()))?;
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut proxy = ProxyProc {
            kind: Kind::Sextant,
            child,
            admin: unknown,
            log,
        };
        proxy.wait(timeout, "its `proxy: admin on` line", |p| {
            // `proxy: admin on http://ADDR/ready, …`
            if let Some(&[a, ..]) = child::ready_addrs(&p.log, "proxy: admin on ").as_deref() {
                p.admin = a;
            }
            p.admin != unknown
        })?;
        proxy.wait_ready(timeout)?;
        Ok(proxy)
    }

    /// Polls `done` every 50 ms until it holds; fails if the proxy exits or after `timeout`.
    fn wait(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&mut ProxyProc) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the proxy")? {
                anyhow::bail!(
                    "{} exited with {status} while waiting for {what}; its log: {}",
                    self.kind.name(),
                    self.log.display()
                );
            }
            if done(self) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not show {what} within {timeout:?}; its log: {}",
                self.kind.name(),
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.wait(timeout, "admin /ready = 200", |p| {
            http::get(p.admin, "/ready", "admin").is_some_and(|r| r.status == 200)
        })
    }

    /// Waits until a GET through the listener of `service` answers 200 (the listener bound, the routes and
    /// the cluster's endpoints applied).
    pub fn wait_route(&mut self, service: &Service, timeout: Duration) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], service.port));
        let what = format!(
            "a 200 through 127.0.0.1:{} for {}",
            service.port, service.host
        );
        self.wait(timeout, &what, |_| {
            http::get(addr, "/", &service.host).is_some_and(|r| r.status == 200)
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its memory now.
    pub fn memory(&self) -> Option<Memory> {
        process::memory(self.pid())
    }

    /// A part of its resident memory from `/proc/PID/status`, bytes: `RssAnon` (heap, stacks) or `RssFile`
    /// (the binary's and libraries' mapped pages, shared with every process mapping the same file).
    pub fn rss_part(&self, part: RssPart) -> Option<u64> {
        let field = match part {
            RssPart::Anon => "RssAnon:",
            RssPart::File => "RssFile:",
        };
        process::status_bytes(self.pid(), field)
    }

    /// Its user + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process::cpu_seconds(self.pid())
    }

    /// Its admin `/stats` (text).
    pub fn stats(&self) -> Option<String> {
        http::get(self.admin, "/stats", "admin").map(|r| r.body)
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Pins every thread it has now to `cpu` (threads it starts later inherit it from their creator); returns
    /// how many threads were pinned.
    pub fn pin(&self, cpu: usize) -> anyhow::Result<usize> {
        let pinned = pin::process(self.pid(), cpu).context("listing the proxy's threads")?;
        anyhow::ensure!(
            pinned > 0,
            "could not pin any thread of the proxy to CPU {cpu}"
        );
        Ok(pinned)
    }
}

impl Drop for ProxyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
