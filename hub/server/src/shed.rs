//! Overload: the hub admits at most `--max-in-flight` decisions and Reports at once, and answers the rest at
//! once with `RESOURCE_EXHAUSTED`, before their body is read, rather than queueing them.
//!
//! A call is in flight from when its headers arrive until its answer is ready, so the count includes calls
//! waiting for a CPU: offered more than it can serve, the hub serves what it admits instead of queueing
//! without end, and what waits (memory included) stays bounded by the limit. Every unary door is gated — the
//! native Check and Report, Envoy's ext_authz and rate-limit services; a refusal is what a failed call is to
//! each client: the Sextant proxy and Envoy apply their failure policy to a Check (`failurePolicy`, Envoy's
//! `failure_mode_allow` / `failure_mode_deny`), and the proxy drops a refused Report, counted
//! (`hub.report.dropped`), as any failed one. The access-log service is a stream per Envoy, not a call per
//! request, and health and reflection must answer under load, so they are not gated. Refusals are counted in
//! `sextant_hub_shed_total{door}`; calls in flight are `sextant_hub_in_flight`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::metrics::GateMetrics;

/// The gated doors: (gRPC path, the `door` label of its refusals).
const DOORS: [(&str, &str); 4] = [
    ("/sextant.mixer.v1.Mixer/Check", "mixer_check"),
    ("/sextant.mixer.v1.Mixer/Report", "mixer_report"),
    ("/envoy.service.auth.v3.Authorization/Check", "ext_authz"),
    (
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        "ratelimit",
    ),
];

/// The default limit: enough calls in flight to keep every core busy while some wait on adapters or Redis,
/// few enough that the queue in front of the cores holds a few milliseconds of work.
pub fn default_max_in_flight() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    256 * cores
}

/// The admission gate all the hub's connections share.
#[derive(Debug)]
pub struct Gate {
    in_flight: AtomicUsize,
    limit: usize,
    metrics: GateMetrics,
}

impl Gate {
    /// A gate admitting at most `limit` calls at once (at least one).
    pub fn new(limit: usize, metrics: GateMetrics) -> Arc<Self> {
        Arc::new(Gate {
            in_flight: AtomicUsize::new(0),
            limit: limit.max(1),
            metrics,
        })
    }

    /// A place for one more call, or `None` when `limit` are in flight.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok();
        admitted.then(|| {
            self.metrics.in_flight(1);
            Admitted(self.clone())
        })
    }
}

/// One admitted call's place; given back when dropped (answered, or the client went away).
struct Admitted(Arc<Gate>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.in_flight(-1);
    }
}

/// The [`Layer`] putting [`Shed`] in front of the hub's gRPC services.
#[derive(Clone, Debug)]
pub struct ShedLayer(pub Arc<Gate>);

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            gate: self.0.clone(),
        }
    }
}

/// Admits a gated call through the [`Gate`] or answers `RESOURCE_EXHAUSTED` at once.
#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    gate: Arc<Gate>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> Service<http::Request<Body>> for Shed<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let Some(&(_, door)) = DOORS.iter().find(|(p, _)| *p == path) else {
            return Box::pin(self.inner.call(request));
        };
        match self.gate.admit() {
            Some(admitted) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await;
                    drop(admitted);
                    response
                })
            }
            None => {
                self.gate.metrics.shed(door);
                let status = Status::resource_exhausted(format!(
                    "the hub is overloaded ({} calls in flight, --max-in-flight); retry with backoff",
                    self.gate.limit
                ));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::metrics::Metrics;

    /// A service whose answers wait until `open` turns true.
    #[derive(Clone)]
    struct Slow(tokio::sync::watch::Receiver<bool>);

    impl Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let mut open = self.0.clone();
            Box::pin(async move {
                let _ = open.wait_for(|o| *o).await;
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn request(path: &str) -> http::Request<Body> {
        http::Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("request")
    }

    fn refused(answer: &http::Response<Body>) -> Option<tonic::Code> {
        Status::from_header_map(answer.headers()).map(|s| s.code())
    }

    #[tokio::test]
    async fn over_the_limit_gated_calls_are_refused_at_once_and_places_come_back() {
        let metrics = Metrics::new();
        let (open, gate_open) = tokio::sync::watch::channel(false);
        let mut shed = ShedLayer(Gate::new(2, metrics.gate())).layer(Slow(gate_open));
        // Admission happens when the call is made: two places taken.
        let first = shed.call(request("/sextant.mixer.v1.Mixer/Check"));
        let second = shed.call(request("/envoy.service.auth.v3.Authorization/Check"));
        let answer = shed
            .call(request("/sextant.mixer.v1.Mixer/Report"))
            .await
            .expect("answer");
        let status = Status::from_header_map(answer.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--max-in-flight"), "{status:?}");
        // Health and the access-log stream are not gated.
        let health = shed.call(request("/grpc.health.v1.Health/Check"));
        assert!(metrics.encode().contains("sextant_hub_in_flight 2"));
        open.send_replace(true);
        for call in [first, second, health] {
            assert_eq!(refused(&call.await.expect("answer")), None);
        }
        // Answered calls gave their places back.
        let again = shed.call(request("/sextant.mixer.v1.Mixer/Check")).await;
        assert_eq!(refused(&again.expect("answer")), None);
        let text = metrics.encode();
        assert!(
            text.contains("sextant_hub_shed_total{door=\"mixer_report\"} 1"),
            "{text}"
        );
        assert!(text.contains("sextant_hub_in_flight 0"), "{text}");
    }
}
