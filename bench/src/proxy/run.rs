//! One proxy (or chain of proxies of one kind) through the phases of a setup: started against the setup's
//! pilot, ready when a request through each tested listener answers 200, pinned, its idle memory read, then per protocol a short warm-up, the
//! closed-loop phase and the fixed-rate phase, each measured (proxy CPU, peak RSS, CPU busy, backend
//! counts). A phase that fails is reported as failed, with what the proxy logged, and the run goes on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Served};
use crate::chain::Chain;
use crate::load::{Load, Protocol};
use crate::parse::Outcome;
use crate::process::{Kind, RssPart};
use crate::report::{self, Phase, Row};
use crate::sample::{CpuTimes, RssSampler};
use crate::setup::{ConfigDir, Node, Service};
use crate::stats::sum_stats;

/// How long a proxy may take to start and to apply pilot's configuration.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The unmeasured closed-loop run before each protocol's phases (connections, pools, allocator warmed).
const WARM_UP: Duration = Duration::from_secs(1);
/// Lines of the proxy's log shown when a phase fails.
const LOG_LINES: usize = 20;

/// Everything a proxy run needs.
pub struct Bench<'a> {
    /// The load generators and their settings.
    pub load: Load<'a>,
    /// The backend.
    pub backend: &'a Backend,
    /// The setup's services.
    pub config: &'a ConfigDir,
    /// pilot's ADS address.
    pub pilot: SocketAddr,
    /// The proxies of the setup, the one the load talks to first.
    pub nodes: &'a [Node],
    /// Where logs go.
    pub dir: &'a Path,
    /// Length of each measured phase.
    pub duration: Duration,
    /// The protocols to run.
    pub protocols: &'a [Protocol],
    /// The CPU the proxy is pinned to, if any.
    pub proxy_cpu: Option<usize>,
}

impl Bench<'_> {
    /// Starts `kind` (binary `bin`), runs every protocol's phases and stops it. `rates` are the fixed rates per
    /// protocol; a protocol without one (Envoy, measured first) gets half the closed-loop rate just measured,
    /// which is added to `rates`.
    pub fn run(
        &self,
        kind: Kind,
        bin: &Path,
        rates: &mut Vec<(Protocol, f64)>,
    ) -> anyhow::Result<Vec<Row>> {
        eprintln!("  starting {} ({})", kind.name(), bin.display());
        let mut proxy = Chain::start(kind, bin, self.dir, self.pilot, self.nodes, READY_TIMEOUT)?;
        let served_before = self.backend.served();
        let started = Instant::now();
        for protocol in self.protocols {
            proxy.wait_route(self.service(*protocol), READY_TIMEOUT)?;
        }
        eprintln!(
            "  {} (pid {:?}) serves both listeners {:.2} s after its admin was ready",
            kind.name(),
            proxy.pids(),
            started.elapsed().as_secs_f64()
        );
        if let Some(cpu) = self.proxy_cpu {
            let n = proxy.pin(cpu)?;
            eprintln!("  pinned its {n} threads to CPU {cpu}");
        }
        let stats = proxy.stats().unwrap_or_default();
        // 5xx answered while the readiness probe waited for the cluster are not the load's.
        let rq_5xx_before = sum_stats(&stats, "downstream_rq_5xx");
        let rejected = sum_stats(&stats, "update_rejected");
        if rejected > 0 {
            eprintln!(
                "  WARNING: {} refused {rejected} xDS update(s) (update_rejected); its logs: {}",
                kind.name(),
                proxy.logs()
            );
        }
        // Let the configuration settle (Envoy's and the proxy's first seconds) before the idle sample.
        std::thread::sleep(Duration::from_secs(1));
        let rss_idle = proxy.memory().map(|m| m.rss);
        let anon_idle = proxy.rss_part(RssPart::Anon);
        let file_idle = proxy.rss_part(RssPart::File);
        eprintln!(
            "  {} idle: VmRSS {}, of which anonymous (RssAnon) {}, file-backed (RssFile) {}",
            kind.name(),
            report::mb(rss_idle),
            report::mb(anon_idle),
            report::mb(file_idle)
        );
        let mut rows = Vec::new();
        for &protocol in self.protocols {
            let max = self.closed_loop(&mut proxy, protocol);
            let rate = match rates.iter().find(|(p, _)| *p == protocol) {
                Some((_, r)) => Some(*r),
                None => {
                    let half = max.as_ref().ok().map(|m| m.outcome.rps / 2.0);
                    if let Some(r) = half.filter(|r| *r >= 1.0) {
                        rates.push((protocol, r));
                    }
                    half
                }
            };
            let fixed = match rate.filter(|r| *r >= 1.0) {
                Some(rate) => self.fixed_rate(&mut proxy, protocol, rate),
                None => Err("no fixed rate: Envoy's closed-loop phase measured nothing".into()),
            };
            rows.push(Row {
                proxy: kind,
                protocol,
                max,
                fixed,
                rss_idle,
                anon_idle,
                file_idle,
            });
        }
        let stats = proxy.stats().unwrap_or_default();
        let rq_5xx = sum_stats(&stats, "downstream_rq_5xx").saturating_sub(rq_5xx_before);
        if rq_5xx > 0 {
            eprintln!(
                "  {} counted {rq_5xx} downstream 5xx responses under load (its /stats downstream_rq_5xx)",
                kind.name()
            );
        }
        let hwm = proxy.memory().map(|m| m.hwm);
        let served = self.backend.served();
        eprintln!(
            "  stopping {}; its peak RSS (VmHWM) was {}; it opened {} connections to the backend for {} requests",
            kind.name(),
            report::mb(hwm),
            served.connections - served_before.connections,
            served.requests - served_before.requests
        );
        Ok(rows)
    }

    fn service(&self, protocol: Protocol) -> &Service {
        match protocol {
            Protocol::H1 => &self.config.h1,
            Protocol::H2 => &self.config.h2,
        }
    }

    fn closed_loop(&self, proxy: &mut Chain, protocol: Protocol) -> Result<Phase, String> {
        let service = self.service(protocol);
        eprintln!(
            "  {} {}: warm-up {} s, then closed loop for {} s ({} connections{})",
            proxy.kind.name(),
            protocol.name(),
            WARM_UP.as_secs(),
            self.duration.as_secs(),
            self.load.connections,
            self.streams_note(protocol)
        );
        // The warm-up's result does not count; a failure shows again in the measured run.
        let _ = self.load.max(protocol, service, WARM_UP);
        let phase = self.measure(proxy, || self.load.max(protocol, service, self.duration))?;
        eprintln!(
            "    {:.0} rps, {} failures, proxy CPU {} s",
            phase.outcome.rps,
            phase.failures(),
            phase.cpu.map_or_else(|| "?".into(), |c| format!("{c:.2}"))
        );
        Ok(phase)
    }

    fn fixed_rate(
        &self,
        proxy: &mut Chain,
        protocol: Protocol,
        rate: f64,
    ) -> Result<Phase, String> {
        let service = self.service(protocol);
        eprintln!(
            "  {} {}: fixed rate {rate:.0} rps for {} s (h2load --rps, {} connections{})",
            proxy.kind.name(),
            protocol.name(),
            self.duration.as_secs(),
            self.load.connections,
            self.streams_note(protocol)
        );
        let phase = self.measure(proxy, || {
            self.load.fixed(protocol, service, self.duration, rate)
        })?;
        if let Some(l) = phase.outcome.latency {
            eprintln!(
                "    {:.0} rps, {} failures, p50 {:.3} ms, p99 {:.3} ms",
                phase.outcome.rps,
                phase.failures(),
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3
            );
        }
        Ok(phase)
    }

    fn streams_note(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::H1 => String::new(),
            Protocol::H2 => format!(" × {} streams", self.load.streams),
        }
    }

    /// [`measure`] for the proxy under test.
    fn measure(
        &self,
        proxy: &mut Chain,
        load: impl FnOnce() -> anyhow::Result<Outcome>,
    ) -> Result<Phase, String> {
        measure(Some(proxy), self.backend, load)
    }
}

