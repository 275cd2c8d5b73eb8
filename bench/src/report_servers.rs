//! The servers of the Report benchmark: an empty tonic Mixer server (decodes each Report, answers at once: the
//! cost of tonic and prost alone) and a real hub with the default Telemetry (Istio's standard metrics into the
//! builtin prometheus Wasm adapter) and no other configuration. Both run inside the server runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sextant_proto::mixer::{self, mixer_server::Mixer, mixer_server::MixerServer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The adapter the default Telemetry feeds.
pub const PROMETHEUS_ADAPTER: &str = "sextant-system/prometheus";

/// A Mixer that decodes every Report (tonic does) and answers with an empty response.
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
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Both servers, running.
pub struct Servers {
    /// The empty server's address.
    pub empty_addr: SocketAddr,
    /// The hub's gRPC address.
    pub hub_addr: SocketAddr,
    /// The hub's state (for the in-process path and its metrics).
    pub state: Arc<hub_server::HubState>,
    config_dir: PathBuf,
    empty: JoinHandle<Result<(), tonic::transport::Error>>,
    hub: hub_server::RunningHub,
}

impl Servers {
    /// Starts both; must run inside the server runtime. Both stop when `stop` turns true.
    pub async fn start(stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the empty server")?;
        let empty_addr = listener.local_addr()?;
        // Same transport settings as the hub's gRPC port (TCP_NODELAY), so only the work per call differs.
        let empty = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MixerServer::new(EmptyMixer))
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stopped(stop.clone()),
                ),
        );

        // An empty configuration directory: only the default Telemetry is loaded.
        let config_dir =
            std::env::temp_dir().join(format!("sextant-report-bench-{}", std::process::id()));
        std::fs::create_dir_all(&config_dir)
            .with_context(|| format!("creating {}", config_dir.display()))?;
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let options = hub_server::HubOptions {
            config_dir: config_dir.clone(),
            grpc_addr: any,
            admin_addr: any,
            prometheus_addr: any,
            adapter_cache: None,
            reload_interval: Duration::from_secs(3600),
            decisions: hub_server::DecisionOptions {
                default_telemetry: true,
                ..Default::default()
            },
            prometheus_url: None,
            kubernetes: None,
        };
        let hub = hub_server::start(options, stopped(stop))
            .await
            .context("starting the hub")?;
        let families = hub.state.telemetry.to_json();
        let adapters = families["adapters"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            adapters > 0,
            "the hub loaded no telemetry adapter (default telemetry): {families}"
        );
        Ok(Servers {
            empty_addr,
            hub_addr: hub.grpc_addr,
            state: hub.state.clone(),
            config_dir,
            empty,
            hub,
        })
    }

    /// Waits (bounded) for both to finish after the stop signal.
    pub async fn wait(self) -> anyhow::Result<()> {
        let limit = Duration::from_secs(5);
        match tokio::time::timeout(limit, self.empty).await {
            Ok(Ok(r)) => r.context("empty server")?,
            Ok(Err(e)) => anyhow::bail!("empty server task: {e}"),
            Err(_) => eprintln!("warning: the empty server did not stop within {limit:?}"),
        }
        match tokio::time::timeout(limit, self.hub.wait()).await {
            Ok(r) => r.context("hub")?,
            Err(_) => eprintln!("warning: the hub did not stop within {limit:?}"),
        }
        let _ = std::fs::remove_dir_all(&self.config_dir);
        Ok(())
    }
}

/// Sum of the samples of `name` in a Prometheus text exposition whose labels contain `labels` (e.g.
/// `adapter="x"`; empty: every sample).
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name && series.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// The prometheus adapter's delivery counters, from the hub's own `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdapterCounts {
    /// `sextant_hub_adapter_records_accepted_total`.
    pub accepted: f64,
    /// `sextant_hub_adapter_records_delivered_total`.
    pub delivered: f64,
    /// `sextant_hub_adapter_records_dropped_total`, all reasons.
    pub dropped: f64,
    /// `sextant_hub_adapter_queue_records`.
    pub queued: f64,
    /// `sextant_hub_adapter_batches_total`.
    pub batches: f64,
    /// `sextant_hub_telemetry_segments_dropped_total`.
    pub segments_dropped: f64,
}

impl AdapterCounts {
    /// Reads them now.
    pub fn read(state: &hub_server::HubState) -> Self {
        let text = state.metrics.encode();
        let a = format!("adapter=\"{PROMETHEUS_ADAPTER}\"");
        let m = |name: &str| metric_sum(&text, name, &a);
        AdapterCounts {
            accepted: m("sextant_hub_adapter_records_accepted_total"),
            delivered: m("sextant_hub_adapter_records_delivered_total"),
            dropped: m("sextant_hub_adapter_records_dropped_total"),
            queued: m("sextant_hub_adapter_queue_records"),
            batches: m("sextant_hub_adapter_batches_total"),
            segments_dropped: metric_sum(&text, "sextant_hub_telemetry_segments_dropped_total", ""),
        }
    }

    /// Counts since `before` (the queue gauge is taken as is).
    pub fn since(self, before: Self) -> Self {
        AdapterCounts {
            accepted: self.accepted - before.accepted,
            delivered: self.delivered - before.delivered,
            dropped: self.dropped - before.dropped,
            queued: self.queued,
            batches: self.batches - before.batches,
            segments_dropped: self.segments_dropped - before.segments_dropped,
        }
    }
}
