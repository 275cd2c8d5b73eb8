//! The mesh setup's run: the hub and two pilots (with and without `--hub-service`, the same configuration),
//! then each variant in turn — the load straight to the backend, then a chain of two sidecars (`front` →
//! mesh mTLS → `web`) of each proxy with and without the hub — at one fixed rate, measured as the other
//! setups' fixed-rate phases are (h2load `--rps`, latency from its per-request log), with what the hub and
//! web's sidecar counted during the phase.

use std::path::Path;
use std::time::Duration;

use sextant_bench::pilot::Pilot;

use super::config::{self, FRONT, MeshConfig, WEB};
use crate::backend::Backend;
use crate::chain::Chain;
use crate::hub::{HubCounts, HubProc};
use crate::load::{Load, Protocol};
use crate::process::Kind;
use crate::report::Phase;
use crate::run;
use crate::setup::Service;
use crate::stats::sum_stats;

/// How long proxies, pilot and the hub may take to start (the hub's first start compiles its adapters).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The unmeasured run at the same rate before each measured phase (connections, mTLS sessions, the check
/// cache, the hub's report streams).
const WARM_UP: Duration = Duration::from_secs(2);

/// What the load goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// The sidecars' proxy; `None`: straight to the backend.
    pub kind: Option<Kind>,
    /// Whether pilot gives the sidecars the hub (`--hub-service`).
    pub hub: bool,
}

impl Variant {
    /// Every variant, in the order they run: direct first, the baseline of the others.
    pub const ALL: [Variant; 5] = [
        Variant {
            kind: None,
            hub: false,
        },
        Variant {
            kind: Some(Kind::Sextant),
            hub: true,
        },
        Variant {
            kind: Some(Kind::Sextant),
            hub: false,
        },
        Variant {
            kind: Some(Kind::Envoy),
            hub: true,
        },
        Variant {
            kind: Some(Kind::Envoy),
            hub: false,
        },
    ];

    /// Its name in the output.
    pub fn name(self) -> String {
        match (self.kind, self.hub) {
            (None, _) => "direct".into(),
            (Some(k), true) => format!("{} mesh + hub", k.name()),
            (Some(k), false) => format!("{} mesh", k.name()),
        }
    }

    /// Its log directory's name.
    fn slug(self) -> String {
        self.name().replace(" + ", "-").replace(' ', "-")
    }
}

/// What the sidecars and the hub did during one phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubUse {
    /// What the hub counted (Check decisions over every front door, reported bags).
    pub hub: Option<HubCounts>,
    /// The hub's CPU seconds.
    pub hub_cpu: Option<f64>,
    /// web's sidecar's Check calls to the hub (`hub.check.calls`; the Sextant proxy only).
    pub check_calls: Option<u64>,
    /// Requests web's sidecar decided from its cache (`hub.check.cache_hit`).
    pub cache_hits: Option<u64>,
    /// Report calls of both sidecars (`hub.report.calls`).
    pub report_calls: Option<u64>,
}

/// One variant's results for one protocol.
#[derive(Clone, Debug)]
pub struct MeshRow {
    /// What the load went through.
    pub variant: Variant,
    /// The protocol of the load.
    pub protocol: Protocol,
    /// The fixed-rate phase; the error text if it could not run.
    pub phase: Result<Phase, String>,
    /// What the hub and the sidecars did during it.
    pub hub: HubUse,
}

/// Everything the mesh run needs.
pub struct MeshBench<'a> {
    /// The load generators and their settings.
    pub load: Load<'a>,
    /// The backend.
    pub backend: &'a Backend,
    /// The `sextant` binary (hub, pilot, proxy).
    pub sextant: &'a Path,
    /// The Envoy binary.
    pub envoy: &'a Path,
    /// Where configuration and logs go.
    pub dir: &'a Path,
    /// Length of each measured phase.
    pub duration: Duration,
    /// The fixed rate, requests per second in all.
    pub rate: f64,
    /// The protocols to run.
    pub protocols: &'a [Protocol],
    /// The CPU both sidecars are pinned to, if any.
    pub proxy_cpu: Option<usize>,
}

