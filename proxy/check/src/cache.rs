//! The check cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sextant_attributes::{AttrId, Bag, Value, lookup};
use sextant_proto::mixer::{
    CheckResponse, FailurePolicy, PreconditionResult, attribute_match::Condition,
};

/// The cache's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Cached answers at most; the oldest goes first.
    pub entries: usize,
    /// Distinct sets of referenced attributes at most; answers referencing a new set beyond it are not
    /// cached.
    pub shapes: usize,
    /// How long after its validity ended an answer may still stand in for an unreachable hub
    /// ([`CheckCache::fallback`]).
    pub stale_for: Duration,
}

impl Default for Limits {
    /// 10 000 answers over 64 attribute sets, stale for a minute.
    fn default() -> Self {
        Limits {
            entries: 10_000,
            shapes: 64,
            stale_for: Duration::from_secs(60),
        }
    }
}

/// What the cache did, for the proxy's stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Requests the cache had no answer for.
    pub misses: u64,
    /// Answers cached.
    pub inserts: u64,
    /// Answers not cached: no duration or use count, or an attribute the vocabulary does not know.
    pub uncacheable: u64,
    /// Answers not cached because the cache already holds as many attribute sets as it may.
    pub shape_overflow: u64,
    /// Answers dropped to make room.
    pub evictions: u64,
    /// Times a newer configuration revision emptied the cache.
    pub invalidations: u64,
    /// Stale answers that stood in for an unreachable hub.
    pub stale: u64,
}

/// What stands in for the hub's answer when the hub cannot be reached.
#[derive(Clone, Debug, PartialEq)]
pub enum Fallback {
    /// An answer for the same attributes whose validity ended less than `stale_for` ago.
    Stale(Arc<PreconditionResult>),
    /// Only the failure policy (`sextant.mixer.v1.FailurePolicy`) of an older answer for the same
    /// attributes: what its policies say to do without the hub.
    Policy(i32),
}

/// One referenced attribute: which, which map key (if one), and whether it must be absent.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Reference {
    id: AttrId,
    map_key: Option<String>,
    absent: bool,
}

/// The sorted references of one answer: the key's shape.
type Shape = Arc<[Reference]>;

/// A cached answer. It answers requests while fresh (before `expires`, with uses left), may stand in for
/// an unreachable hub until `stale_until`, and after that still tells the failure policy until it is evicted.
#[derive(Debug)]
struct Entry {
    answer: Arc<PreconditionResult>,
    expires: Instant,
    stale_until: Instant,
    /// Requests it may still answer.
    uses: u32,
}

/// Answers keyed by the values of the attributes they referenced.
#[derive(Debug)]
pub struct CheckCache {
    limits: Limits,
    shapes: Vec<Shape>,
    entries: HashMap<(usize, Vec<u8>), Entry>,
    /// Insertion order, for eviction (keys may be stale: already removed).
    order: VecDeque<(usize, Vec<u8>)>,
    revision: u64,
    stats: CacheStats,
}

