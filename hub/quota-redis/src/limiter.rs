//! One GLOBAL RateLimit in this hub: leased units spent locally, leases renewed in the background, and the
//! local fallback while Redis cannot answer.
//!
//! Each bucket (a tuple of dimension values) holds the units this hub leased from the Redis bucket, in
//! batches that expire after a while ([`GlobalLimiter::holding`]; expired units are given back with the
//! next lease). A decision spends a unit without any I/O; when the units left fall to half a lease, one
//! renewal goes to Redis in the background, sized from this hub's recent rate of the bucket. Only a
//! request that finds no unit waits for the renewal, at most the decision budget, and then decides by the
//! fallback. When the Redis bucket is empty, Redis says how long until a unit fits (or reserves it for this
//! hub), and requests are refused locally until then.
//!
//! A bucket whose lease call failed decides by `onBackendFailure` (LOCAL: a local GCRA bucket of the limit
//! divided by the live hubs) and tries Redis again after [`crate::client::RECONNECT_AFTER`] in the
//! background; the first lease that succeeds also charges Redis with what the local bucket still owes, so
//! the hubs coming back do not burst above the limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hub_quota::{BoxFuture, LimitSpec, Limiter, LocalLimiter, OnBackendFailure, Outcome};
use tokio::sync::Notify;

use crate::client::{Failure, Leased, RECONNECT_AFTER};
use crate::{FallbackReason, Job, Shared};

/// The key of the one bucket new keys share when a limiter holds its most buckets and none is idle.
const OVERFLOW_KEY: &str = "\u{0}overflow";
/// How often a full map of buckets may be searched for idle ones.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What this hub knows of one Redis bucket.
#[derive(Debug)]
struct Bucket {
    /// Leased units not yet spent, oldest first: (units, when leased).
    batches: VecDeque<(u32, Instant)>,
    /// Expired units to give back with the next lease.
    to_return: u32,
    /// Units the fallback granted while Redis was reachable but slow: charged with the next lease.
    owed: u32,
    /// A unit reserved in the empty Redis bucket, usable from then.
    reserved: Option<Instant>,
    /// The Redis bucket was empty: refuse locally until then.
    denied_until: Option<Instant>,
    /// When the Redis bucket will be full again (for `reset_after`).
    full_at: Instant,
    /// A lease call is in flight.
    renewing: bool,
    /// Woken when a lease call ends.
    notify: Arc<Notify>,
    /// The last lease call failed: decide by the fallback; try Redis again from `retry_at`.
    failed: bool,
    retry_at: Instant,
    /// Requests since `rate_since`, and the smoothed rate (per second) of this bucket at this hub.
    arrivals: u32,
    rate_since: Instant,
    rate: f64,
    last_used: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            batches: VecDeque::new(),
            to_return: 0,
            owed: 0,
            reserved: None,
            denied_until: None,
            full_at: now,
            renewing: false,
            notify: Arc::new(Notify::new()),
            failed: false,
            retry_at: now,
            arrivals: 0,
            rate_since: now,
            rate: 0.0,
            last_used: now,
        }
    }

    /// Expires what `holding` does not let this hub keep (given back with the next lease) and counts the
    /// rest: units older than `long`, and of the units older than `short` all but `share`.
    fn available(&mut self, now: Instant, holding: Holding) -> u32 {
        if let Some(from) = self.reserved.filter(|from| *from <= now) {
            self.batches.push_back((1, from));
            self.reserved = None;
        }
        while let Some(&(n, at)) = self.batches.front() {
            if now.duration_since(at) < holding.long {
                break;
            }
            self.to_return = self.to_return.saturating_add(n);
            self.batches.pop_front();
        }
        let old: u32 = self
            .batches
            .iter()
            .filter(|(_, at)| now.duration_since(*at) >= holding.short)
            .map(|(n, _)| *n)
            .fold(0, u32::saturating_add);
        let mut excess = old.saturating_sub(holding.share);
        while excess > 0 {
            let Some(front) = self.batches.front_mut() else {
                break;
            };
            let take = front.0.min(excess);
            front.0 -= take;
            excess -= take;
            self.to_return = self.to_return.saturating_add(take);
            if front.0 == 0 {
                self.batches.pop_front();
            }
        }
        self.batches
            .iter()
            .map(|(n, _)| *n)
            .fold(0, u32::saturating_add)
    }

    /// Spends `n` units (the caller checked they are available).
    fn spend(&mut self, mut n: u32) {
        while n > 0 {
            let Some(front) = self.batches.front_mut() else {
                return;
            };
            let take = front.0.min(n);
            front.0 -= take;
            n -= take;
            if front.0 == 0 {
                self.batches.pop_front();
            }
        }
    }

    /// Units held, expired ones included (given back when the bucket is dropped).
    fn held(&self) -> u32 {
        self.batches
            .iter()
            .map(|(n, _)| *n)
            .fold(self.to_return, u32::saturating_add)
            .saturating_add(u32::from(self.reserved.is_some()))
    }

    /// Updates the smoothed rate and resets the count of arrivals.
    fn measure_rate(&mut self, now: Instant) -> f64 {
        let elapsed = now.duration_since(self.rate_since).as_secs_f64();
        if elapsed >= 0.001 {
            let fresh = f64::from(self.arrivals) / elapsed;
            self.rate = if self.rate == 0.0 {
                fresh
            } else {
                (self.rate + fresh) / 2.0
            };
            self.arrivals = 0;
            self.rate_since = now;
        }
        self.rate
    }
}

