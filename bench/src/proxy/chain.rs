//! The proxies of one run, all of the same kind: one sidecar, or (mTLS setup) a sidecar and the gateway it
//! calls. The load talks to the first; what is measured (CPU seconds, resident memory, stats) is the sum
//! over all of them, so a request's whole cost through the chain is compared with Envoy's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sextant_bench::process::Memory;

use crate::process::{Kind, ProxyProc, RssPart};
use crate::setup::{Node, Service};

/// Running proxies, the one the load talks to first.
pub struct Chain {
    /// Which proxy they all are.
    pub kind: Kind,
    procs: Vec<ProxyProc>,
}

impl Chain {
    /// Starts one `kind` proxy (binary `bin`) per node, last first (the one called before its caller),
    /// each waited for until its admin is ready.
    pub fn start(
        kind: Kind,
        bin: &Path,
        dir: &Path,
        pilot: SocketAddr,
        nodes: &[Node],
        timeout: Duration,
    ) -> anyhow::Result<Chain> {
        let mut procs = Vec::with_capacity(nodes.len());
        for node in nodes.iter().rev() {
            procs.push(match kind {
                Kind::Envoy => ProxyProc::start_envoy(bin, dir, pilot, node, timeout)?,
                Kind::Sextant => ProxyProc::start_sextant(bin, dir, pilot, node, timeout)?,
            });
        }
        procs.reverse();
        Ok(Chain { kind, procs })
    }

    /// Waits until a GET through the first proxy's listener of `service` answers 200.
    pub fn wait_route(&mut self, service: &Service, timeout: Duration) -> anyhow::Result<()> {
        match self.procs.first_mut() {
            Some(front) => front.wait_route(service, timeout),
            None => anyhow::bail!("no proxy was started"),
        }
    }

    /// Their process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(ProxyProc::pid).collect()
    }

    /// Pins every thread of each to `cpu`; how many threads were pinned.
    pub fn pin(&self, cpu: usize) -> anyhow::Result<usize> {
        self.procs.iter().map(|p| p.pin(cpu)).sum()
    }

    /// Their admin `/stats`, one after the other (`None` if any cannot be read).
    pub fn stats(&self) -> Option<String> {
        self.procs.iter().map(ProxyProc::stats).collect()
    }

    /// The sum of their memory.
    pub fn memory(&self) -> Option<Memory> {
        self.procs
            .iter()
            .try_fold(Memory { rss: 0, hwm: 0 }, |sum, p| {
                let m = p.memory()?;
                Some(Memory {
                    rss: sum.rss + m.rss,
                    hwm: sum.hwm + m.hwm,
                })
            })
    }

    /// The sum of one part of their resident memory, bytes.
    pub fn rss_part(&self, part: RssPart) -> Option<u64> {
        self.procs.iter().map(|p| p.rss_part(part)).sum()
    }

    /// The sum of their user + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        self.procs.iter().map(ProxyProc::cpu_seconds).sum()
    }

    /// Whether all still run.
    pub fn alive(&mut self) -> bool {
        self.procs.iter_mut().all(ProxyProc::alive)
    }

    /// Their logs, comma-separated.
    pub fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| p.log.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The last `n` lines of each one's log, each under its file name.
    pub fn log_tail(&self, n: usize) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {}\n{}", p.log.display(), p.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
