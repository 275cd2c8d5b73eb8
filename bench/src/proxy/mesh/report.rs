//! The mesh setup's output: per variant and protocol the latency at the fixed rate and what it adds over the
//! load going straight to the backend, then what the hub did, and issue 16's goals (reported, never
//! asserted): the Sextant mesh with the hub adds at most 0.5 ms at p90, and calls the hub's Check for at most
//! 1 % of the requests.

use std::time::Duration;

use super::run::{MeshRow, Variant};
use crate::load::Protocol;
use crate::parse::Percentiles;
use crate::process::Kind;
use crate::report::{ms, verdict};
use crate::sample;

/// Goal: latency the Sextant mesh with the hub adds at p90.
const ADDED_P90_GOAL: Duration = Duration::from_micros(500);
/// Goal: the share of requests for which web's sidecar calls the hub's Check.
const CHECK_SHARE_GOAL: f64 = 0.01;

/// `later - earlier` in ms, signed.
fn delta(later: Option<Duration>, earlier: Option<Duration>) -> String {
    match later.zip(earlier) {
        Some((l, e)) => format!("{:+.3}", (l.as_secs_f64() - e.as_secs_f64()) * 1e3),
        None => "-".into(),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.3} %", v * 100.0))
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl MeshRow {
    fn latency(&self) -> Option<Percentiles> {
        self.phase.as_ref().ok()?.outcome.latency
    }

    /// Requests that got a response during the phase.
    fn responses(&self) -> Option<u64> {
        Some(self.phase.as_ref().ok()?.outcome.responses)
    }

    /// Check calls to the hub during the phase: web's sidecar's own count (the Sextant proxy), else what
    /// the hub counted (Envoy's ext_authz: a call per request); none without the hub.
    fn check_calls(&self) -> Option<f64> {
        if !self.variant.hub {
            return None;
        }
        self.hub
            .check_calls
            .map(|c| c as f64)
            .or_else(|| self.hub.hub.map(|h| h.checks))
    }

    /// [`MeshRow::check_calls`] over the requests.
    fn check_share(&self) -> Option<f64> {
        let n = self.responses().filter(|n| *n > 0)? as f64;
        Some(self.check_calls()? / n)
    }
}

/// Prints the mesh setup's tables, details and goals.
pub fn print(setup: &str, rows: &[MeshRow]) {
    println!();
    println!("== {setup}");
    println!(
        "{:<20} {:<8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8}",
        "variant",
        "protocol",
        "rps",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "+p50 ms",
        "+p90 ms",
        "+p99 ms",
        "CPU s",
        "failures"
    );
    for r in rows {
        let direct = rows
            .iter()
            .find(|d| d.variant.kind.is_none() && d.protocol == r.protocol)
            .and_then(MeshRow::latency);
        let lat = r.latency();
        let phase = r.phase.as_ref().ok();
        let added = |f: fn(&Percentiles) -> Duration| {
            if r.variant.kind.is_none() {
                String::new()
            } else {
                delta(lat.as_ref().map(f), direct.as_ref().map(f))
            }
        };
        println!(
            "{:<20} {:<8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8}",
            r.variant.name(),
            r.protocol.name(),
            phase.map_or_else(|| "-".into(), |p| format!("{:.0}", p.outcome.rps)),
            ms(lat.map(|l| l.p50)),
            ms(lat.map(|l| l.p90)),
            ms(lat.map(|l| l.p99)),
            added(|l| l.p50),
            added(|l| l.p90),
            added(|l| l.p99),
            phase
                .and_then(|p| p.cpu)
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            phase.map_or_else(|| "n/a".into(), |p| p.failures().to_string()),
        );
    }
    println!(
        "+pNN = the variant's percentile minus direct's (same protocol): the latency the mesh adds; CPU s = both \
         sidecars' CPU seconds during the phase; failures = non-2xx responses + requests without a response"
    );
    println!();
    println!(
        "{:<20} {:<8} {:>9} {:>11} {:>11} {:>10} {:>12} {:>10} {:>9}",
        "variant",
        "protocol",
        "requests",
        "Check calls",
        "calls/req",
        "cache hits",
        "Report calls",
        "hub bags",
        "hub CPU s"
    );
    for r in rows.iter().filter(|r| r.variant.hub) {
        println!(
            "{:<20} {:<8} {:>9} {:>11} {:>11} {:>10} {:>12} {:>10} {:>9}",
            r.variant.name(),
            r.protocol.name(),
            opt(r.responses()),
            r.check_calls()
                .map_or_else(|| "-".into(), |c| format!("{c:.0}")),
            percent(r.check_share()),
            opt(r.hub.cache_hits),
            opt(r.hub.report_calls),
            r.hub
                .hub
                .map_or_else(|| "-".into(), |h| format!("{:.0}", h.reports)),
            r.hub
                .hub_cpu
                .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
        );
    }
    println!(
        "Check calls: web's sidecar's `hub.check.calls` (sextant; `cache hits` its `hub.check.cache_hit`), the \
         hub's Check decisions for Envoy (ext_authz, uncached); Report calls: both sidecars' `hub.report.calls` \
         (Envoy streams its access logs); hub bags: requests the hub was told of (both sidecars report)"
    );
    for protocol in [Protocol::H1, Protocol::H2] {
        let goal_row = rows.iter().find(|r| {
            r.protocol == protocol
                && r.variant
                    == Variant {
                        kind: Some(Kind::Sextant),
                        hub: true,
                    }
        });
        let direct = rows
            .iter()
            .find(|r| r.protocol == protocol && r.variant.kind.is_none());
        if let (Some(r), Some(d)) = (goal_row, direct) {
            goals(protocol, r, d);
        }
    }
    for r in rows {
        details(r);
    }
}

/// Whether the goals hold for the Sextant mesh with the hub (`r`), against `direct`.
fn goals(protocol: Protocol, r: &MeshRow, direct: &MeshRow) {
    let added = r
        .latency()
        .zip(direct.latency())
        .map(|(m, d)| m.p90.as_secs_f64() - d.p90.as_secs_f64());
    let share = r.check_share();
    println!(
        "  goals {}: sextant mesh + hub adds ≤ {:.1} ms at p90: {} ({} ms); hub Check calls ≤ {:.0} % of requests: \
         {} ({})",
        protocol.name(),
        ADDED_P90_GOAL.as_secs_f64() * 1e3,
        verdict(added.map(|a| a <= ADDED_P90_GOAL.as_secs_f64())),
        added.map_or_else(|| "?".into(), |a| format!("{:+.3}", a * 1e3)),
        CHECK_SHARE_GOAL * 100.0,
        verdict(share.map(|s| s <= CHECK_SHARE_GOAL)),
        percent(share),
    );
}

/// Where one row's numbers came from, and what failed.
fn details(r: &MeshRow) {
    match &r.phase {
        Ok(p) => println!(
            "  {} {}: {} responses ({} 2xx) in {:.1} s, p999 {} ms over {} 2xx responses; {}; backend saw {} \
             requests on {} new connections{}",
            r.variant.name(),
            r.protocol.name(),
            p.outcome.responses,
            p.outcome.ok,
            p.wall.as_secs_f64(),
            ms(p.outcome.latency.and_then(|l| l.p999)),
            p.outcome.latency.map_or(0, |l| l.samples),
            sample::describe_busy(&p.busy),
            p.backend.requests,
            p.backend.connections,
            if p.outcome.error_detail.is_empty() {
                String::new()
            } else {
                format!("; FAILURES: {}", p.outcome.error_detail)
            }
        ),
        Err(e) => println!("  {} {}: FAILED: {e}", r.variant.name(), r.protocol.name()),
    }
}
