//! What the closed-loop gRPC load of the in-process benchmarks (check-bench's Checks, report-bench's
//! Reports) is made of: the shape of a run, and one HTTP/2 connection to the server under test.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// How a run is driven.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Calls in flight (closed loop).
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Unmeasured warm-up before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// A new HTTP/2 connection to `addr`, with the same transport settings as the hub's gRPC port (TCP_NODELAY),
/// so only the work per call differs between servers.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}
