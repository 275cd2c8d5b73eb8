//! Choosing a host: weighted round robin, least request (the less loaded of N random hosts), weighted random.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use proxy_config::cluster::LbPolicy;

use crate::host::Host;
use crate::host_set::HostSet;

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
