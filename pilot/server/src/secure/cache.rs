//! The identities the API server vouched for lately, so a burst of certificate requests with the same
//! tokens (a restart storm, a crash-looping pod) asks it once per token and [`CACHE_TTL`]. Keyed by the
//! token's SHA-256 digest, never the token. Only positive answers are kept: a refused token is asked about
//! again, so a token made valid later is not refused for long, and an error is never remembered.
//!
//! Bounded: [`CACHE_MAX`] entries; a new one beyond evicts the oldest (the one expiring first). A token
//! revoked in the cluster stays accepted for at most [`CACHE_TTL`] after it was last checked.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::identity::Identity;

/// How long a positive TokenReview is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered at most.
pub const CACHE_MAX: usize = 10_000;

/// A token's SHA-256 digest.
pub type TokenDigest = [u8; 32];

/// Identities by token digest, each until it expires.
#[derive(Debug)]
pub struct IdentityCache {
    ttl: Duration,
    max: usize,
    entries: HashMap<TokenDigest, (Identity, Instant)>,
    /// The keys of `entries` with their expiry, in insertion order, which is expiry order (one TTL): each
    /// key of `entries` is here exactly once.
    order: VecDeque<(TokenDigest, Instant)>,
}

impl IdentityCache {
    /// Entries kept `ttl`, at most `max` of them.
    pub fn new(ttl: Duration, max: usize) -> IdentityCache {
        IdentityCache {
            ttl,
            max: max.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The identity of `key`, unless unknown or expired at `now`.
    pub fn get(&self, key: &TokenDigest, now: Instant) -> Option<Identity> {
        self.entries
            .get(key)
            .filter(|(_, expires)| now < *expires)
            .map(|(identity, _)| identity.clone())
    }

    /// Remembers `identity` for `key` from `now` (a key still known keeps its entry).
    pub fn insert(&mut self, key: TokenDigest, identity: Identity, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, expires)| *expires <= now)
        {
            self.evict_oldest();
        }
        if self.entries.contains_key(&key) {
            return;
        }
        while self.entries.len() >= self.max {
            self.evict_oldest();
        }
        let expires = now + self.ttl;
        self.entries.insert(key, (identity, expires));
        self.order.push_back((key, expires));
    }

    /// How many tokens are remembered (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict_oldest(&mut self) {
        if let Some((key, _)) = self.order.pop_front() {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sa: &str) -> Identity {
        Identity {
            namespace: "shop".into(),
            service_account: sa.into(),
        }
    }

    fn key(n: u8) -> TokenDigest {
        [n; 32]
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut cache = IdentityCache::new(Duration::from_secs(60), 10);
        cache.insert(key(1), id("web"), t0);
        assert_eq!(
            cache.get(&key(1), t0 + Duration::from_secs(59)),
            Some(id("web"))
        );
        assert_eq!(cache.get(&key(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.get(&key(2), t0), None);
        // Inserting later drops what expired, and the expired key can be remembered afresh.
        let t1 = t0 + Duration::from_secs(61);
        cache.insert(key(1), id("web"), t1);
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.get(&key(1), t1 + Duration::from_secs(59)),
            Some(id("web"))
        );
    }

    #[test]
    fn at_most_max_entries_the_oldest_evicted() {
        let t0 = Instant::now();
        let mut cache = IdentityCache::new(Duration::from_secs(60), 3);
        for n in 0..5u8 {
            cache.insert(
                key(n),
                id(&format!("sa{n}")),
                t0 + Duration::from_millis(u64::from(n)),
            );
            // A second answer for a key known keeps one entry.
            cache.insert(
                key(n),
                id(&format!("sa{n}")),
                t0 + Duration::from_millis(u64::from(n)),
            );
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.order.len(), 3);
        assert_eq!(cache.get(&key(0), t0), None);
        assert_eq!(cache.get(&key(1), t0), None);
        assert_eq!(cache.get(&key(4), t0), Some(id("sa4")));
    }
}
