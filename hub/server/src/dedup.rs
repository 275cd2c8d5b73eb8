//! Remembers recent answers by deduplication id, so a retried Check is not charged quota twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sextant_proto::mixer::CheckResponse;

/// The longest deduplication id the hub accepts (Mixer's clients send a UUID and a counter): with the
/// cache's capacity this bounds the bytes a client can make it hold.
pub const MAX_ID_BYTES: usize = 256;

/// Why a Check's deduplication id is refused.
#[derive(Debug, thiserror::Error)]
#[error("deduplication_id is {0} bytes; the hub accepts at most {MAX_ID_BYTES}")]
pub struct IdTooLong(pub usize);

/// The id to deduplicate by: `None` when the request has none, refused when longer than [`MAX_ID_BYTES`].
pub fn checked_id(id: &str) -> Result<Option<&str>, IdTooLong> {
    match id.len() {
        0 => Ok(None),
        n if n > MAX_ID_BYTES => Err(IdTooLong(n)),
        _ => Ok(Some(id)),
    }
}

/// A bounded, time-limited map from deduplication id to the response given.
pub struct DedupCache {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (Instant, CheckResponse)>,
    order: VecDeque<(Instant, String)>,
}

impl DedupCache {
    /// At most `capacity` entries, each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        DedupCache {
            capacity: capacity.max(1),
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The response given to `id` within the ttl.
    pub fn get(&self, id: &str) -> Option<CheckResponse> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .map
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, r)| r.clone())
    }

    /// Remembers the response to `id`; returns how many entries were evicted to stay within capacity.
    pub fn put(&self, id: String, response: CheckResponse) -> u64 {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut evicted = 0;
        while let Some((at, _)) = inner.order.front() {
            if now.duration_since(*at) < self.ttl && inner.map.len() < self.capacity {
                break;
            }
            if let Some((at, key)) = inner.order.pop_front()
                && inner.map.get(&key).is_some_and(|(t, _)| *t == at)
            {
                inner.map.remove(&key);
                if now.duration_since(at) < self.ttl {
                    evicted += 1;
                }
            }
        }
        inner.order.push_back((now, id.clone()));
        inner.map.insert(id, (now, response));
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_longer_than_the_bound_are_refused_naming_size_and_limit() {
        assert!(matches!(checked_id(""), Ok(None)));
        let at_bound = "d".repeat(MAX_ID_BYTES);
        assert_eq!(
            checked_id(&at_bound).ok().flatten(),
            Some(at_bound.as_str())
        );
        let e = checked_id(&"d".repeat(1 << 20)).expect_err("1 MiB id");
        assert_eq!(
            e.to_string(),
            "deduplication_id is 1048576 bytes; the hub accepts at most 256"
        );
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity() {
        let cache = DedupCache::new(3, Duration::from_secs(60));
        let evicted: u64 = (0..10)
            .map(|i| cache.put(format!("id-{i}"), CheckResponse::default()))
            .sum();
        assert_eq!(evicted, 7);
        assert!(cache.get("id-9").is_some() && cache.get("id-6").is_none());
    }
}
