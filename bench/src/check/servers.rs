//! The servers under test: the empty tonic Mixer server (the baseline) and a real hub loaded with the
//! benchmark configuration ([`crate::config`]), both from [`sextant_bench::servers`], started from inside the
//! server runtime.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sextant_bench::servers::{self, EmptyServer};
use tokio::sync::watch;

/// Starts a hub serving `config_dir`, counting GLOBAL RateLimits in `global_quota` if given; must run inside
/// the server runtime. It stops when `stop` turns true.
pub async fn start_hub(
    config_dir: &Path,
    global_quota: Option<std::sync::Arc<hub_quota_redis::RedisBackend>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<hub_server::RunningHub> {
    start_hub_limited(
        config_dir,
        global_quota,
        hub_server::default_max_in_flight(),
        stop,
    )
    .await
}

/// [`start_hub`] admitting at most `max_in_flight` calls at once (the overload scenario's).
pub async fn start_hub_limited(
    config_dir: &Path,
    global_quota: Option<std::sync::Arc<hub_quota_redis::RedisBackend>>,
    max_in_flight: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<hub_server::RunningHub> {
    // The Check benchmark measures Check alone.
    let decisions = hub_server::DecisionOptions {
        default_telemetry: false,
        global_quota,
        ..Default::default()
    };
    let hub = servers::start_hub_limited(config_dir, decisions, max_in_flight, stop).await?;
    if hub.state.snapshot().is_none() {
        let errors = hub
            .state
            .last_failure()
            .map(|f| f.errors.join("\n"))
            .unwrap_or_default();
        anyhow::bail!("the hub did not load the benchmark configuration:\n{errors}");
    }
    Ok(hub)
}

/// Both servers, running.
pub struct Servers {
    /// The empty server's address.
    pub empty_addr: SocketAddr,
    /// The hub's gRPC address.
    pub hub_addr: SocketAddr,
    /// Policies in the hub's loaded snapshot.
    pub policies: usize,
    /// Rules over all loaded policies.
    pub rules: usize,
    /// Rate limits in the hub's loaded snapshot.
    pub rate_limits: usize,
    empty: EmptyServer,
    hub: hub_server::RunningHub,
}

impl Servers {
    /// Starts both; must run inside the server runtime. Both stop when `stop` turns true.
    pub async fn start(config_dir: &Path, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let empty = EmptyServer::start(stop.clone()).await?;
        let hub = start_hub(config_dir, None, stop).await?;
        let Some(snapshot) = hub.state.snapshot() else {
            anyhow::bail!("the hub serves no configuration");
        };
        Ok(Servers {
            empty_addr: empty.addr,
            hub_addr: hub.grpc_addr,
            policies: snapshot.policies.len(),
            rules: snapshot.policies.iter().map(|p| p.rules.len()).sum(),
            rate_limits: snapshot.rate_limits.len(),
            empty,
            hub,
        })
    }

    /// The hub's serving revision (one more per reload).
    pub fn revision(&self) -> u64 {
        self.revisions()()
    }

    /// Reads the hub's serving revision from any thread.
    pub fn revisions(&self) -> impl Fn() -> u64 + Send + 'static {
        let state = self.hub.state.clone();
        move || state.snapshot().map_or(0, |s| s.revision)
    }

    /// Waits (bounded) for both to finish after the stop signal.
    pub async fn wait(self) -> anyhow::Result<()> {
        let limit = Duration::from_secs(5);
        self.empty.wait(limit).await?;
        servers::wait_hub(self.hub, limit).await
    }
}
