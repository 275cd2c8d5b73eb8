//! The status port's HTTP endpoints: the proxy's readiness and the application's rewritten probes.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proxy_stats::Counter;
use tokio::sync::Semaphore;

use crate::parse::{ProbeKind, Probers};

/// The most probes running at once by default: the kubelet runs each probe of a container one at a time, so
/// more than one per prober in flight is not the kubelet.
pub const MAX_IN_FLIGHT: usize = crate::MAX_PROBERS;

type NotReady = dyn Fn() -> Option<String> + Send + Sync;

/// What the status port serves.
pub struct StatusPort {
    probers: Probers,
    pod_ip: IpAddr,
    not_ready: Box<NotReady>,
    in_flight: Semaphore,
    max_in_flight: usize,
    rejected: Counter,
}

impl StatusPort {
    /// The status port of a proxy whose application's probes are `probers`, run against `pod_ip` (the host of
    /// probes naming none), with the proxy's readiness `not_ready` (`None`: ready; `Some(reason)`: not).
    pub fn new(
        probers: Probers,
        pod_ip: IpAddr,
        not_ready: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> StatusPort {
        StatusPort {
            probers,
            pod_ip,
            not_ready: Box::new(not_ready),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
            max_in_flight: MAX_IN_FLIGHT,
            rejected: Counter::default(),
        }
    }

    /// At most `n` probes running at once (by default [`MAX_IN_FLIGHT`]); more are answered 503 and counted.
    pub fn max_in_flight(mut self, n: usize) -> StatusPort {
        self.in_flight = Semaphore::new(n);
        self.max_in_flight = n;
        self
    }

    /// Counts the probe requests refused for the bound on probes in flight in `counter` (by default a counter
    /// of its own, read by [`StatusPort::rejected`]).
    pub fn count_rejected(mut self, counter: Counter) -> StatusPort {
        self.rejected = counter;
        self
    }

    /// How many probe requests were refused for the bound on probes in flight.
    pub fn rejected(&self) -> u64 {
        self.rejected.get()
    }

    /// The application's probes.
    pub fn probers(&self) -> &Probers {
        &self.probers
    }
}

/// The status port's router: `GET /healthz/ready` (200 `LIVE`, or 503 with the reason the proxy is not ready)
/// and `GET /app-health/CONTAINER/{livez,readyz,startupz}` (the probe run: 200, or 503 with a one-line reason;
/// 404 when the injector rewrote no such probe).
pub fn router(port: Arc<StatusPort>) -> Router {
    Router::new()
        .route("/healthz/ready", get(ready))
        .route("/app-health/{container}/{kind}", get(app_health))
        .with_state(port)
}

async fn ready(State(port): State<Arc<StatusPort>>) -> Response {
    match (port.not_ready)() {
        None => "LIVE\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn app_health(
    State(port): State<Arc<StatusPort>>,
    Path((container, kind)): Path<(String, String)>,
) -> Response {
    let Some(prober) = ProbeKind::from_segment(&kind).and_then(|k| port.probers.get(&container, k))
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("no {kind} probe of container {container:?}\n"),
        )
            .into_response();
    };
    let Ok(_permit) = port.in_flight.try_acquire() else {
        port.rejected.inc();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many probes in flight (at most {})\n",
                port.max_in_flight
            ),
        )
            .into_response();
    };
    match prober.run(port.pod_ip).await {
        Ok(()) => "OK\n".into_response(),
        Err(e) => {
            tracing::debug!(container, kind, error = %e, "application probe failed");
            let reason = e.to_string().replace(['\r', '\n'], " ");
            (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests;
