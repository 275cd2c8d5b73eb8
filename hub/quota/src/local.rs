//! In-process buckets: GCRA per key, bounded without ever forgiving a bucket that is in use.
//!
//! Each bucket is one number, its theoretical arrival time (TAT, nanoseconds on the limiter's clock): a request
//! of `n` units is granted when `max(TAT, now) + n·T − now ≤ capacity·T` (T the emission interval), and moves
//! the TAT there. A bucket whose TAT has passed is full again, the same as no bucket, so it can be dropped at
//! no cost to anyone. At most `max_keys` buckets are held: when a new key arrives and the map is full, idle
//! buckets are dropped (at most once a second: a flood of new keys costs O(1) each); if none is idle, the new
//! key is charged to one shared overflow bucket ([`Overflow::Shared`]) or refused ([`Overflow::Deny`]).
//! Buckets in use are never evicted, so a flood of distinct keys cannot reset anyone's budget, the flooder's
//! included.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};

use crate::{BoxFuture, LimitSpec, Limiter, Outcome, QuotaBackend};

/// What happens to a new key when a RateLimit already holds its most buckets and none is idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// New keys share one bucket of the same limit: they are limited together until buckets free up.
    #[default]
    Shared,
    /// New keys are refused until buckets free up.
    Deny,
}

/// How long a full map of buckets is not searched again for idle buckets.
const SWEEP_EVERY: u64 = 1_000_000_000;

#[derive(Debug, Default)]
struct Buckets {
    /// TAT of each key's bucket, in nanoseconds since the limiter's start.
    tat: HashMap<Vec<String>, u64>,
    /// TAT of the overflow bucket.
    overflow_tat: u64,
    /// When a full map may next be searched for idle buckets.
    next_sweep: u64,
}

/// The buckets of one RateLimit, in memory, bounded to `max_keys` buckets.
pub struct LocalLimiter<C: Clock = DefaultClock> {
    spec: LimitSpec,
    clock: C,
    start: C::Instant,
    max_keys: usize,
    overflow: Overflow,
    buckets: Mutex<Buckets>,
    evicted: AtomicU64,
    overflowed: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for LocalLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("spec", &self.spec)
            .field("keys", &self.keys())
            .finish()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<C: Clock> LocalLimiter<C> {
    /// A limiter reading time from `clock`, keeping at most `max_keys` buckets; new keys beyond that share
    /// one overflow bucket.
    pub fn with_clock(spec: LimitSpec, clock: C, max_keys: usize) -> Self {
        Self::with_overflow(spec, clock, max_keys, Overflow::Shared)
    }

    /// A limiter keeping at most `max_keys` buckets, new keys beyond that handled as `overflow` says.
    pub fn with_overflow(spec: LimitSpec, clock: C, max_keys: usize, overflow: Overflow) -> Self {
        let start = clock.now();
        LocalLimiter {
            spec,
            clock,
            start,
            max_keys: max_keys.max(1),
            overflow,
            buckets: Mutex::new(Buckets::default()),
            evicted: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }

    /// Buckets currently held.
    pub fn keys(&self) -> usize {
        self.lock().tat.len()
    }

    /// Idle buckets dropped to make room for new keys (each was full again: nobody was forgiven anything).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Requests of new keys charged to the overflow bucket (or refused) because every bucket was in use.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Drops buckets that are back to full capacity (indistinguishable from new ones).
    pub fn retain_recent(&self) {
        let now = self.now();
        let mut b = self.lock();
        b.tat.retain(|_, tat| *tat > now);
        b.tat.shrink_to_fit();
    }

    /// How far bucket `key` is from full (its TAT minus now): zero for a full or unknown bucket.
    pub fn debt(&self, key: &[String]) -> Duration {
        let now = self.now();
        let tat = self.lock().tat.get(key).copied().unwrap_or(0);
        Duration::from_nanos(tat.saturating_sub(now))
    }

    /// Takes units synchronously (the local backend never waits on I/O). O(1) for every request, best effort
    /// included, and for new keys while the map is full.
    pub fn acquire_now(&self, key: &[String], amount: u32, best_effort: bool) -> Outcome {
        let now = self.now();
        let mut guard = self.lock();
        let b = &mut *guard;
        let tat = match b.tat.get_mut(key) {
            Some(tat) => tat,
            None => {
                if b.tat.len() >= self.max_keys && now >= b.next_sweep {
                    let before = b.tat.len();
                    b.tat.retain(|_, tat| *tat > now);
                    self.evicted.fetch_add(
                        u64::try_from(before - b.tat.len()).unwrap_or(0),
                        Ordering::Relaxed,
                    );
                    b.next_sweep = now.saturating_add(SWEEP_EVERY);
                }
                if b.tat.len() < self.max_keys {
                    b.tat.entry(key.to_vec()).or_insert(0)
                } else {
                    self.overflowed.fetch_add(1, Ordering::Relaxed);
                    match self.overflow {
                        Overflow::Shared => &mut b.overflow_tat,
                        Overflow::Deny => {
                            return Outcome::Denied {
                                retry_after: self.spec.emission_interval(),
                            };
                        }
                    }
                }
            }
        };
        self.take(tat, now, amount.max(1), best_effort)
    }

    /// GCRA on one bucket: grants `wanted` units (or, best effort, as many as fit) and moves its TAT.
    fn take(&self, tat: &mut u64, now: u64, wanted: u32, best_effort: bool) -> Outcome {
        let t = nanos(self.spec.emission_interval()).max(1);
        let capacity = self.spec.capacity();
        let depth = t.saturating_mul(u64::from(capacity));
        let start = (*tat).max(now);
        // Units that fit now: the room left in the bucket, in whole emission intervals.
        let room = depth.saturating_sub(start - now) / t;
        let fits = u32::try_from(room).unwrap_or(u32::MAX).min(capacity);
        let granted = if best_effort {
            wanted.min(fits)
        } else {
            wanted
        };
        if granted == 0 || granted > fits {
            if !best_effort && wanted > capacity {
                // More than the bucket can ever hold at once: the wait is unbounded, say so plainly.
                return Outcome::Denied {
                    retry_after: Duration::MAX,
                };
            }
            let need = u64::from(if best_effort { 1 } else { wanted });
            let ready_at = start
                .saturating_add(need.saturating_mul(t))
                .saturating_sub(depth);
            return Outcome::Denied {
                retry_after: Duration::from_nanos(ready_at.saturating_sub(now)),
            };
        }
        *tat = start.saturating_add(u64::from(granted).saturating_mul(t));
        let used = *tat - now;
        Outcome::Granted {
            granted,
            remaining: u32::try_from(depth.saturating_sub(used) / t).unwrap_or(0),
            reset_after: Duration::from_nanos(used),
        }
    }
}

impl<C: Clock + Send + Sync + 'static> Limiter for LocalLimiter<C>
where
    C::Instant: Reference + Send + Sync,
{
    fn acquire<'a>(
        &'a self,
        key: &'a [String],
        amount: u32,
        best_effort: bool,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(std::future::ready(self.acquire_now(
            key,
            amount,
            best_effort,
        )))
    }

    fn spec(&self) -> LimitSpec {
        self.spec
    }
}

/// What one limiter holds and has had to do to stay bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimiterStats {
    /// RateLimit `namespace/name`.
    pub name: String,
    /// Buckets held.
    pub keys: usize,
    /// Idle buckets dropped to make room.
    pub evicted: u64,
    /// Requests of new keys sent to the overflow bucket (or refused) because every bucket was in use.
    pub overflowed: u64,
}

