//! The hosts of a cluster at one moment: those traffic goes to (the healthy ones not ejected, or all of
//! them in panic mode), and what balancing reads of them, built once per change: the smooth weighted
//! round-robin schedule and the consistent-hash table ([`crate::hash`]).

use std::sync::Arc;

use proxy_config::endpoint::Locality;

use crate::hash::Table;
use crate::host::Host;
use crate::pool::Pool;

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
    pub(crate) hashing: Option<Table>,
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
            schedule: schedule(&weights),
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            hashing: Table::new(shape.lb, &routable),
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

/// A smooth weighted round-robin order of host indexes (each host appears weight ÷ gcd times, spread out),
/// bounded in length; empty when all weights are equal (plain rotation then).
pub(crate) fn schedule(weights: &[u32]) -> Vec<usize> {
    const MAX_LEN: u64 = 4096;
    if weights.windows(2).all(|w| w[0] == w[1]) {
        return Vec::new();
    }
    let g = weights.iter().fold(0u32, |a, &b| gcd(a, b)).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_LEN {
        // Scale down, keeping every host in the rotation.
        w = w.iter().map(|&x| (x * MAX_LEN / total).max(1)).collect();
    }
    let total: i64 = w.iter().map(|&x| x as i64).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &x) in current.iter_mut().zip(&w) {
            *c += x as i64;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        out.push(best);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weighted_schedule_gives_each_host_its_share_spread_out() {
        let s = schedule(&[3, 1]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        let s = schedule(&[2, 2]);
        assert!(s.is_empty(), "equal weights rotate plainly");
        let s = schedule(&[5000, 1, 1]);
        assert!(s.len() <= 4096 + 2 && s.contains(&1) && s.contains(&2));
        // Smooth: the heavy host is never picked more than 3 times in a row for weights 3:1.
        let s = schedule(&[3, 1]);
        assert!(s.windows(4).all(|w| w.contains(&1)) || s.len() < 4);
    }
}
