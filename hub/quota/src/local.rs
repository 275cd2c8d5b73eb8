//! In-process buckets with governor's keyed GCRA limiter.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::{BoxFuture, LimitSpec, Limiter, Outcome, QuotaBackend};

type Keyed<C> =
    RateLimiter<Vec<String>, DefaultKeyedStateStore<Vec<String>>, C, StateInformationMiddleware>;

/// The buckets of one RateLimit, in memory, bounded to `max_keys` buckets.
pub struct LocalLimiter<C: Clock = DefaultClock> {
    spec: LimitSpec,
    quota: Quota,
    clock: C,
    max_keys: usize,
    buckets: RwLock<Arc<Keyed<C>>>,
    evicted: AtomicU64,
}

impl<C: Clock + Clone> std::fmt::Debug for LocalLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("spec", &self.spec)
            .field("keys", &self.keys())
            .finish()
    }
}

impl<C: Clock + Clone> LocalLimiter<C> {
    /// A limiter reading time from `clock`, keeping at most `max_keys` buckets.
    pub fn with_clock(spec: LimitSpec, clock: C, max_keys: usize) -> Self {
        let burst = NonZeroU32::new(spec.capacity()).unwrap_or(NonZeroU32::MIN);
        // LimitSpec::new guarantees a non-zero interval; the fallback is never taken.
        let quota = Quota::with_period(spec.emission_interval())
            .unwrap_or(Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let buckets = RwLock::new(Arc::new(Self::fresh(quota, &clock)));
        LocalLimiter {
            spec,
            quota,
            clock,
            max_keys: max_keys.max(1),
            buckets,
            evicted: AtomicU64::new(0),
        }
    }

    fn fresh(quota: Quota, clock: &C) -> Keyed<C> {
        RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>()
    }

    fn current(&self) -> Arc<Keyed<C>> {
        match self.buckets.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Buckets currently held.
    pub fn keys(&self) -> usize {
        self.current().len()
    }

    /// Buckets dropped because the limit of keys was reached (each one forgiven: it restarts full).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Drops buckets that are back to full capacity (indistinguishable from new ones).
    pub fn retain_recent(&self) {
        let b = self.current();
        b.retain_recent();
        b.shrink_to_fit();
    }

    /// Keeps the number of buckets bounded: first drop idle buckets; if that is not enough, start over.
    fn bound_keys(&self, buckets: &Keyed<C>) {
        if buckets.len() < self.max_keys {
            return;
        }
        buckets.retain_recent();
        let left = buckets.len();
        if left >= self.max_keys {
            let mut guard = match self.buckets.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            *guard = Arc::new(Self::fresh(self.quota, &self.clock));
            self.evicted
                .fetch_add(u64::try_from(left).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }

    /// Takes units synchronously (the local backend never waits on I/O).
    pub fn acquire_now(&self, key: &[String], amount: u32, best_effort: bool) -> Outcome {
        let buckets = self.current();
        self.bound_keys(&buckets);
        let key = key.to_vec();
        let capacity = self.spec.capacity();
        let wanted = amount.max(1);
        let mut n = if best_effort {
            wanted.min(capacity)
        } else {
            wanted
        };
        while let Some(nz) = NonZeroU32::new(n) {
            match buckets.check_key_n(&key, nz) {
                Ok(Ok(snapshot)) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    let reset_after =
                        self.spec.emission_interval() * capacity.saturating_sub(remaining);
                    return Outcome::Granted {
                        granted: n,
                        remaining,
                        reset_after,
                    };
                }
                Ok(Err(not_until)) if !best_effort || n == 1 => {
                    return Outcome::Denied {
                        retry_after: not_until.wait_time_from(self.clock.now()),
                    };
                }
                Ok(Err(_)) => n -= 1,
                Err(_insufficient) => {
                    // More than the bucket can ever hold at once: the wait is unbounded, say so plainly.
                    return Outcome::Denied {
                        retry_after: Duration::MAX,
                    };
                }
            }
        }
        Outcome::Denied {
            retry_after: self.spec.emission_interval(),
        }
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> Limiter for LocalLimiter<C>
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

/// Keeps bucket state in this process.
pub struct LocalBackend {
    max_keys: usize,
    limiters: Mutex<HashMap<String, Arc<LocalLimiter>>>,
}

impl LocalBackend {
    /// A backend whose limiters hold at most `max_keys` buckets each.
    pub fn new(max_keys: usize) -> Self {
        LocalBackend {
            max_keys,
            limiters: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LocalLimiter>>> {
        self.limiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (name, buckets held, buckets evicted) of every limiter, for metrics.
    pub fn stats(&self) -> Vec<(String, usize, u64)> {
        self.map()
            .iter()
            .map(|(n, l)| (n.clone(), l.keys(), l.evicted()))
            .collect()
    }
}

impl QuotaBackend for LocalBackend {
    fn limiter(&self, name: &str, spec: LimitSpec) -> Arc<dyn Limiter> {
        let mut map = self.map();
        if let Some(l) = map.get(name).filter(|l| l.spec == spec) {
            return l.clone();
        }
        let l = Arc::new(LocalLimiter::with_clock(
            spec,
            DefaultClock::default(),
            self.max_keys,
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
