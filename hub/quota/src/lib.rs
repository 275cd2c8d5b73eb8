//! Rate limits for the hub's Check path.
//!
//! A `RateLimit` resource becomes a [`Limiter`]: buckets keyed by the values of its dimensions, each allowing
//! `requests` per `per` spaced evenly (GCRA) plus `burst` at once. [`QuotaBackend`] is the seam between the
//! policy engine and where bucket state lives: [`LocalBackend`] keeps it in this process (GCRA, bounded without
//! forgiving buckets in use); a shared backend (`hub-quota-redis`) implements the same trait so every hub
//! replica counts against one budget, and [`ScopedBackend`] sends each limit to the backend its
//! [`Scope`] names.

mod local;
mod scoped;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use local::{LimiterStats, LocalBackend, LocalLimiter, Overflow};
pub use scoped::ScopedBackend;

/// Where a limit's buckets are counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scope {
    /// In each hub on its own: N hubs allow N times the limit.
    #[default]
    Local,
    /// Once for every hub sharing the global backend (Redis).
    Global,
}

/// What a GLOBAL limit decides while its backend cannot answer in time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnBackendFailure {
    /// Count locally, each hub allowing the limit divided by the number of live hubs.
    #[default]
    Local,
    /// Allow every request.
    Allow,
    /// Refuse every request.
    Deny,
}

/// A validated limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    /// Requests per `per`.
    pub requests: u32,
    /// The window.
    pub per: Duration,
    /// Extra requests allowed at once.
    pub burst: u32,
    /// Where the buckets are counted.
    pub scope: Scope,
    /// What a GLOBAL limit decides while its backend fails.
    pub on_backend_failure: OnBackendFailure,
}

impl LimitSpec {
    /// Checks the numbers: at least one request, a window of at least one nanosecond per request.
    pub fn new(requests: u32, per: Duration, burst: u32) -> Result<Self, QuotaError> {
        if requests == 0 {
            return Err(QuotaError::ZeroRequests);
        }
        if per.is_zero() || per / requests == Duration::ZERO {
            return Err(QuotaError::WindowTooShort { requests, per });
        }
        Ok(LimitSpec {
            requests,
            per,
            burst,
            scope: Scope::Local,
            on_backend_failure: OnBackendFailure::Local,
        })
    }

    /// The same limit counted in `scope`, deciding as `on_backend_failure` says while a global backend fails.
    pub fn scoped(self, scope: Scope, on_backend_failure: OnBackendFailure) -> Self {
        LimitSpec {
            scope,
            on_backend_failure,
            ..self
        }
    }

    /// The most units one bucket can grant at once.
    pub fn capacity(&self) -> u32 {
        self.burst.saturating_add(1)
    }

    /// The even spacing of requests.
    pub fn emission_interval(&self) -> Duration {
        self.per / self.requests
    }
}

/// A limit that cannot be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QuotaError {
    /// `requests: 0`.
    #[error("requests must be at least 1 (to refuse everything, use a Policy with a DENY rule)")]
    ZeroRequests,
    /// `per` too short for `requests`.
    #[error("{requests} requests per {per:?} is finer than one per nanosecond")]
    WindowTooShort {
        /// Requests.
        requests: u32,
        /// Window.
        per: Duration,
    },
}

/// The result of taking units from a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Units were granted.
    Granted {
        /// Units granted (fewer than asked only for best-effort requests).
        granted: u32,
        /// Units that could still be taken at once right now.
        remaining: u32,
        /// Time until the bucket is back to full capacity.
        reset_after: Duration,
    },
    /// Nothing was granted.
    Denied {
        /// Time until the requested units would be granted.
        retry_after: Duration,
    },
}

/// A boxed future, the return type of the object-safe backend methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The buckets of one RateLimit resource.
pub trait Limiter: Send + Sync + std::fmt::Debug {
    /// Takes `amount` units (at least 1) from the bucket `key`. With `best_effort`, grants as many as are
    /// available instead of all or nothing. Never blocks waiting for capacity.
    fn acquire<'a>(
        &'a self,
        key: &'a [String],
        amount: u32,
        best_effort: bool,
    ) -> BoxFuture<'a, Outcome>;

    /// The limit.
    fn spec(&self) -> LimitSpec;
}

/// Where bucket state lives.
pub trait QuotaBackend: Send + Sync {
    /// The limiter for RateLimit `name` (`namespace/name`). A backend keeps the buckets of an unchanged limit
    /// across config reloads, so editing one policy does not reset every client's budget.
    fn limiter(&self, name: &str, spec: LimitSpec) -> std::sync::Arc<dyn Limiter>;

    /// Forgets limiters whose names are not in `live` (called after a config reload).
    fn retain(&self, live: &[String]);

    /// Drops idle bucket state; called periodically.
    fn housekeeping(&self);
}
