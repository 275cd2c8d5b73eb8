//! Remembers recent answers by deduplication id, so a retried Check is not charged quota twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sextant_proto::mixer::CheckResponse;

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
