//! The servers under test: an empty tonic Mixer server (the baseline) and a real hub. Both are started from
//! inside the server runtime, so their accept loops and connection tasks run on its single worker.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sextant_proto::mixer::{self, mixer_server::Mixer, mixer_server::MixerServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A Mixer that answers every Check with an empty response at once: the cost of tonic alone.
struct EmptyMixer;

#[tonic::async_trait]
impl Mixer for EmptyMixer {
    async fn check(
        &self,
        _request: Request<mixer::CheckRequest>,
    ) -> Result<Response<mixer::CheckResponse>, Status> {
        Ok(Response::new(mixer::CheckResponse::default()))
    }

    async fn report(
        &self,
        _request: Request<mixer::ReportRequest>,
    ) -> Result<Response<mixer::ReportResponse>, Status> {
        Ok(Response::new(mixer::ReportResponse::default()))
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Starts a hub serving `config_dir` on loopback ports the kernel picks, counting GLOBAL RateLimits in
/// `global_quota` if given; must run inside the server runtime. It stops when `stop` turns true.
pub async fn start_hub(
    config_dir: &Path,
    global_quota: Option<std::sync::Arc<hub_quota_redis::RedisBackend>>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<hub_server::RunningHub> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let options = hub_server::HubOptions {
        config_dir: config_dir.to_path_buf(),
        grpc_addr: any,
        admin_addr: any,
        prometheus_addr: any,
        adapter_cache: None,
        // Changes are found by file-system events; only the reload scenario makes any.
        reload_interval: Duration::from_secs(3600),
        // The Check benchmark measures Check alone.
        decisions: hub_server::DecisionOptions {
            default_telemetry: false,
            global_quota,
            ..Default::default()
        },
        prometheus_url: None,
        kubernetes: None,
    };
    let hub = hub_server::start(options, stopped(stop))
        .await
        .context("starting the hub")?;
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
    empty: JoinHandle<Result<(), tonic::transport::Error>>,
    hub: hub_server::RunningHub,
}

impl Servers {
    /// Starts both; must run inside the server runtime. Both stop when `stop` turns true.
    pub async fn start(config_dir: &Path, stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the empty server")?;
        let empty_addr = listener.local_addr()?;
        let empty_stop = stopped(stop.clone());
        // Same transport settings as the hub's gRPC port (TCP_NODELAY), so only the work per call differs.
        let empty = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MixerServer::new(EmptyMixer))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    empty_stop,
                ),
        );

        let hub = start_hub(config_dir, None, stop).await?;
        let Some(snapshot) = hub.state.snapshot() else {
            anyhow::bail!("the hub serves no configuration");
        };
        Ok(Servers {
            empty_addr,
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
        for (name, task) in [("empty server", self.empty)] {
            match tokio::time::timeout(limit, task).await {
                Ok(Ok(r)) => r.with_context(|| name.to_string())?,
                Ok(Err(e)) => anyhow::bail!("{name} task: {e}"),
                Err(_) => eprintln!("warning: the {name} did not stop within {limit:?}"),
            }
        }
        match tokio::time::timeout(limit, self.hub.wait()).await {
            Ok(r) => r.context("hub")?,
            Err(_) => eprintln!("warning: the hub did not stop within {limit:?}"),
        }
        Ok(())
    }
}
