//! The push budget: how many bytes of responses may be on their way to proxies at once. A response is on its
//! way from the moment its stream decides to send it until the proxy answers a response of its type (ACK or
//! NACK), so the budget bounds what pilot holds in send queues and HTTP/2 buffers when a change reaches
//! thousands of proxies at once, and serves them in turn instead of all at the same time.
//!
//! A stream may wait for more while it holds a share: what it holds is on its way already, and the proxy's
//! answers, read while the stream waits, give it back; so waits never form a cycle. A stream's share is also
//! given back when its proxy does not answer within [`ANSWER_TIMEOUT`], or when the stream ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a share stays taken waiting for the proxy's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The default budget: 16 MiB.
pub const DEFAULT_BUDGET_BYTES: usize = 16 << 20;

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

    /// Waits for room for `bytes` (a push larger than the whole budget waits for all of it).
    pub(crate) async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        self.kib
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the budget's semaphore is never closed")
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

/// One stream's share of the budget: what it sent, by type, that its proxy has not answered yet.
#[derive(Debug, Default)]
pub(crate) struct Share {
    by_type: BTreeMap<String, OwnedSemaphorePermit>,
    deadline: Option<Instant>,
}

impl Share {
    /// Adds a push of `type_url` (with `permit` for its bytes).
    pub(crate) fn add(&mut self, type_url: &str, permit: OwnedSemaphorePermit) {
        match self.by_type.get_mut(type_url) {
            Some(held) => held.merge(permit),
            None => {
                self.by_type.insert(type_url.to_string(), permit);
            }
        }
        self.deadline = Some(Instant::now() + ANSWER_TIMEOUT);
    }

    /// The proxy answered a response of `type_url`: what was held for that type goes back.
    pub(crate) fn answered(&mut self, type_url: &str) {
        self.by_type.remove(type_url);
        if self.by_type.is_empty() {
            self.deadline = None;
        }
    }

    /// When the share goes back even without answers, if anything is held.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Gives everything back.
    pub(crate) fn clear(&mut self) {
        self.by_type.clear();
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_push_waits_until_earlier_ones_are_answered() {
        let budget = PushBudget::new(100 << 10);
        let mut share = Share::default();
        share.add("cds", budget.take(40 << 10).await);
        share.add("cds", budget.take(20 << 10).await);
        share.add("eds", budget.take(10 << 10).await);
        assert_eq!(budget.available_kib(), 30);
        assert!(share.deadline().is_some());
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(60 << 10).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "only 30 KiB are free");
        share.answered("cds");
        let permit = waiting.await.unwrap();
        assert_eq!(budget.available_kib(), 30);
        share.answered("eds");
        assert!(share.deadline().is_none(), "nothing held");
        drop(permit);
        // A push larger than the whole budget takes all of it rather than waiting forever.
        let huge = budget.take(1 << 30).await;
        assert_eq!(budget.available_kib(), 0);
        drop(huge);
        assert_eq!(budget.available_kib(), 100);
    }
}
