//! The load generators as child processes: wrk (HTTP/1.1, closed loop) and h2load (HTTP/2 closed loop, and
//! both protocols at a fixed rate with `--rps`, since wrk2 is not available and wrk does not limit its rate).
//! They inherit this process's CPU affinity (the load side's CPU once `main` pinned itself).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use crate::parse::{self, Outcome};
use crate::setup::Service;

/// How to get the load generators on Debian or Ubuntu.
pub const INSTALL_HINT: &str = "install them with `apt-get install -y wrk nghttp2-client`";

/// The protocol the load generator speaks to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/1.1.
    H1,
    /// HTTP/2 over cleartext, prior knowledge.
    H2,
}

impl Protocol {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::H1 => "HTTP/1.1",
            Protocol::H2 => "HTTP/2",
        }
    }
}

/// Where the load generators are.
pub struct Tools {
    wrk: PathBuf,
    h2load: PathBuf,
}

/// `name` in a directory of `$PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    /// Finds wrk and h2load on `$PATH`; the error names the missing ones and how to install them.
    pub fn find() -> anyhow::Result<Tools> {
        let (wrk, h2load) = (on_path("wrk"), on_path("h2load"));
        let missing: Vec<&str> = [("wrk", wrk.is_none()), ("h2load", h2load.is_none())]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| *n)
            .collect();
        match (wrk, h2load) {
            (Some(wrk), Some(h2load)) => Ok(Tools { wrk, h2load }),
            _ => anyhow::bail!(
                "{} not found on PATH; {INSTALL_HINT}",
                missing.join(" and ")
            ),
        }
    }
}

/// The load every proxy gets.
pub struct Load<'a> {
    /// The generators.
    pub tools: &'a Tools,
    /// Connections (wrk `-c`, h2load `-c`).
    pub connections: usize,
    /// HTTP/2 streams in flight per connection (h2load `-m`; HTTP/1.1 always 1, no pipelining).
    pub streams: usize,
    /// Where h2load's per-request logs go (deleted once read).
    pub dir: &'a Path,
}

/// Whole seconds, at least one (both tools take seconds).
fn seconds(d: Duration) -> String {
    d.as_secs().max(1).to_string()
}

impl Load<'_> {
    /// Closed loop for `duration`: every connection sends its next request as soon as a response ends.
    pub fn max(
        &self,
        protocol: Protocol,
        service: &Service,
        duration: Duration,
    ) -> anyhow::Result<Outcome> {
        let url = format!("http://127.0.0.1:{}/", service.port);
        match protocol {
            Protocol::H1 => {
                let mut cmd = Command::new(&self.tools.wrk);
                cmd.args(["-t", "1", "-c", &self.connections.to_string()])
                    .args(["-d", &format!("{}s", seconds(duration)), "--latency"])
                    .args(["-H", &format!("Host: {}", service.host)])
                    .arg(&url);
                parse::wrk(&run(cmd, "wrk")?)
            }
            Protocol::H2 => {
                let mut cmd = self.h2load(protocol, service, duration);
                cmd.arg(&url);
                parse::h2load(&run(cmd, "h2load")?)
            }
        }
    }

    /// Open loop at `rate` requests per second in all (h2load `--rps`, per connection), latency percentiles
    /// from h2load's per-request log.
    pub fn fixed(
        &self,
        protocol: Protocol,
        service: &Service,
        duration: Duration,
        rate: f64,
    ) -> anyhow::Result<Outcome> {
        let log = self.dir.join(format!("h2load-{}.log", std::process::id()));
        let mut cmd = self.h2load(protocol, service, duration);
        cmd.args(["--rps", &format!("{:.3}", rate / self.connections as f64)])
            .arg("--log-file")
            .arg(&log)
            .arg(format!("http://127.0.0.1:{}/", service.port));
        let mut o = parse::h2load(&run(cmd, "h2load")?)?;
        let text = std::fs::read_to_string(&log)
            .with_context(|| format!("reading h2load's log {}", log.display()))?;
        let _ = std::fs::remove_file(&log);
        let (latency, _failed) = parse::h2load_log(&text);
        o.latency = latency;
        Ok(o)
    }

    /// h2load for `protocol` with the connections, streams, duration and `Host`; the URL still to add.
    fn h2load(&self, protocol: Protocol, service: &Service, duration: Duration) -> Command {
        let mut cmd = Command::new(&self.tools.h2load);
        let streams = match protocol {
            Protocol::H1 => {
                cmd.arg("--h1");
                1
            }
            Protocol::H2 => self.streams,
        };
        cmd.args(["-t", "1", "-c", &self.connections.to_string()])
            .args(["-m", &streams.to_string(), "-D", &seconds(duration)])
            // `host:` would be sent as a header beside h2load's own authority; `:authority` replaces it (and
            // becomes `Host` with --h1).
            .args(["-H", &format!(":authority: {}", service.host)]);
        cmd
    }
}

/// Runs a load generator to its end; its stdout, or an error with its stderr.
fn run(mut cmd: Command, name: &str) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {name}; {INSTALL_HINT}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "{name} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        stdout.trim()
    );
    Ok(stdout)
}
