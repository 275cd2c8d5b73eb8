//! The servers the in-process gRPC benchmarks (check-bench, report-bench) compare, both started from inside
//! the benchmark's server runtime (so their accept loops and connection tasks run on its single worker) on
//! loopback ports the kernel picks, and both stopped when a watch channel turns true: an empty tonic Mixer
//! server (the baseline: the cost of tonic and prost alone) and a real hub.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use sextant_proto::mixer::{self, mixer_server::Mixer, mixer_server::MixerServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// A Mixer that answers every Check with an empty response at once, and every Report (which tonic decodes)
/// with an empty response saying it accepted every bag.
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
        request: Request<mixer::ReportRequest>,
    ) -> Result<Response<mixer::ReportResponse>, Status> {
        let accepted = request.into_inner().attributes.len() as u64;
        Ok(Response::new(mixer::ReportResponse {
            accepted,
            ..Default::default()
        }))
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The empty tonic server, running.
pub struct EmptyServer {
    /// Its address.
    pub addr: SocketAddr,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EmptyServer {
    /// Starts it; must run inside the server runtime. It stops when `stop` turns true.
    pub async fn start(stop: watch::Receiver<bool>) -> anyhow::Result<EmptyServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the empty server")?;
        let addr = listener.local_addr()?;
        // Same transport settings as the hub's gRPC port (TCP_NODELAY), so only the work per call differs.
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MixerServer::new(EmptyMixer))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stopped(stop),
                ),
        );
        Ok(EmptyServer { addr, task })
    }

    /// Waits up to `limit` for it to finish after the stop signal (only a warning if it does not).
    pub async fn wait(self, limit: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(r)) => r.context("empty server")?,
            Ok(Err(e)) => anyhow::bail!("empty server task: {e}"),
            Err(_) => eprintln!("warning: the empty server did not stop within {limit:?}"),
        }
        Ok(())
    }
}

/// Starts a hub serving `config_dir` with `decisions` on loopback ports the kernel picks, admitting as many
/// calls at once as the `sextant` binary does by default; must run inside the server runtime. It stops when
/// `stop` turns true.
pub async fn start_hub(
    config_dir: &Path,
    decisions: hub_server::DecisionOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<hub_server::RunningHub> {
    start_hub_limited(
        config_dir,
        decisions,
        hub_server::default_max_in_flight(),
        stop,
    )
    .await
}

/// [`start_hub`] with at most `max_in_flight` calls admitted at once (`sextant hub --max-in-flight`): the
/// rest are answered RESOURCE_EXHAUSTED at once.
pub async fn start_hub_limited(
    config_dir: &Path,
    decisions: hub_server::DecisionOptions,
    max_in_flight: usize,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<hub_server::RunningHub> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let options = hub_server::HubOptions {
        config_dir: config_dir.to_path_buf(),
        grpc_addr: any,
        admin_addr: any,
        prometheus_addr: any,
        adapter_cache: None,
        // Changes are found by file-system events; only check-bench's reload scenario makes any.
        reload_interval: Duration::from_secs(3600),
        decisions,
        prometheus_url: None,
        kubernetes: None,
        max_in_flight,
        // The benchmarks wait 5 s for the hub to stop.
        drain_timeout: Duration::from_secs(5),
        tls: None,
        otlp: None,
    };
    hub_server::start(options, stopped(stop))
        .await
        .context("starting the hub")
}

/// Waits up to `limit` for `hub` to finish after the stop signal (only a warning if it does not).
pub async fn wait_hub(hub: hub_server::RunningHub, limit: Duration) -> anyhow::Result<()> {
    match tokio::time::timeout(limit, hub.wait()).await {
        Ok(r) => r.context("hub")?,
        Err(_) => eprintln!("warning: the hub did not stop within {limit:?}"),
    }
    Ok(())
}
