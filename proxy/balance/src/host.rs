//! A cluster's hosts and what each one holds: its weight, its load, its connection pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use proxy_config::endpoint::Locality;

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
    pub(crate) outlier: crate::outlier::HostState,
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

/// What shapes a host set besides its hosts: the balancing policy (for hash tables) and the panic threshold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub lb: proxy_config::cluster::LbPolicy,
    pub panic_threshold: f64,
}

/// The hosts of a cluster at one moment, and those traffic goes to.
#[derive(Debug, Default)]
pub struct HostSet {
    all: Vec<Arc<Host>>,
    routable: Vec<Arc<Host>>,
    schedule: Vec<usize>,
    total_weight: u64,
    pub(crate) hashing: Option<crate::hash::Table>,
}

impl HostSet {
    /// A set from `localities`, reusing the hosts (and so the connections) of `previous` at the same address
    /// and weight. Locality weights are not applied (Envoy applies them only with locality-weighted balancing).
    pub(crate) fn new(
        localities: &[Locality],
        previous: &HostSet,
        new_pool: impl Fn() -> Pool,
        shape: Shape,
    ) -> HostSet {
        let mut all = Vec::new();
        for endpoint in localities.iter().flat_map(|l| &l.endpoints) {
            if all
                .iter()
                .any(|h: &Arc<Host>| h.address == endpoint.address)
            {
                continue;
            }
            let reused = previous.all.iter().find(|h| {
                h.address == endpoint.address
                    && h.weight == endpoint.weight
                    && h.healthy == endpoint.healthy
            });
            all.push(match reused {
                Some(h) => h.clone(),
                None => Arc::new(Host::new(
                    endpoint.address,
                    endpoint.weight,
                    endpoint.healthy,
                    new_pool(),
                )),
            });
        }
        HostSet::from_hosts(all, shape)
    }

    /// A set of `all`, routing to those healthy and not ejected unless too few are (panic mode).
    pub(crate) fn from_hosts(all: Vec<Arc<Host>>, shape: Shape) -> HostSet {
        let healthy: Vec<Arc<Host>> = all
            .iter()
            .filter(|h| h.healthy && !h.ejected())
            .cloned()
            .collect();
        let panic = (healthy.len() as f64) * 100.0 < (all.len() as f64) * shape.panic_threshold;
        let routable = if panic { all.clone() } else { healthy };
        let weights: Vec<u32> = routable.iter().map(|h| h.weight).collect();
        HostSet {
            schedule: crate::lb::schedule(&weights),
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            hashing: crate::hash::Table::new(shape.lb, &routable),
            all,
            routable,
        }
    }

    /// Every host.
    pub fn all(&self) -> &[Arc<Host>] {
        &self.all
    }

    /// The hosts traffic goes to: the healthy ones, or all of them when too few are healthy (panic mode).
    pub fn routable(&self) -> &[Arc<Host>] {
        &self.routable
    }

    pub(crate) fn schedule(&self) -> &[usize] {
        &self.schedule
    }

    pub(crate) fn total_weight(&self) -> u64 {
        self.total_weight
    }
}