/// Runs `load` while sampling `proxy` (none: the load goes straight to `backend`); a failed load or a proxy
/// that died is an error naming what the proxy logged last.
pub fn measure(
    mut proxy: Option<&mut Chain>,
    backend: &Backend,
    load: impl FnOnce() -> anyhow::Result<Outcome>,
) -> Result<Phase, String> {
    let before = (
        proxy.as_deref().and_then(Chain::cpu_seconds),
        CpuTimes::now(),
        backend.served(),
        Instant::now(),
    );
    let sampler = RssSampler::start(proxy.as_deref().map(Chain::pids).unwrap_or_default());
    let outcome = load();
    let rss_peak = sampler.finish();
    let wall = before.3.elapsed();
    let cpu = proxy
        .as_deref()
        .and_then(Chain::cpu_seconds)
        .zip(before.0)
        .map(|(a, b)| a - b);
    let busy = before.1.busy_until(&CpuTimes::now());
    let now = backend.served();
    let backend = Served {
        connections: now.connections - before.2.connections,
        requests: now.requests - before.2.requests,
    };
    let alive = proxy.as_deref_mut().is_none_or(Chain::alive);
    let proxy = proxy.as_deref();
    let failed = |what: String| {
        let msg = match proxy {
            Some(p) => format!(
                "{what}; {} {}; the last lines of its logs:\n{}",
                p.kind.name(),
                if alive { "still runs" } else { "EXITED" },
                p.log_tail(LOG_LINES)
            ),
            None => what,
        };
        eprintln!("    FAILED: {msg}");
        msg
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return Err(failed(format!("{e:#}"))),
    };
    if !alive {
        return Err(failed("the proxy exited during the phase".into()));
    }
    if outcome.responses.saturating_sub(outcome.ok) + outcome.errors > 0 {
        eprintln!("    FAILURES: {}", outcome.error_detail);
        if let Some(p) = proxy {
            eprintln!(
                "    the last lines of {}'s log:\n{}",
                p.kind.name(),
                p.log_tail(LOG_LINES)
            );
        }
    }
    Ok(Phase {
        outcome,
        cpu,
        wall,
        busy,
        backend,
        rss_peak,
    })
}