/// How long, and how many, leased units a hub may keep unspent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    /// Any unit may be kept this long.
    pub short: Duration,
    /// Up to `share` units may be kept this long.
    pub long: Duration,
    /// This hub's share of the units all hubs may keep past `short`.
    pub share: u32,
}

/// What a bucket's units say about a request.
enum Step {
    /// Decided from the units held (or the known wait of an empty Redis bucket).
    Decided(Outcome),
    /// A lease call is in flight for the bucket (its key given): wait for it, within the budget.
    Wait(Arc<Notify>, Vec<String>),
    /// Redis cannot decide in time.
    Fallback(FallbackReason),
}

/// The fallback bucket, made for a count of live hubs.
#[derive(Debug)]
struct Fallback {
    hubs: u32,
    limiter: Arc<LocalLimiter>,
}

/// A GLOBAL RateLimit: its Redis buckets, the units this hub holds, and the fallback.
pub struct GlobalLimiter {
    name: String,
    spec: LimitSpec,
    /// `PREFIX:GENERATION:NAME:` — every Redis key of this limit starts with it.
    key_prefix: String,
    /// The even spacing of units.
    t: Duration,
    /// The Redis bucket's depth: capacity plus the leases' slack, in time.
    depth: Duration,
    /// The most units a bucket can hold at once (capacity plus slack).
    max_lease: u32,
    /// f/3 · per: how long any leased unit may be kept; also how far ahead a unit may be reserved.
    short_hold: Duration,
    /// per (at most 10 s): how long the hubs' shares of `slack` units may be kept.
    long_hold: Duration,
    /// ⌊f/3 · R⌋: the units past the bucket's capacity a lease may take, and the units all hubs together
    /// may keep past `short_hold`.
    slack: u32,
    max_keys: usize,
    shared: Arc<Shared>,
    buckets: Mutex<(HashMap<Vec<String>, Bucket>, Instant)>,
    fallback: Mutex<Fallback>,
}

impl std::fmt::Debug for GlobalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalLimiter")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .field("max_lease", &self.max_lease)
            .field("short_hold", &self.short_hold)
            .field("slack", &self.slack)
            .finish()
    }
}

/// The limit each hub applies while Redis fails: the limit shared by `hubs` (at least one unit each).
fn share(spec: LimitSpec, hubs: u32) -> LimitSpec {
    let hubs = hubs.max(1);
    LimitSpec::new((spec.requests / hubs).max(1), spec.per, spec.burst / hubs).unwrap_or(spec)
}

