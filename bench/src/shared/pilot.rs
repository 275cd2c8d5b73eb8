//! `sextant pilot` as a child process, shared by pilot-bench (the server under test) and proxy-bench (what
//! feeds both proxies): started on loopback ports the kernel picks (read back from its ready line) with its
//! log in a file, ready when `/ready` answers 200, measured through `/proc` ([`crate::process`]), killed on
//! drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

use crate::process::{self, Memory};
use crate::{child, http};

/// The running pilot.
pub struct Pilot {
    child: Child,
    /// Its ADS address.
    pub xds: SocketAddr,
    /// Its monitoring address.
    pub monitoring: SocketAddr,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Pilot {
    /// Starts `sextant pilot --config-dir config` on ports the kernel picks and waits (up to `timeout`)
    /// until it is ready.
    pub fn start(
        sextant: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Pilot> {
        Pilot::start_with(sextant, config, log, timeout, &[])
    }

    /// [`Pilot::start`] with more flags (e.g. `--hub-service HOST:PORT`).
    pub fn start_with(
        sextant: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
        extra: &[&str],
    ) -> anyhow::Result<Pilot> {
        let (out, err) = child::log_files(&log, "pilot")?;
        let child = Command::new(sextant)
            .arg("pilot")
            .arg("--config-dir")
            .arg(config)
            .args(["--xds-addr", "127.0.0.1:0"])
            .args(["--monitoring-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} pilot", sextant.display()))?;
        // Until its ready line names them, the addresses are unknown (the Pilot kills the child on an error).
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut pilot = Pilot {
            child,
            xds: unknown,
            monitoring: unknown,
            log,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = pilot.child.try_wait().context("waiting for pilot")? {
                anyhow::bail!(
                    "pilot exited with {status} before it was ready; its log: {}",
                    pilot.log.display()
                );
            }
            // `pilot: xDS on A, monitoring on http://B/debug/syncz`
            if pilot.monitoring == unknown
                && let Some(&[xds, monitoring, ..]) =
                    child::ready_addrs(&pilot.log, "pilot: xDS on ").as_deref()
            {
                (pilot.xds, pilot.monitoring) = (xds, monitoring);
            }
            if pilot.monitoring != unknown && pilot.ready() {
                return Ok(pilot);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "pilot was not ready within {timeout:?}; its log: {}",
                pilot.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether its `/ready` answers 200.
    fn ready(&self) -> bool {
        let host = self.monitoring.to_string();
        http::get_within(self.monitoring, "/ready", &host, Duration::from_secs(10))
            .is_some_and(|r| r.status == 200)
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now; `None` off Linux or once it exited.
    pub fn memory(&self) -> Option<Memory> {
        process::memory(self.pid())
    }

    /// Its user + system CPU seconds so far; `None` off Linux.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process::cpu_seconds(self.pid())
    }

    /// The first `networking configuration loaded` line of its log at or after `since`: when it was logged,
    /// and how long the load it reports took (its `read_ms`, `parse_ms`, `validate_ms` and `translate_ms`).
    pub fn reloaded_at(&self, since: SystemTime) -> Option<(SystemTime, Duration)> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines()
            .filter(|l| l.contains("networking configuration loaded"))
            .filter_map(|l| {
                let stamp =
                    chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok()?;
                let took: u64 = ["read_ms=", "parse_ms=", "validate_ms=", "translate_ms="]
                    .iter()
                    .filter_map(|field| {
                        let rest = &l[l.find(field)? + field.len()..];
                        rest.split(|c: char| !c.is_ascii_digit())
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum();
                Some((SystemTime::from(stamp), Duration::from_millis(took)))
            })
            .find(|(t, _)| *t >= since)
    }
}

impl Drop for Pilot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
