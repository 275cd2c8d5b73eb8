//! Check calls from the proxy: the cache first, then the hub over its cluster, then — when the hub cannot
//! be reached — a stale answer, the failure policy an older answer carried, or the filter's own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use proxy_balance::Cluster;
use proxy_balance::grpc::{self, GrpcError};
use proxy_config::mixer::OnFailure;
use proxy_stats::{Counter, Scope, Stats};
use sextant_attributes::{Bag, to_compressed};
use sextant_proto::mixer::{CheckRequest, CheckResponse, FailurePolicy, PreconditionResult};
use tracing::Instrument;

use crate::cache::{CheckCache, Fallback, Limits};

/// The hub's Check method.
pub const CHECK_PATH: &str = "/sextant.mixer.v1.Mixer/Check";

/// What to do with a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Forward it, applying the answer's header operations (none when the hub was bypassed).
    Forward(Option<Arc<PreconditionResult>>),
    /// Answer it with this response instead.
    Refuse(Refusal),
}

/// A response the proxy gives instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
}

/// A hub cluster's Check stats (`cluster.NAME.hub.check.*`).
#[derive(Debug, Clone)]
pub struct CheckStats {
    /// `hub.check.cache_hit`: requests answered from the cache.
    pub cache_hit: Counter,
    /// `hub.check.calls`: Check calls made.
    pub calls: Counter,
    /// `hub.check.ok`: requests allowed (by the hub, the cache or a stale answer).
    pub ok: Counter,
    /// `hub.check.denied`: requests refused by an answer.
    pub denied: Counter,
    /// `hub.check.error`: calls without an answer (unreachable, timed out, refused, malformed).
    pub error: Counter,
    /// `hub.check.stale`: requests decided by a stale answer while the hub could not be reached.
    pub stale: Counter,
    /// `hub.check.bypassed`: requests forwarded unchecked under FAIL_OPEN.
    pub bypassed: Counter,
    /// `hub.check.failed_closed`: requests refused for want of an answer under FAIL_CLOSE.
    pub failed_closed: Counter,
}

impl CheckStats {
    fn new(stats: &Stats, cluster: &str) -> CheckStats {
        let scope = Scope::Cluster(cluster.to_string());
        let c = |n: &str| stats.counter(&scope, &format!("hub.check.{n}"));
        CheckStats {
            cache_hit: c("cache_hit"),
            calls: c("calls"),
            ok: c("ok"),
            denied: c("denied"),
            error: c("error"),
            stale: c("stale"),
            bypassed: c("bypassed"),
            failed_closed: c("failed_closed"),
        }
    }
}

/// Checks requests against one hub cluster, with one cache for every filter that calls it.
#[derive(Debug)]
pub struct Checker {
    cluster: String,
    authority: String,
    cache: Mutex<CheckCache>,
    stats: CheckStats,
}

impl Checker {
    /// A checker calling `cluster`, its cache bounded by `limits`.
    pub fn new(cluster: &str, limits: Limits, stats: &Stats) -> Checker {
        Checker {
            cluster: cluster.to_string(),
            authority: proxy_balance::grpc::authority_of(cluster),
            cache: Mutex::new(CheckCache::new(limits)),
            stats: CheckStats::new(stats, cluster),
        }
    }

    /// Its stats.
    pub fn stats(&self) -> &CheckStats {
        &self.stats
    }