/// A stable digest of the limit (FNV-1a), so every hub with the same limit uses the same Redis keys and a
/// changed limit starts from full buckets.
fn generation(spec: &LimitSpec) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let text = format!("{}/{}ns+{}", spec.requests, spec.per.as_nanos(), spec.burst);
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The Redis key of a bucket: `prefix` and the dimension values, escaped, or their SHA-256 when long (the
/// values come from clients: a weak digest would let one pick values that share another's bucket).
fn bucket_key(prefix: &str, key: &[String]) -> String {
    let mut joined = String::new();
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            joined.push('|');
        }
        for c in v.chars() {
            if c == '|' || c == '\\' {
                joined.push('\\');
            }
            joined.push(c);
        }
    }
    if joined.len() > 200 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(joined.as_bytes());
        joined = digest.iter().fold(String::from("#"), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        });
    }
    format!("{prefix}{joined}")
}

impl GlobalLimiter {
    pub(crate) fn new(name: &str, spec: LimitSpec, shared: Arc<Shared>) -> GlobalLimiter {
        let t = spec.emission_interval();
        // Three parts of the allowed overshoot f·R: slack units past the bucket's capacity, units spent up
        // to `short_hold` after Redis counted them, and the units kept longer (at most `slack`, shared).
        let third = shared.options.overshoot / 3.0;
        let slack = (f64::from(spec.requests) * third).floor() as u32;
        let short_hold = spec
            .per
            .mul_f64(third)
            .clamp(Duration::from_millis(1), Duration::from_secs(10));
        let long_hold = spec
            .per
            .clamp(Duration::from_millis(1), Duration::from_secs(10));
        let max_lease = spec.capacity().saturating_add(slack);
        let hubs = shared.hubs();
        GlobalLimiter {
            name: name.to_string(),
            key_prefix: format!("{}:{}:{}:", shared.options.prefix, generation(&spec), name),
            t,
            depth: t.saturating_mul(max_lease),
            max_lease,
            short_hold,
            long_hold,
            slack,
            max_keys: shared.options.max_keys.max(1),
            fallback: Mutex::new(Fallback {
                hubs,
                limiter: Arc::new(LocalLimiter::with_clock(
                    share(spec, hubs),
                    Default::default(),
                    shared.options.max_keys,
                )),
            }),
            spec,
            shared,
            buckets: Mutex::new((HashMap::new(), Instant::now())),
        }
    }

    /// RateLimit `namespace/name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How far ahead a unit may be reserved in an empty Redis bucket.
    pub fn reserve_window(&self) -> Duration {
        self.short_hold
    }

    /// The most units a Redis bucket grants past its capacity, so that a lease can be taken at all.
    pub fn slack(&self) -> u32 {
        self.slack
    }

