//! The push budget: how many bytes of responses may be on their way to proxies at once. A response is on its
//! way from the moment its stream queues it until the proxy answers it (ACK or NACK), so the budget bounds
//! what pilot holds in send queues and encoding buffers when a change reaches thousands of proxies at once,
//! and serves them in turn instead of all at the same time.
//!
//! A stream holds at most one share at a time: it gives back the previous one before it waits for the next,
//! so streams never wait on each other in a cycle. A share is also given back when its proxy does not answer
//! within [`ANSWER_TIMEOUT`], or when the stream ends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a share stays taken waiting for the proxy's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The default budget: 64 MiB.
pub const DEFAULT_BUDGET_BYTES: usize = 64 << 20;

/// The bytes the ADS server may have on their way to proxies at once (counted in KiB).
#[derive(Debug, Clone)]
pub struct PushBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl PushBudget {
    /// A budget of `bytes` (at least 1 KiB).
    pub fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX >> 4)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        PushBudget {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits for room for `bytes` (a push larger than the whole budget waits for all of it) and returns the
    /// share, to be given back once the proxy answered every type in `types`.
    pub(crate) async fn take(&self, bytes: usize, types: BTreeSet<String>) -> Share {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        let permit = self
            .kib
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget's semaphore is never closed");
        Share {
            _permit: permit,
            pending: types,
            deadline: Instant::now() + ANSWER_TIMEOUT,
        }
    }

    /// KiB free now (for tests and metrics).
    pub fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

impl Default for PushBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES)
    }
}

/// One stream's share of the budget: its last push, until the proxy answered each of its types.
#[derive(Debug)]
pub(crate) struct Share {
    _permit: OwnedSemaphorePermit,
    pending: BTreeSet<String>,
    /// When the share is given back even without answers.
    pub(crate) deadline: Instant,
}

impl Share {
    /// Records the proxy's answer for `type_url`; true once every type of the push was answered.
    pub(crate) fn answered(&mut self, type_url: &str) -> bool {
        self.pending.remove(type_url);
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(t: &[&str]) -> BTreeSet<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_push_waits_until_earlier_ones_are_answered() {
        let budget = PushBudget::new(100 << 10);
        let mut first = budget.take(60 << 10, types(&["cds", "eds"])).await;
        assert_eq!(budget.available_kib(), 40);
        let second = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(60 << 10, types(&["rds"])).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "only 40 KiB are free");
        assert!(!first.answered("cds"), "eds is still unanswered");
        assert!(first.answered("eds"));
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(budget.available_kib(), 40);
        drop(second);
        // A push larger than the whole budget takes all of it rather than waiting forever.
        let huge = budget.take(1 << 30, types(&["cds"])).await;
        assert_eq!(budget.available_kib(), 0);
        drop(huge);
        assert_eq!(budget.available_kib(), 100);
    }
}