    /// What the cache did so far.
    pub fn cache_stats(&self) -> crate::CacheStats {
        self.lock().stats()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CheckCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides the request whose attributes are `bag`: from the cache, else by calling the hub on
    /// `cluster` (absent: the hub's cluster is not configured) within `timeout`.
    ///
    /// `parent`: the trace context of the request checked (this hop's span). The hub's Check joins it: it is
    /// sent on, or, while this proxy exports its own spans, the span of the call (a child of it) is.
    pub async fn check(
        &self,
        cluster: Option<&Arc<Cluster>>,
        bag: &Bag,
        timeout: Duration,
        on_failure: OnFailure,
        parent: Option<&sextant_tracectx::Context>,
    ) -> Verdict {
        if let Some(answer) = self.lock().lookup(bag, Instant::now()) {
            self.stats.cache_hit.inc();
            return self.decided(answer);
        }
        let span = sextant_otel::root_span!(
            parent,
            "hub.check",
            otel.name = "istio.mixer.v1.Mixer/Check",
            otel.kind = "client",
            rpc.system = "grpc",
            sextant.cluster = %self.cluster,
            sextant.code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let traceparent = sextant_otel::traceparent(&span)
            .or_else(|| parent.map(sextant_tracectx::Context::traceparent));
        let called = match cluster {
            Some(cluster) => {
                self.call(cluster, bag, timeout, traceparent.as_deref())
                    .instrument(span.clone())
                    .await
            }
            None => Err(GrpcError::Send(proxy_balance::Error::NoHost)),
        };
        match &called {
            Ok(r) => {
                let code = r
                    .precondition
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .map_or(0, |s| s.code);
                span.record("sextant.code", code)
            }
            Err(_) => span.record("otel.status_code", "ERROR"),
        };
        drop(span);
        match called {
            Ok(response) => {
                let mut cache = self.lock();
                cache.insert(bag, &response, Instant::now());
                drop(cache);
                match response.precondition {
                    Some(p) => self.decided(Arc::new(p)),
                    None => {
                        self.without_answer(bag, on_failure, "an answer without a precondition")
                    }
                }
            }
            Err(e) => {
                tracing::debug!(cluster = %self.cluster, error = %e, "hub Check failed");
                self.without_answer(bag, on_failure, &e.to_string())
            }
        }
    }

    async fn call(
        &self,
        cluster: &Arc<Cluster>,
        bag: &Bag,
        timeout: Duration,
        traceparent: Option<&str>,
    ) -> Result<CheckResponse, GrpcError> {
        self.stats.calls.inc();
        let request = CheckRequest {
            compressed: Some(to_compressed(bag)),
            deduplication_id: format!("{:016x}", fastrand::u64(..)),
            lease_quota: true,
            ..Default::default()
        };
        let answer = grpc::unary(
            cluster,
            &self.authority,
            CHECK_PATH,
            Bytes::from(request.encode_to_vec()),
            timeout,
            traceparent,
        )
        .await
        .and_then(|bytes| {
            CheckResponse::decode(bytes).map_err(|e| GrpcError::Malformed(e.to_string()))
        });
        if answer.is_err() {
            self.stats.error.inc();
        }
        answer
    }

    fn decided(&self, answer: Arc<PreconditionResult>) -> Verdict {
        let code = answer.status.as_ref().map_or(0, |s| s.code);
        if code == 0 {
            self.stats.ok.inc();
            return Verdict::Forward(Some(answer));
        }
        self.stats.denied.inc();
        Verdict::Refuse(refusal(&answer))
    }

    fn without_answer(&self, bag: &Bag, on_failure: OnFailure, why: &str) -> Verdict {
        let fallback = self.lock().fallback(bag, Instant::now());
        let policy = match fallback {
            Some(Fallback::Stale(answer)) => {
                self.stats.stale.inc();
                return self.decided(answer);
            }
            Some(Fallback::Policy(p)) if p == FailurePolicy::FailClose as i32 => OnFailure::Close,
            Some(Fallback::Policy(p)) if p == FailurePolicy::FailOpen as i32 => OnFailure::Open,
            _ => on_failure,
        };
        match policy {
            OnFailure::Open => {
                self.stats.bypassed.inc();
                Verdict::Forward(None)
            }
            OnFailure::Close => {
                self.stats.failed_closed.inc();
                Verdict::Refuse(Refusal {
                    status: 503,
                    headers: Vec::new(),
                    body: format!("UNAVAILABLE: the policy hub could not be reached ({why})"),
                })
            }
        }
    }
}

/// The response for a refusing answer: its direct response, else the HTTP status of its gRPC code with
/// `CODE: message` as the body (and `retry-after` when the hub said how long).
fn refusal(p: &PreconditionResult) -> Refusal {
    if let Some(d) = &p.direct_response {
        let mut headers: Vec<(String, String)> = d
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        headers.sort();
        return Refusal {
            status: u16::try_from(d.http_status)
                .ok()
                .filter(|s| (200..600).contains(s))
                .unwrap_or(403),
            headers,
            body: d.body.clone(),
        };
    }
    let (code, message) = p
        .status
        .as_ref()
        .map_or((2, ""), |s| (s.code, s.message.as_str()));
    let (status, name) = match code {
        3 => (400, "INVALID_ARGUMENT"),
        5 => (404, "NOT_FOUND"),
        7 => (403, "PERMISSION_DENIED"),
        8 => (429, "RESOURCE_EXHAUSTED"),
        14 => (503, "UNAVAILABLE"),
        16 => (401, "UNAUTHENTICATED"),
        _ => (403, "DENIED"),
    };
    let mut headers = Vec::new();
    if let Some(after) = &p.retry_after {
        let seconds = after.seconds.max(0) + i64::from(after.nanos > 0);
        headers.push(("retry-after".to_string(), seconds.max(1).to_string()));
    }
    Refusal {
        status,
        headers,
        body: format!("{name}: {message}"),
    }
}
