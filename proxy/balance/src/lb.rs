//! Choosing a host: weighted round robin, least request (the less loaded of N random hosts), weighted random.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proxy_config::cluster::LbPolicy;

use crate::host::{Host, HostSet};

/// Round-robin position, kept across picks (and across EDS updates, which only reshuffle the order slightly).
#[derive(Debug, Default)]
pub struct Cursor(AtomicUsize);

/// Picks a host of `set` by `policy` (by `hash` on a consistent-hash table when the request has one),
/// avoiding those `avoid` rejects when `attempts` allow another try.
pub fn pick(
    policy: LbPolicy,
    set: &HostSet,
    cursor: &Cursor,
    hash: Option<u64>,
    attempts: u32,
    avoid: impl Fn(&Host) -> bool,
) -> Option<Arc<Host>> {
    if let (Some(table), Some(hash)) = (&set.hashing, hash) {
        let hosts = set.routable();
        let first = table.pick(hash)?;
        // A retry avoiding the hashed host walks on around the hosts from it.
        let walk = (0..hosts.len()).map(|k| &hosts[(first + k) % hosts.len()]);
        let mut walk = walk.take(attempts.max(1) as usize);
        return walk
            .find(|h| !avoid(h))
            .or_else(|| hosts.get(first))
            .cloned();
    }
    let mut chosen = None;
    for _ in 0..attempts.max(1) {
        let host = pick_once(policy, set, cursor)?;
        if !avoid(&host) {
            return Some(host);
        }
        chosen = Some(host);
    }
    chosen
}

fn pick_once(policy: LbPolicy, set: &HostSet, cursor: &Cursor) -> Option<Arc<Host>> {
    let hosts = set.routable();
    if hosts.is_empty() {
        return None;
    }
    let host = match policy {
        LbPolicy::RoundRobin | LbPolicy::ClusterProvided => {
            let schedule = set.schedule();
            let i = cursor.0.fetch_add(1, Ordering::Relaxed);
            if schedule.is_empty() {
                &hosts[i % hosts.len()]
            } else {
                &hosts[schedule[i % schedule.len()]]
            }
        }
        // Consistent hashing without a hash (no hash policy, or its input absent): any host, as in Envoy.
        LbPolicy::Random | LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
            weighted_random(hosts, set.total_weight())
        }
        LbPolicy::LeastRequest { choices } => {
            let mut best = weighted_random(hosts, set.total_weight());
            for _ in 1..choices {
                let other = weighted_random(hosts, set.total_weight());
                if other.active() < best.active() {
                    best = other;
                }
            }
            best
        }
    };
    Some(host.clone())
}

fn weighted_random(hosts: &[Arc<Host>], total: u64) -> &Arc<Host> {
    if total == 0 {
        return &hosts[fastrand::usize(..hosts.len())];
    }
    let mut point = fastrand::u64(..total);
    for h in hosts {
        let w = u64::from(h.weight);
        if point < w {
            return h;
        }
        point -= w;
    }
    &hosts[hosts.len() - 1]
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