    /// How long and how many unspent units this hub may keep of a bucket. A unit spent in a window was
    /// leased in it or up to `short` before it (GCRA bounds those: the window's allowance, plus `short / T`,
    /// plus the slack), or is one of the units kept longer, at most `slack` for all hubs: each of N live
    /// hubs keeps `slack / N`.
    pub fn holding(&self) -> Holding {
        Holding {
            short: self.short_hold,
            long: self.long_hold.max(self.short_hold),
            share: self.slack / self.shared.hubs(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<Vec<String>, Bucket>, Instant)> {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Redis key of a bucket.
    fn redis_key(&self, key: &[String]) -> String {
        bucket_key(&self.key_prefix, key)
    }

    /// Units of a lease: what this hub spends in `short` at its recent rate, or, if more, what it spends in
    /// `long` up to its share; at least one (or `at_least`, for a request of several units), at most a
    /// full bucket.
    fn lease_size(&self, rate: f64, at_least: u32) -> u32 {
        let h = self.holding();
        let units = |d: Duration| {
            let u = (rate * d.as_secs_f64()).ceil();
            if u.is_finite() && u >= 1.0 {
                u.min(f64::from(u32::MAX)) as u32
            } else {
                1
            }
        };
        units(h.short)
            .max(units(h.long).min(h.share))
            .max(at_least)
            .min(self.max_lease)
    }

    /// Sends a lease call for `bucket` (marks it renewing). False when the queue to Redis is full.
    fn renew(
        self: &Arc<Self>,
        key: &[String],
        b: &mut Bucket,
        now: Instant,
        at_least: u32,
    ) -> bool {
        let rate = b.measure_rate(now);
        let want = self.lease_size(rate, at_least);
        let charge = if b.failed {
            // What the fallback bucket still owes, in units of the shared limit.
            let fb = self.fallback_limiter();
            let per_unit = share(self.spec, self.fallback_hubs()).emission_interval();
            u32::try_from(fb.debt(key).as_nanos().div_ceil(per_unit.as_nanos().max(1)))
                .unwrap_or(u32::MAX)
        } else {
            b.owed
        };
        let job = Job {
            limiter: self.clone(),
            key: key.to_vec(),
            want,
            back: b.to_return,
            charge,
        };
        if self.shared.submit(job) {
            b.to_return = 0;
            b.owed = 0;
            b.renewing = true;
            true
        } else {
            false
        }
    }

    fn fallback_limiter(&self) -> Arc<LocalLimiter> {
        self.fallback
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .limiter
            .clone()
    }

    fn fallback_hubs(&self) -> u32 {
        self.fallback.lock().unwrap_or_else(|p| p.into_inner()).hubs
    }

    /// Rebuilds the fallback bucket when the count of live hubs changed (called after a heartbeat, while
    /// no bucket is failing).
    pub(crate) fn set_hubs(&self, hubs: u32) {
        let failing = self.lock().0.values().any(|b| b.failed);
        let mut fb = self.fallback.lock().unwrap_or_else(|p| p.into_inner());
        if fb.hubs != hubs && !failing {
            fb.hubs = hubs;
            fb.limiter = Arc::new(LocalLimiter::with_clock(
                share(self.spec, hubs),
                Default::default(),
                self.max_keys,
            ));
        }
    }

    /// Decides without Redis, as `onBackendFailure` says; counted by `reason`.
    fn fallback(
        &self,
        key: &[String],
        amount: u32,
        best_effort: bool,
        reason: FallbackReason,
    ) -> Outcome {
        self.shared.fallen_back(&self.name, reason);
        let outcome = match self.spec.on_backend_failure {
            OnBackendFailure::Allow => Outcome::Granted {
                granted: amount,
                remaining: 0,
                reset_after: Duration::ZERO,
            },
            OnBackendFailure::Deny => Outcome::Denied {
                retry_after: RECONNECT_AFTER,
            },
            OnBackendFailure::Local => {
                self.fallback_limiter()
                    .acquire_now(key, amount, best_effort)
            }
        };
        // Redis answers, only not in time: what the fallback granted is charged to its bucket with the next
        // lease, so the fleet's count catches up. (A failing bucket charges its fallback's debt when Redis
        // answers again.)
        if let Outcome::Granted { granted, .. } = outcome
            && reason != FallbackReason::Unavailable
        {
            let now = Instant::now();
            let mut map = self.lock();
            let (b, _) = self.bucket(&mut map, key, now);
            if !b.failed {
                b.owed = b.owed.saturating_add(granted);
            }
        }
        outcome
    }

    /// The bucket of `key`, made if new; a full map gives a new key the shared overflow bucket.
    fn bucket<'m>(
        &self,
        map: &'m mut (HashMap<Vec<String>, Bucket>, Instant),
        key: &[String],
        now: Instant,
    ) -> (&'m mut Bucket, Vec<String>) {
        let (buckets, next_sweep) = map;
        let mut owned = key.to_vec();
        if !buckets.contains_key(key) && buckets.len() >= self.max_keys {
            if now >= *next_sweep {
                let hold = self.short_hold;
                buckets.retain(|_, b| {
                    b.renewing || b.held() > 0 || now.duration_since(b.last_used) < hold
                });
                *next_sweep = now + SWEEP_EVERY;
            }
            if buckets.len() >= self.max_keys {
                owned = vec![OVERFLOW_KEY.to_string()];
            }
        }
        let b = buckets
            .entry(owned.clone())
            .or_insert_with(|| Bucket::new(now));
        (b, owned)
    }

    /// The decision from what the bucket holds, without I/O. On the first try of a request, a bucket
    /// without units sends a lease call that the request may wait for.
    fn try_local(
        self: &Arc<Self>,
        key: &[String],
        amount: u32,
        best_effort: bool,
        first: bool,
    ) -> Step {
        let now = Instant::now();
        let mut map = self.lock();
        let (b, key) = self.bucket(&mut map, key, now);
        if first {
            b.arrivals = b.arrivals.saturating_add(1);
            b.last_used = now;
        }
        if b.failed {
            if now >= b.retry_at && !b.renewing {
                b.retry_at = now + RECONNECT_AFTER;
                self.renew(&key, b, now, amount);
            }
            return Step::Fallback(FallbackReason::Unavailable);
        }
        let available = b.available(now, self.holding());
        let granted = if best_effort {
            amount.min(available)
        } else if amount <= available {
            amount
        } else {
            0
        };
        if granted > 0 {
            b.spend(granted);
            let left = available - granted;
            if !b.renewing && b.reserved.is_none() && left <= self.lease_size(b.rate, 1) / 2 {
                self.renew(&key, b, now, 0);
            }
            return Step::Decided(Outcome::Granted {
                granted,
                remaining: left,
                reset_after: b.full_at.saturating_duration_since(now),
            });
        }
        // Refused until the unit this hub reserved is usable, or until the empty Redis bucket has one.
        if let Some(until) = b.reserved.or(b.denied_until).filter(|u| *u > now) {
            return Step::Decided(Outcome::Denied {
                retry_after: until - now,
            });
        }
        if !first {
            return Step::Fallback(FallbackReason::Slow);
        }
        if !b.renewing && !self.renew(&key, b, now, amount.saturating_sub(available)) {
            return Step::Fallback(FallbackReason::Overloaded);
        }
        if self.shared.client.recently_unreachable() {
            return Step::Fallback(FallbackReason::Unavailable);
        }
        Step::Wait(b.notify.clone(), key)
    }

    /// Takes units: from the units held when there are enough, else after waiting at most the decision
    /// budget for a lease, else by the fallback.
    pub async fn acquire_units(
        self: &Arc<Self>,
        key: &[String],
        amount: u32,
        best_effort: bool,
    ) -> Outcome {
        let amount = amount.max(1);
        if !best_effort && amount > self.max_lease {
            return Outcome::Denied {
                retry_after: Duration::MAX,
            };
        }
        let (notify, bucket_key) = match self.try_local(key, amount, best_effort, true) {
            Step::Decided(o) => return o,
            Step::Fallback(reason) => return self.fallback(key, amount, best_effort, reason),
            Step::Wait(notify, bucket_key) => (notify, bucket_key),
        };
        let started = Instant::now();
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The lease may have ended before the waiter was registered.
        let pending = self.lock().0.get(&bucket_key).is_some_and(|b| b.renewing);
        if pending {
            let _ = tokio::time::timeout(self.shared.options.budget, notified).await;
        }
        self.shared.waited(started.elapsed());
        match self.try_local(key, amount, best_effort, false) {
            Step::Decided(o) => o,
            Step::Fallback(reason) => self.fallback(key, amount, best_effort, reason),
            Step::Wait(..) => self.fallback(key, amount, best_effort, FallbackReason::Slow),
        }
    }

    /// A lease call ended.
    pub(crate) fn leased(&self, key: &[String], result: Result<Leased, Failure>) {
        let now = Instant::now();
        let mut map = self.lock();
        let Some(b) = map.0.get_mut(key) else {
            // Dropped meanwhile: give the units back.
            if let Ok(l) = result
                && l.granted > 0
            {
                drop(map);
                self.shared
                    .give_back(self.redis_key(key), self.t, self.depth, l.granted);
            }
            return;
        };
        b.renewing = false;
        match result {
            Ok(l) => {
                if b.failed {
                    tracing::info!(ratelimit = %self.name, "redis answers again: bucket counted globally");
                }
                b.failed = false;
                if l.granted > 0 && !l.wait.is_zero() {
                    // One unit reserved for later.
                    b.reserved = Some(now + l.wait);
                    b.denied_until = None;
                    self.shared.leased(&self.name, l.granted);
                } else if l.granted > 0 {
                    b.batches.push_back((l.granted, now));
                    b.denied_until = None;
                    self.shared.leased(&self.name, l.granted);
                } else {
                    b.denied_until = Some(now + l.wait);
                }
                b.full_at = now + l.reset;
            }
            Err(f) => {
                if !b.failed {
                    tracing::warn!(ratelimit = %self.name, failure = f.label(), "redis failed: bucket decided by the fallback");
                }
                b.failed = true;
                b.retry_at = now + RECONNECT_AFTER;
                b.denied_until = None;
            }
        }
        b.notify.notify_waiters();
    }

    pub(crate) fn lease_call(&self, key: &[String]) -> (String, Duration, Duration) {
        (self.redis_key(key), self.t, self.depth)
    }

    /// Drops buckets unused for `idle` and returns the units still held and the dropped buckets' units to
    /// give back (Redis key, units).
    fn drop_idle(&self, idle: Duration) -> (u64, Vec<(String, u32)>) {
        let now = Instant::now();
        let holding = self.holding();
        let mut back = Vec::new();
        let mut map = self.lock();
        map.0.retain(|key, b| {
            let keep = b.renewing || now.duration_since(b.last_used) < idle;
            if !keep {
                b.available(now, holding);
                let n = b.held();
                if n > 0 && !b.failed {
                    back.push((self.redis_key(key), n));
                }
            }
            keep
        });
        let held = map
            .0
            .values_mut()
            .map(|b| u64::from(b.available(now, holding)))
            .sum();
        (held, back)
    }

    /// Drops buckets unused for `idle`, gives their units back in the background, and returns the units
    /// still held.
    pub(crate) fn housekeeping(&self, idle: Duration) -> u64 {
        let (held, back) = self.drop_idle(idle);
        for (key, n) in back {
            self.shared.give_back(key, self.t, self.depth, n);
        }
        self.fallback_limiter().retain_recent();
        held
    }

    /// Drops every bucket; returns the units to give back, as (Redis key, units).
    pub(crate) fn release_all(&self) -> Vec<(String, u32)> {
        self.drop_idle(Duration::ZERO).1
    }

    /// The emission interval and depth of the Redis buckets.
    pub(crate) fn shape(&self) -> (Duration, Duration) {
        (self.t, self.depth)
    }
}

/// A GLOBAL limiter as the policy engine holds it.
#[derive(Debug)]
pub(crate) struct Handle(pub(crate) Arc<GlobalLimiter>);

impl Limiter for Handle {
    fn acquire<'a>(
        &'a self,
        key: &'a [String],
        amount: u32,
        best_effort: bool,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.0.acquire_units(key, amount, best_effort))
    }

