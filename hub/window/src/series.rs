//! A time series of fixed memory: a ring of buckets of one step each, covering the window, every bucket
//! holding counts and a latency histogram.

use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in milliseconds (the last is unbounded).
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1_000.0,
    2_000.0,
    5_000.0,
    10_000.0,
    30_000.0,
    f64::INFINITY,
];

/// One step's traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket {
    /// Which step it holds (time divided by the step); 0 when unused.
    pub step: u64,
    /// Requests (or connections).
    pub requests: u64,
    /// Of those, answered 5xx (or, for gRPC, a non-OK status).
    pub errors: u64,
    /// Of those, answered 403.
    pub denied: u64,
    /// Of those, answered 429.
    pub limited: u64,
    /// Of those, over mutual TLS.
    pub mtls: u64,
    /// Latency histogram: counts per [`LATENCY_BOUNDS_MS`] bucket.
    pub latency: [u64; 16],
}

impl Bucket {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Bucket) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.denied += other.denied;
        self.limited += other.limited;
        self.mtls += other.mtls;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
    }

    /// The `q` quantile (0–1) of the latency in milliseconds, interpolated within its bucket; `None`
    /// without observations.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0.0;
        for (i, n) in self.latency.iter().enumerate() {
            let n = *n as f64;
            if n > 0.0 && seen + n >= rank {
                let lower = if i == 0 {
                    0.0
                } else {
                    LATENCY_BOUNDS_MS[i - 1]
                };
                let upper = LATENCY_BOUNDS_MS[i];
                if upper.is_infinite() {
                    return Some(lower);
                }
                return Some(lower + (upper - lower) * ((rank - seen) / n).clamp(0.0, 1.0));
            }
            seen += n;
        }
        Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 2])
    }
}

/// One request's outcome.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Failed (5xx, or a gRPC error).
    pub error: bool,
    /// Answered 403.
    pub denied: bool,
    /// Answered 429.
    pub limited: bool,
    /// Over mutual TLS.
    pub mtls: bool,
    /// How long it took, when known.
    pub latency: Option<Duration>,
}

/// A ring of buckets covering the window.
#[derive(Clone, Debug)]
pub struct Series {
    buckets: Box<[Bucket]>,
}

impl Series {
    /// A series of `len` steps.
    pub fn new(len: usize) -> Series {
        Series {
            buckets: vec![Bucket::default(); len.max(1)].into_boxed_slice(),
        }
    }

    fn slot(&mut self, step: u64) -> &mut Bucket {
        let len = self.buckets.len() as u64;
        let b = &mut self.buckets[usize::try_from(step % len).unwrap_or(0)];
        if b.step != step {
            *b = Bucket {
                step,
                ..Bucket::default()
            };
        }
        b
    }

    /// Counts `o` in step `step`.
    pub fn record(&mut self, step: u64, o: Outcome) {
        let b = self.slot(step);
        b.requests += 1;
        b.errors += u64::from(o.error);
        b.denied += u64::from(o.denied);
        b.limited += u64::from(o.limited);
        b.mtls += u64::from(o.mtls);
        if let Some(l) = o.latency {
            let ms = l.as_secs_f64() * 1000.0;
            let i = LATENCY_BOUNDS_MS
                .iter()
                .position(|b| ms <= *b)
                .unwrap_or(LATENCY_BOUNDS_MS.len() - 1);
            b.latency[i] += 1;
        }
    }

    /// The sum of the steps in `from..=to`.
    pub fn sum(&self, from: u64, to: u64) -> Bucket {
        let mut out = Bucket::default();
        for b in self
            .buckets
            .iter()
            .filter(|b| b.step >= from && b.step <= to && b.step > 0)
        {
            out.add(b);
        }
        out
    }

    /// Each step of `from..=to`, oldest first (empty steps included).
    pub fn steps(&self, from: u64, to: u64) -> Vec<Bucket> {
        (from..=to)
            .map(|s| {
                self.buckets
                    .iter()
                    .find(|b| b.step == s)
                    .copied()
                    .unwrap_or(Bucket {
                        step: s,
                        ..Bucket::default()
                    })
            })
            .collect()
    }

    /// The earliest step of `from..` with traffic.
    pub fn first_step_since(&self, from: u64) -> Option<u64> {
        self.buckets
            .iter()
            .filter(|b| b.step >= from && b.step > 0 && b.requests > 0)
            .map(|b| b.step)
            .min()
    }

    /// The latest step with traffic.
    pub fn last_step(&self) -> u64 {
        self.buckets.iter().map(|b| b.step).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets_and_old_steps_fall_out() {
        let mut s = Series::new(3);
        for ms in [1u64, 1, 1, 1, 1, 1, 1, 1, 1, 40] {
            s.record(
                10,
                Outcome {
                    latency: Some(Duration::from_millis(ms)),
                    ..Outcome::default()
                },
            );
        }
        let b = s.sum(10, 10);
        assert_eq!(b.requests, 10);
        let p50 = b.quantile_ms(0.5).expect("observations");
        assert!((0.5..=1.0).contains(&p50), "{p50}");
        let p99 = b.quantile_ms(0.99).expect("observations");
        assert!((20.0..=50.0).contains(&p99), "{p99}");
        // Three steps later the ring has reused the slot.
        s.record(13, Outcome::default());
        assert_eq!(s.sum(10, 10).requests, 0);
        assert_eq!(s.sum(0, 13).requests, 1);
        assert_eq!(s.steps(11, 13).len(), 3);
    }
}
