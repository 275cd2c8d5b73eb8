//! Outlier detection as Envoy's consecutive-errors detectors: a host answering 5xx (or 502-504, or failing to
//! connect or answer) several times in a row is ejected from balancing for a time that grows with each
//! ejection, within a maximum share of ejected hosts; ejections are reviewed every interval.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use proxy_config::cluster::Outlier;
use proxy_stats::{Counter, Gauge, Scope, Stats};

use crate::host::Host;
use crate::host_set::HostSet;

/// What an attempt to a host came to, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response: the connection failed, was reset, or timed out.
    LocalFailure,
}

#[derive(Debug)]
struct OutlierStats {
    enforced_total: Counter,
    active: Gauge,
    overflow: Counter,
    detected_5xx: Counter,
    enforced_5xx: Counter,
    detected_gateway: Counter,
    enforced_gateway: Counter,
}

/// One cluster's detector.
#[derive(Debug)]
pub(crate) struct Detector {
    config: Outlier,
    next_review: Mutex<Instant>,
    stats: OutlierStats,
}

impl Detector {
    pub(crate) fn new(config: Outlier, stats: &Stats, cluster: &str) -> Detector {
        let scope = Scope::Cluster(cluster.to_string());
        let c = |n: &str| stats.counter(&scope, &format!("outlier_detection.{n}"));
        Detector {
            config,
            next_review: Mutex::new(Instant::now() + config.interval),
            stats: OutlierStats {
                enforced_total: c("ejections_enforced_total"),
                active: stats.gauge(&scope, "outlier_detection.ejections_active"),
                overflow: c("ejections_overflow"),
                detected_5xx: c("ejections_detected_consecutive_5xx"),
                enforced_5xx: c("ejections_enforced_consecutive_5xx"),
                detected_gateway: c("ejections_detected_consecutive_gateway_failure"),
                enforced_gateway: c("ejections_enforced_consecutive_gateway_failure"),
            },
        }
    }

    /// Records `outcome` of an attempt to `host` (one of `set`); true when it ejected the host.
    pub(crate) fn record(&self, host: &Host, set: &HostSet, outcome: Outcome) -> bool {
        let state = &host.outlier;
        let (server_error, gateway_error) = match outcome {
            Outcome::LocalFailure => (true, true),
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
        };
        let bump = |counter: &AtomicU32, failed: bool| {
            if failed {
                counter.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                counter.store(0, Ordering::Relaxed);
                0
            }
        };
        let in_a_row_5xx = bump(&state.consecutive_5xx, server_error);
        let in_a_row_gateway = bump(&state.consecutive_gateway, gateway_error);
        let (threshold, enforcing) = self.config.consecutive_5xx;
        if in_a_row_5xx >= threshold && threshold > 0 {
            state.consecutive_5xx.store(0, Ordering::Relaxed);
            self.stats.detected_5xx.inc();
            if chance(enforcing) && self.eject(host, set) {
                self.stats.enforced_5xx.inc();
                return true;
            }
        }
        let (threshold, enforcing) = self.config.consecutive_gateway;
        if in_a_row_gateway >= threshold && threshold > 0 {
            state.consecutive_gateway.store(0, Ordering::Relaxed);
            self.stats.detected_gateway.inc();
            if chance(enforcing) && self.eject(host, set) {
                self.stats.enforced_gateway.inc();
                return true;
            }
        }
        false
    }

    fn eject(&self, host: &Host, set: &HostSet) -> bool {
        if host.ejected() {
            return false;
        }
        let ejected = set.all().iter().filter(|h| h.ejected()).count();
        // At least one host may always be ejected, as in Envoy.
        if ejected > 0
            && (ejected + 1) * 100 > set.all().len() * self.config.max_ejection_percent as usize
        {
            self.stats.overflow.inc();
            return false;
        }
        host.outlier.ejected.store(true, Ordering::Relaxed);
        host.outlier.times_ejected.fetch_add(1, Ordering::Relaxed);
        *host
            .outlier
            .ejected_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.stats.enforced_total.inc();
        self.stats.active.inc();
        tracing::info!(host = %host.address, "outlier detection ejected a host");
        true
    }

    /// Every interval: hosts whose ejection time passed come back, and hosts that stayed in lose one step of
    /// their growing ejection time. True when some host came back.
    pub(crate) fn review(&self, set: &HostSet) -> bool {
        let now = Instant::now();
        {
            let mut next = self
                .next_review
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now < *next {
                return false;
            }
            *next = now + self.config.interval;
        }
        let mut changed = false;
        for host in set.all() {
            let state = &host.outlier;
            let times = state.times_ejected.load(Ordering::Relaxed);
            if host.ejected() {
                let at = *state
                    .ejected_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let lasts = (self.config.base_ejection_time * times.max(1))
                    .min(self.config.max_ejection_time);
                if at.is_none_or(|at| now.duration_since(at) >= lasts) {
                    state.ejected.store(false, Ordering::Relaxed);
                    state.consecutive_5xx.store(0, Ordering::Relaxed);
                    state.consecutive_gateway.store(0, Ordering::Relaxed);
                    self.stats.active.dec();
                    changed = true;
                }
            } else if times > 0 {
                state.times_ejected.store(times - 1, Ordering::Relaxed);
            }
        }
        changed
    }
}

fn chance(percent: u32) -> bool {
    percent >= 100 || fastrand::u32(..100) < percent
}