    fn spec(&self) -> LimitSpec {
        self.0.spec
    }
}

impl GlobalLimiter {
    /// The limit.
    pub fn spec(&self) -> LimitSpec {
        self.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_keys_are_distinct_and_bounded() {
        let k = |v: &[&str]| bucket_key("p:", &v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(k(&["alice"]), "p:alice");
        assert_ne!(k(&["a|b"]), k(&["a", "b"]));
        assert_ne!(k(&["a\\", "b"]), k(&["a", "\\b"]));
        let long = "x".repeat(300);
        let digest = k(&[&long]);
        assert_eq!(digest.len(), "p:#".len() + 64, "{digest}");
        assert_ne!(digest, k(&[&format!("{long}y")]));
    }

    #[test]
    fn shares_and_generations() {
        let spec = LimitSpec::new(600, Duration::from_secs(60), 9).unwrap();
        let third = share(spec, 3);
        assert_eq!((third.requests, third.burst), (200, 3));
        assert_eq!(share(spec, 0), share(spec, 1));
        assert_eq!(
            share(LimitSpec::new(2, Duration::from_secs(1), 0).unwrap(), 5).requests,
            1
        );
        assert_eq!(generation(&spec), generation(&spec));
        assert_ne!(
            generation(&spec),
            generation(&LimitSpec::new(601, Duration::from_secs(60), 9).unwrap())
        );
    }
}
