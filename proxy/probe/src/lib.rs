//! The proxy's status port, Istio pilot-agent's 15020/15021 for the Sextant sidecar.
//!
//! With mTLS STRICT the kubelet's plaintext probes of an application container would be refused by the
//! sidecar's inbound listeners, so the sidecar injector rewrites each HTTP, TCP and gRPC liveness, readiness and
//! startup probe to `GET /app-health/CONTAINER/{livez,readyz,startupz}` on this port, and hands the original
//! probes to the proxy in `ISTIO_KUBE_APP_PROBERS` (Istio's JSON format, [`ENV`]). The proxy then runs each
//! original probe from inside the pod when the kubelet asks: it runs as uid 1337, whose traffic the pod's
//! iptables rules do not capture, so its connections reach the application directly.
//!
//! The flow: the variable's text → [`Probers::parse`] (pure, every key and field validated, [`ParseError`]
//! naming the key) → [`StatusPort`] (the probers, the pod IP, the proxy's own readiness) → [`router`], where
//! each request runs one [`Prober`] ([`Prober::run`]: HTTP(S) GET, TCP connect or gRPC health check, bounded by
//! the probe's `timeoutSeconds`) under a bound on probes in flight. `GET /healthz/ready` answers the proxy's own
//! readiness (`LIVE`, or 503 with the reason).

mod parse;
mod run;
mod server;
mod tls;

pub use parse::{
    Action, Grpc, HttpGet, MAX_PROBERS, ParseError, ProbeKind, Prober, Probers, Scheme, TcpSocket,
};
pub use run::ProbeError;
pub use server::{MAX_IN_FLIGHT, StatusPort, router};

/// The environment variable holding the application's original probes, as Istio's injector names it.
pub const ENV: &str = "ISTIO_KUBE_APP_PROBERS";