impl MeshBench<'_> {
    /// Runs every variant; a variant that cannot start is reported in its rows and the run goes on.
    pub fn run(&self) -> anyhow::Result<Vec<MeshRow>> {
        let hub_config = self.dir.join("hub-config");
        config::write_hub_config(&hub_config)?;
        let hub = HubProc::start(
            self.sextant,
            &hub_config,
            self.dir.join("hub.log"),
            READY_TIMEOUT,
        )?;
        eprintln!("  hub ready: gRPC on {}, admin on {}", hub.grpc, hub.admin);
        let config = MeshConfig::write(&self.dir.join("config"), self.backend.addr, hub.grpc)?;
        let pilot = |log: &str, extra: &[&str]| {
            Pilot::start_with(
                self.sextant,
                config.path(),
                self.dir.join(log),
                READY_TIMEOUT,
                extra,
            )
        };
        let with_hub = pilot("pilot-hub.log", &["--hub-service", &config.hub_service])?;
        let without = pilot("pilot.log", &[])?;
        eprintln!(
            "  pilots ready: xDS on {} (--hub-service {}) and {} (no hub)",
            with_hub.xds, config.hub_service, without.xds
        );
        let mut rows = Vec::new();
        for variant in Variant::ALL {
            let pilot = if variant.hub { &with_hub } else { &without };
            let ran = match variant.kind {
                None => Ok(self.direct()),
                Some(kind) => self.through_mesh(variant, kind, pilot, &config, &hub),
            };
            match ran {
                Ok(more) => rows.extend(more),
                Err(e) => {
                    eprintln!("  {}: {e:#}", variant.name());
                    rows.extend(self.protocols.iter().map(|&protocol| MeshRow {
                        variant,
                        protocol,
                        phase: Err(format!("{e:#}")),
                        hub: HubUse::default(),
                    }));
                }
            }
        }
        Ok(rows)
    }

    /// The load straight to the backend.
    fn direct(&self) -> Vec<MeshRow> {
        let service = Service {
            host: "backend".into(),
            port: self.backend.addr.port(),
        };
        let variant = Variant::ALL[0];
        self.protocols
            .iter()
            .map(|&protocol| MeshRow {
                variant,
                protocol,
                phase: {
                    self.warm_up(variant, protocol, &service);
                    self.measured(None, protocol, &service)
                },
                hub: HubUse::default(),
            })
            .collect()
    }

    /// The load through `front` → `web`, both `kind`, fed by `pilot`.
    fn through_mesh(
        &self,
        variant: Variant,
        kind: Kind,
        pilot: &Pilot,
        config: &MeshConfig,
        hub: &HubProc,
    ) -> anyhow::Result<Vec<MeshRow>> {
        let dir = self.dir.join(variant.slug());
        std::fs::create_dir_all(&dir)?;
        let bin = match kind {
            Kind::Envoy => self.envoy,
            Kind::Sextant => self.sextant,
        };
        eprintln!(
            "  {}: starting front and web ({})",
            variant.name(),
            bin.display()
        );
        let mut chain = Chain::start(kind, bin, &dir, pilot.xds, &[FRONT, WEB], READY_TIMEOUT)?;
        for &protocol in self.protocols {
            chain.wait_route(service(config, protocol), READY_TIMEOUT)?;
        }
        if let Some(cpu) = self.proxy_cpu {
            let n = chain.pin(cpu)?;
            eprintln!("    pinned their {n} threads to CPU {cpu}");
        }
        let rejected = sum_stats(&chain.stats().unwrap_or_default(), "update_rejected");
        if rejected > 0 {
            eprintln!(
                "    WARNING: {rejected} xDS update(s) refused (update_rejected); logs: {}",
                chain.logs()
            );
        }
        let mut rows = Vec::new();
        for &protocol in self.protocols {
            let service = service(config, protocol);
            self.warm_up(variant, protocol, service);
            let before = Counters::read(&chain, hub);
            let phase = self.measured(Some(&mut chain), protocol, service);
            let after = Counters::read(&chain, hub);
            rows.push(MeshRow {
                variant,
                protocol,
                phase,
                hub: before.until(&after),
            });
        }
        let whole = Counters::read(&chain, hub);
        if variant.hub && kind == Kind::Sextant {
            eprintln!(
                "    over web's whole run (readiness probes and warm-ups included): {} Check calls, {} cache hits",
                whole.check_calls, whole.cache_hits
            );
        }
        Ok(rows)
    }

    /// The unmeasured run before a measured phase, at the same rate.
    fn warm_up(&self, variant: Variant, protocol: Protocol, service: &Service) {
        eprintln!(
            "    {} {}: warm-up {} s, then {:.0} rps for {} s (h2load --rps, {} connections)",
            variant.name(),
            protocol.name(),
            WARM_UP.as_secs(),
            self.rate,
            self.duration.as_secs(),
            self.load.connections
        );
        // The warm-up's result does not count; a failure shows again in the measured run.
        let _ = self.load.fixed(protocol, service, WARM_UP, self.rate);
    }

    /// The measured phase at the fixed rate.
    fn measured(
        &self,
        chain: Option<&mut Chain>,
        protocol: Protocol,
        service: &Service,
    ) -> Result<Phase, String> {
        let phase = run::measure(chain, self.backend, || {
            self.load.fixed(protocol, service, self.duration, self.rate)
        })?;
        if let Some(l) = phase.outcome.latency {
            eprintln!(
                "      {:.0} rps, {} failures, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
                phase.outcome.rps,
                phase.failures(),
                l.p50.as_secs_f64() * 1e3,
                l.p90.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3
            );
        }
        Ok(phase)
    }
}

