//! `sextant hub` as a child process for the mesh setup: started on a configuration directory on ports the
//! kernel picks (read back from its `hub: gRPC on …` line), ready when `/readyz` answers 200, its Check and
//! Report counts read from its `/metrics`, killed on drop. It inherits this process's CPU affinity (the load
//! side's CPU).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sextant_bench::{child, http, process, prom};

/// The running hub.
pub struct HubProc {
    child: Child,
    /// Its gRPC address (Mixer Check and Report, ext_authz, access-log service).
    pub grpc: SocketAddr,
    /// Its admin address (`/readyz`, `/metrics`).
    pub admin: SocketAddr,
    /// Its log.
    pub log: PathBuf,
}

/// What the hub has answered so far, from its `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubCounts {
    /// Check decisions, every front door (native Check, ext_authz) and result.
    pub checks: f64,
    /// Reported attribute bags, every front door (native Report, access-log service) and result.
    pub reports: f64,
}

impl HubCounts {
    /// What happened between `self` (earlier) and `later`.
    pub fn until(self, later: HubCounts) -> HubCounts {
        HubCounts {
            checks: later.checks - self.checks,
            reports: later.reports - self.reports,
        }
    }
}

impl HubProc {
    /// Starts `sextant hub --config-dir config` with its log in `log`; waits (up to `timeout`: the first
    /// start compiles the builtin adapters) until it is ready.
    pub fn start(
        sextant: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<HubProc> {
        let (out, err) = child::log_files(&log, "hub")?;
        let child = Command::new(sextant)
            .arg("hub")
            .arg("--config-dir")
            .arg(config)
            .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--prometheus-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} hub", sextant.display()))?;
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut hub = HubProc {
            child,
            grpc: unknown,
            admin: unknown,
            log,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = hub.child.try_wait().context("waiting for the hub")? {
                anyhow::bail!(
                    "the hub exited with {status} before it was ready; its log: {}",
                    hub.log.display()
                );
            }
            // `hub: gRPC on A, admin on http://B/readyz, prometheus on http://C/metrics`
            if hub.admin == unknown
                && let Some(&[grpc, admin, ..]) =
                    child::ready_addrs(&hub.log, "hub: gRPC on ").as_deref()
            {
                (hub.grpc, hub.admin) = (grpc, admin);
            }
            if hub.admin != unknown
                && http::get(hub.admin, "/readyz", "admin").is_some_and(|r| r.status == 200)
            {
                return Ok(hub);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the hub was not ready within {timeout:?}; its log: {}",
                hub.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its Check and Report counts so far (`None` if `/metrics` cannot be read).
    pub fn counts(&self) -> Option<HubCounts> {
        let text = http::get(self.admin, "/metrics", "admin")?.body;
        Some(HubCounts {
            checks: prom::sum(&text, "sextant_hub_checks_total", ""),
            reports: prom::sum(&text, "sextant_hub_reports_total", ""),
        })
    }

    /// Its user + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process::cpu_seconds(self.child.id())
    }
}

impl Drop for HubProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