/// Keeps bucket state in this process.
pub struct LocalBackend {
    max_keys: usize,
    overflow: Overflow,
    limiters: Mutex<HashMap<String, Arc<LocalLimiter>>>,
}

impl LocalBackend {
    /// A backend whose limiters hold at most `max_keys` buckets each; new keys beyond share a bucket.
    pub fn new(max_keys: usize) -> Self {
        Self::with_overflow(max_keys, Overflow::Shared)
    }

    /// A backend whose limiters hold at most `max_keys` buckets each, new keys beyond handled as `overflow`.
    pub fn with_overflow(max_keys: usize, overflow: Overflow) -> Self {
        LocalBackend {
            max_keys,
            overflow,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LocalLimiter>>> {
        self.limiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state of every limiter, for metrics.
    pub fn stats(&self) -> Vec<LimiterStats> {
        self.map()
            .iter()
            .map(|(n, l)| LimiterStats {
                name: n.clone(),
                keys: l.keys(),
                evicted: l.evicted(),
                overflowed: l.overflowed(),
            })
            .collect()
    }
}

impl QuotaBackend for LocalBackend {
    fn limiter(&self, name: &str, spec: LimitSpec) -> Arc<dyn Limiter> {
        let mut map = self.map();
        if let Some(l) = map.get(name).filter(|l| l.spec == spec) {
            return l.clone();
        }
        let l = Arc::new(LocalLimiter::with_overflow(
            spec,
            DefaultClock::default(),
            self.max_keys,
            self.overflow,
        ));
        map.insert(name.to_string(), l.clone());
        l
    }

    fn retain(&self, live: &[String]) {
        self.map().retain(|name, _| live.iter().any(|l| l == name));
    }

    fn housekeeping(&self) {
        let limiters: Vec<_> = self.map().values().cloned().collect();
        for l in limiters {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests;
