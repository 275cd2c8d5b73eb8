//! Consistent hashing: a ring (Ketama-style, points in proportion to weight) or a Maglev table, built when
//! the host set changes and read with one lookup per request.

use std::sync::Arc;

use proxy_config::cluster::LbPolicy;

use crate::host::Host;

/// A lookup table from a request's hash to a host index.
#[derive(Debug)]
pub(crate) enum Table {
    /// Sorted (point, host index).
    Ring(Vec<(u64, usize)>),
    /// Slot → host index.
    Maglev(Vec<usize>),
}

/// FNV-1a, then a final mix: stable across runs and builds, so every proxy hashes alike.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's weak low bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Table {
    pub(crate) fn new(lb: LbPolicy, hosts: &[Arc<Host>]) -> Option<Table> {
        if hosts.is_empty() {
            return None;
        }
        match lb {
            LbPolicy::RingHash { min, max } => Some(Table::Ring(ring(hosts, min, max))),
            LbPolicy::Maglev { size } => Some(Table::Maglev(maglev(hosts, size))),
            _ => None,
        }
    }

    /// The host index for `hash`.
    pub(crate) fn pick(&self, hash: u64) -> Option<usize> {
        match self {
            Table::Ring(points) => {
                let i = points.partition_point(|(p, _)| *p < hash);
                points.get(i).or_else(|| points.first()).map(|(_, h)| *h)
            }
            Table::Maglev(slots) => {
                let len = u64::try_from(slots.len()).ok()?;
                slots.get(usize::try_from(hash % len).ok()?).copied()
            }
        }
    }
}

fn ring(hosts: &[Arc<Host>], min: u64, max: u64) -> Vec<(u64, usize)> {
    let total: u64 = hosts
        .iter()
        .map(|h| u64::from(h.weight))
        .sum::<u64>()
        .max(1);
    let size = min.max(hosts.len() as u64).min(max);
    let mut points = Vec::with_capacity(usize::try_from(size).unwrap_or(0) + hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let n = (size * u64::from(host.weight) / total).max(1);
        for k in 0..n {
            points.push((hash_bytes(format!("{}_{k}", host.address).as_bytes()), i));
        }
    }
    points.sort_unstable();
    points
}

fn maglev(hosts: &[Arc<Host>], size: u64) -> Vec<usize> {
    let m = usize::try_from(size).unwrap_or(65537);
    let perms: Vec<(usize, usize)> = hosts
        .iter()
        .map(|h| {
            let name = h.address.to_string();
            let offset = hash_bytes(name.as_bytes()) % size;
            let skip = hash_bytes(format!("{name}#skip").as_bytes()) % (size - 1) + 1;
            (offset as usize, skip as usize)
        })
        .collect();
    let max_weight = hosts.iter().map(|h| h.weight).max().unwrap_or(1).max(1);
    let mut next = vec![0usize; hosts.len()];
    let mut credit = vec![0f64; hosts.len()];
    let mut slots = vec![usize::MAX; m];
    let mut filled = 0;
    while filled < m {
        for (i, (offset, skip)) in perms.iter().enumerate() {
            // Weighted: a host claims a slot in a round only when its accumulated share reaches one.
            credit[i] += f64::from(hosts[i].weight) / f64::from(max_weight);
            if credit[i] < 1.0 {
                continue;
            }
            credit[i] -= 1.0;
            let mut slot = (offset + next[i] * skip) % m;
            while slots[slot] != usize::MAX {
                next[i] += 1;
                slot = (offset + next[i] * skip) % m;
            }
            slots[slot] = i;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break;
            }
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;
    use proxy_config::cluster::Protocol;

    fn hosts(weights: &[u32]) -> Vec<Arc<Host>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Host::new(
                    ([10, 0, 0, i as u8 + 1], 80).into(),
                    *w,
                    true,
                    Pool::new(Protocol::Http1),
                ))
            })
            .collect()
    }

    fn shares(table: &Table, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for k in 0..20_000u64 {
            counts[table.pick(hash_bytes(&k.to_le_bytes())).expect("a host")] += 1;
        }
        counts
    }

    #[test]
    fn both_tables_spread_by_weight_and_keep_most_keys_when_a_host_goes() {
        for lb in [
            LbPolicy::RingHash {
                min: 1024,
                max: 1 << 20,
            },
            LbPolicy::Maglev { size: 65537 },
        ] {
            let four = Table::new(lb, &hosts(&[1, 1, 1, 3])).expect("table");
            let s = shares(&four, 4);
            // Host 3 has half the weight: about half the keys.
            assert!((8_000..12_000).contains(&s[3]), "{lb:?}: {s:?}");
            for (i, share) in s.iter().take(3).enumerate() {
                assert!((2_300..4_400).contains(share), "{lb:?} host {i}: {s:?}");
            }
            // Dropping the last host moves mostly its own keys.
            let three = Table::new(lb, &hosts(&[1, 1, 1])).expect("table");
            let moved = (0..20_000u64)
                .filter(|k| {
                    let h = hash_bytes(&k.to_le_bytes());
                    let before = four.pick(h).expect("host");
                    before != 3 && three.pick(h) != Some(before)
                })
                .count();
            assert!(
                moved < 2_500,
                "{lb:?}: {moved} keys of remaining hosts moved"
            );
        }
    }
}
