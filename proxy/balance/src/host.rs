//! A cluster's hosts and what each one holds: its weight, its load, its connection pool, its outlier
//! detection state.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use crate::pool::Pool;

/// A host of a cluster.
#[derive(Debug)]
pub struct Host {
    /// Its address.
    pub address: SocketAddr,
    /// Its weight.
    pub weight: u32,
    /// Whether the control plane lets it take traffic.
    pub healthy: bool,
    active: AtomicU32,
    pub(crate) pool: Pool,
    pub(crate) outlier: HostState,
}

impl Host {
    pub(crate) fn new(address: SocketAddr, weight: u32, healthy: bool, pool: Pool) -> Host {
        Host {
            address,
            weight,
            healthy,
            active: AtomicU32::new(0),
            pool,
            outlier: Default::default(),
        }
    }

    /// Requests in flight to it.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether outlier detection has ejected it.
    pub fn ejected(&self) -> bool {
        self.outlier.ejected.load(Ordering::Relaxed)
    }
}

/// A host's outlier state, kept by its cluster's detector ([`crate::outlier`]).
#[derive(Debug, Default)]
pub(crate) struct HostState {
    /// Whether it is ejected.
    pub(crate) ejected: AtomicBool,
    /// 5xx answers (or local failures) in a row.
    pub(crate) consecutive_5xx: AtomicU32,
    /// Gateway failures (502-504, or local failures) in a row.
    pub(crate) consecutive_gateway: AtomicU32,
    /// How many times it was ejected, less one per review it stayed in.
    pub(crate) times_ejected: AtomicU32,
    /// When it was last ejected.
    pub(crate) ejected_at: Mutex<Option<Instant>>,
}