impl CheckCache {
    /// An empty cache.
    pub fn new(limits: Limits) -> CheckCache {
        CheckCache {
            limits,
            shapes: Vec::new(),
            entries: HashMap::new(),
            order: VecDeque::new(),
            revision: 0,
            stats: CacheStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// How many answers it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached answer for a request with attributes `bag` at `now`, counting one use of it.
    pub fn lookup(&mut self, bag: &Bag, now: Instant) -> Option<Arc<PreconditionResult>> {
        for (index, shape) in self.shapes.iter().enumerate() {
            let Some(key) = key_of(shape, bag) else {
                continue;
            };
            if let Some(entry) = self.entries.get_mut(&(index, key))
                && entry.expires > now
                && entry.uses > 0
            {
                entry.uses -= 1;
                self.stats.hits += 1;
                return Some(entry.answer.clone());
            }
        }
        self.stats.misses += 1;
        None
    }

    /// What stands in for the hub's answer to a request with attributes `bag` at `now`, when the hub cannot
    /// be reached: a stale answer, else the failure policy of an older one, else nothing. An answer of
    /// FAIL_CLOSE policies is never served stale: those policies asked for requests to be refused when the
    /// hub cannot decide them.
    pub fn fallback(&mut self, bag: &Bag, now: Instant) -> Option<Fallback> {
        let fail_close = FailurePolicy::FailClose as i32;
        if let Some(entry) = self
            .find(bag, |e| {
                e.stale_until > now && e.answer.failure_policy != fail_close
            })
            .and_then(|slot| self.entries.get(&slot))
        {
            self.stats.stale += 1;
            return Some(Fallback::Stale(entry.answer.clone()));
        }
        let slot = self.find(bag, |_| true)?;
        Some(Fallback::Policy(
            self.entries.get(&slot)?.answer.failure_policy,
        ))
    }

    /// The slot of the first entry for `bag` that `wanted` accepts.
    fn find(&self, bag: &Bag, wanted: impl Fn(&Entry) -> bool) -> Option<(usize, Vec<u8>)> {
        self.shapes.iter().enumerate().find_map(|(index, shape)| {
            let slot = (index, key_of(shape, bag)?);
            self.entries.get(&slot).filter(|e| wanted(e)).map(|_| slot)
        })
    }

    /// Keeps `response`, the answer to a Check of `bag` received at `now`, for the requests that agree with
    /// `bag` on every attribute it referenced. The request that asked has used it once already. A response
    /// of a newer configuration revision first empties the cache.
    pub fn insert(&mut self, bag: &Bag, response: &CheckResponse, now: Instant) {
        let Some(p) = &response.precondition else {
            self.stats.uncacheable += 1;
            return;
        };
        if p.config_revision > self.revision {
            if !self.entries.is_empty() {
                self.stats.invalidations += 1;
            }
            self.entries.clear();
            self.order.clear();
            self.revision = p.config_revision;
        }
        let duration = p.valid_duration.as_ref().map_or(Duration::ZERO, |d| {
            Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
        });
        let uses = u32::try_from(p.valid_use_count).unwrap_or(0);
        if duration.is_zero() || uses <= 1 || p.config_revision < self.revision {
            self.stats.uncacheable += 1;
            return;
        }
        let Some(shape) = shape_of(p) else {
            self.stats.uncacheable += 1;
            return;
        };
        let index = match self.shapes.iter().position(|s| *s == shape) {
            Some(i) => i,
            None if self.shapes.len() >= self.limits.shapes => {
                self.stats.shape_overflow += 1;
                return;
            }
            None => {
                self.shapes.push(shape);
                self.shapes.len() - 1
            }
        };
        let Some(key) = key_of(&self.shapes[index], bag) else {
            // The answer says an attribute was absent that the request has: it does not describe it.
            self.stats.uncacheable += 1;
            return;
        };
        let slot = (index, key);
        // A slot answered again keeps its place in the eviction order (entries leave only by eviction, so
        // `order` holds each slot once).
        if !self.entries.contains_key(&slot) {
            while self.entries.len() >= self.limits.entries {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                if self.entries.remove(&oldest).is_some() {
                    self.stats.evictions += 1;
                }
            }
            self.order.push_back(slot.clone());
        }
        let mut answer = p.clone();
        answer.referenced_attributes = None;
        self.entries.insert(
            slot,
            Entry {
                answer: Arc::new(answer),
                expires: now + duration,
                stale_until: now + duration + self.limits.stale_for,
                uses: uses - 1,
            },
        );
        self.stats.inserts += 1;
    }
}

/// The sorted references of an answer; `None` when one names an attribute the vocabulary lacks (the
/// proxy could not tell whether a request agrees on it).
fn shape_of(p: &PreconditionResult) -> Option<Shape> {
    let matches = p
        .referenced_attributes
        .as_ref()
        .map(|r| r.attribute_matches.as_slice())
        .unwrap_or_default();
    let mut refs = Vec::with_capacity(matches.len());
    for m in matches {
        let id = lookup(&m.name)?;
        refs.push(Reference {
            id,
            map_key: (!m.map_key.is_empty()).then(|| m.map_key.clone()),
            absent: m.condition == Condition::Absence as i32,
        });
    }
    refs.sort();
    refs.dedup();
    Some(refs.into())
}

/// The key of `bag` under `shape`: the referenced values, each tagged; `None` when `bag` has a value the
/// shape says is absent (or lacks one it says is present).
fn key_of(shape: &[Reference], bag: &Bag) -> Option<Vec<u8>> {
    let mut key = Vec::with_capacity(64);
    for r in shape {
        let value = bag.get(r.id);
        let present = match (&r.map_key, value) {
            (Some(k), Some(Value::StringMap(m))) => m.get(k).map(|v| Encoded::Text(v)),
            (Some(_), _) => None,
            (None, v) => v.map(Encoded::Value),
        };
        match (present, r.absent) {
            (None, true) => key.push(0),
            (Some(v), false) => {
                key.push(1);
                // Length-prefixed, so that no two sequences of values run together into one key.
                let at = key.len();
                key.extend_from_slice(&0u64.to_le_bytes());
                match v {
                    Encoded::Text(t) => key.extend_from_slice(t.as_bytes()),
                    Encoded::Value(v) => encode(v, &mut key),
                }
                let len = (key.len() - at - 8) as u64;
                key[at..at + 8].copy_from_slice(&len.to_le_bytes());
            }
            _ => return None,
        }
    }
    Some(key)
}

/// A referenced value present in a bag: a map entry's text, or a whole value.
enum Encoded<'a> {
    Text(&'a str),
    Value(&'a Value),
}

/// Appends a value as bytes that differ whenever values differ (type tag, then the value; map entries
/// sorted) to `out`.
fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::String(s) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Int64(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Double(d) => {
            out.push(3);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[4, u8::from(*b)]),
        Value::Bytes(b) => {
            out.push(5);
            out.extend_from_slice(b);
        }
        Value::Timestamp(t) => {
            out.push(6);
            out.extend_from_slice(&t.seconds.to_le_bytes());
            out.extend_from_slice(&t.nanos.to_le_bytes());
        }
        Value::Duration(d) => {
            out.push(7);
            out.extend_from_slice(&d.seconds.to_le_bytes());
            out.extend_from_slice(&d.nanos.to_le_bytes());
        }
        Value::StringMap(m) => {
            out.push(8);
            let mut entries: Vec<(&String, &String)> = m.iter().collect();
            entries.sort();
            for (k, v) in entries {
                for part in [k, v] {
                    out.extend_from_slice(&(part.len() as u64).to_le_bytes());
                    out.extend_from_slice(part.as_bytes());
                }
            }
        }
        Value::Ip(ip) => {
            out.push(9);
            match ip {
                std::net::IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                std::net::IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