/// front's listener for `protocol`.
fn service(config: &MeshConfig, protocol: Protocol) -> &Service {
    match protocol {
        Protocol::H1 => &config.h1,
        Protocol::H2 => &config.h2,
    }
}

/// The counters a phase is measured by, read before and after it.
struct Counters {
    hub: Option<HubCounts>,
    hub_cpu: Option<f64>,
    check_calls: u64,
    cache_hits: u64,
    report_calls: u64,
    read: bool,
}

impl Counters {
    fn read(chain: &Chain, hub: &HubProc) -> Counters {
        // Only web's sidecar checks; front's hub filter (outbound) only reports, so the sums are web's.
        let stats = chain.stats();
        let text = stats.as_deref().unwrap_or_default();
        Counters {
            hub: hub.counts(),
            hub_cpu: hub.cpu_seconds(),
            check_calls: sum_stats(text, "hub.check.calls"),
            cache_hits: sum_stats(text, "hub.check.cache_hit"),
            report_calls: sum_stats(text, "hub.report.calls"),
            read: stats.is_some(),
        }
    }

    /// What changed between `self` (earlier) and `later`; the sidecars' counters only if they have a hub
    /// filter (the Sextant proxy's) and both reads worked.
    fn until(&self, later: &Counters) -> HubUse {
        let filter = self.read && later.read && later.check_calls + later.report_calls > 0;
        let delta = |a: u64, b: u64| filter.then(|| b.saturating_sub(a));
        HubUse {
            hub: self.hub.zip(later.hub).map(|(a, b)| a.until(b)),
            hub_cpu: self.hub_cpu.zip(later.hub_cpu).map(|(a, b)| b - a),
            check_calls: delta(self.check_calls, later.check_calls),
            cache_hits: delta(self.cache_hits, later.cache_hits),
            report_calls: delta(self.report_calls, later.report_calls),
        }
    }
}
