//! Where the query API's answers come from (`docs/dashboard.md`): the hub's own window of recent telemetry
//! (`hub-window`, what this hub was reported), or, with `--prometheus-url`, a Prometheus scraping every hub
//! of a fleet, so that the graph, the services, their RED and the rate-limit refusals are the fleet's
//! ([`prometheus`]). Decisions, traces and the window's status are not in any metric: they always come from
//! this hub's window.
//!
//! Either source answers in the same JSON shapes, with `"source": "window"` or `"source": "prometheus"`
//! added. A query to Prometheus that fails (down, slow, refused) is a [`QueryError`] naming the Prometheus
//! and which query failed; the admin port answers it with 502.

mod client;
mod prometheus;
#[cfg(test)]
mod tests;

use std::time::Duration;

use hub_window::Window;
use serde_json::Value;

pub use client::{PrometheusUrl, QueryFailed, UrlError};

/// A query of the API that Prometheus could not answer.
#[derive(Debug, thiserror::Error)]
#[error("prometheus at {url}: {failed}")]
pub struct QueryError {
    /// The Prometheus asked.
    pub url: PrometheusUrl,
    /// Which query failed, and why.
    pub failed: QueryFailed,
}

/// Where the graph, services, RED and rate limits are answered from.
pub enum Source {
    /// This hub's window.
    Window,
    /// A Prometheus, by PromQL (boxed: its client is large beside nothing).
    Prometheus(Box<prometheus::Prometheus>),
}

/// `answer` with `"source": source` added.
fn tagged(mut answer: Value, source: &str) -> Value {
    if let Some(fields) = answer.as_object_mut() {
        fields.insert("source".to_string(), Value::from(source));
    }
    answer
}

impl Source {
    /// The window, or the Prometheus at `url` (nothing is connected until a query).
    pub fn new(url: Option<PrometheusUrl>) -> Source {
        match url {
            None => Source::Window,
            Some(url) => Source::Prometheus(Box::new(prometheus::Prometheus::new(
                client::Client::new(url),
            ))),
        }
    }

    /// Tags a Prometheus answer, or names the Prometheus in its failure.
    fn from_prometheus(
        p: &prometheus::Prometheus,
        answer: Result<Value, QueryFailed>,
    ) -> Result<Value, QueryError> {
        answer
            .map(|a| tagged(a, "prometheus"))
            .map_err(|failed| QueryError {
                url: p.url().clone(),
                failed,
            })
    }

    /// The service graph over the last `window`.
    pub async fn graph(&self, local: &Window, window: Duration) -> Result<Value, QueryError> {
        match self {
            Source::Window => Ok(tagged(local.graph(window), "window")),
            Source::Prometheus(p) => Self::from_prometheus(p, p.graph(window).await),
        }
    }

    /// Each destination service over the last `window`.
    pub async fn services(&self, local: &Window, window: Duration) -> Result<Value, QueryError> {
        match self {
            Source::Window => Ok(tagged(local.services(window), "window")),
            Source::Prometheus(p) => Self::from_prometheus(p, p.services(window).await),
        }
    }

    /// Rate, errors and duration of service `namespace/name`, per step over the last `window`.
    pub async fn red(
        &self,
        local: &Window,
        namespace: &str,
        name: &str,
        window: Duration,
    ) -> Result<Value, QueryError> {
        match self {
            Source::Window => Ok(tagged(local.red(namespace, name, window), "window")),
            Source::Prometheus(p) => Self::from_prometheus(p, p.red(namespace, name, window).await),
        }
    }

    /// Refusals per RateLimit over the last `window`.
    pub async fn rate_limits(&self, local: &Window, window: Duration) -> Result<Value, QueryError> {
        match self {
            Source::Window => Ok(tagged(local.rate_limits(window), "window")),
            Source::Prometheus(p) => Self::from_prometheus(p, p.rate_limits(window).await),
        }
    }
}
