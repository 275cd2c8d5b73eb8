//! The servers of the Report benchmark: the empty tonic Mixer server (decodes each Report, answers at once: the
//! cost of tonic and prost alone) and a real hub with the default Telemetry (Istio's standard metrics into the
//! builtin prometheus Wasm adapter) and no other configuration, both from [`sextant_bench::servers`], run
//! inside the server runtime; and the prometheus adapter's delivery counters, read from the hub's metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sextant_bench::prom;
use sextant_bench::servers::{self, EmptyServer};
use tokio::sync::watch;

/// The adapter the default Telemetry feeds.
pub const PROMETHEUS_ADAPTER: &str = "sextant-system/prometheus";

/// Both servers, running.
pub struct Servers {
    /// The empty server's address.
    pub empty_addr: SocketAddr,
    /// The hub's gRPC address.
    pub hub_addr: SocketAddr,
    /// The hub's state (for the in-process path and its metrics).
    pub state: Arc<hub_server::HubState>,
    config_dir: PathBuf,
    empty: EmptyServer,
    hub: hub_server::RunningHub,
}

impl Servers {
    /// Starts both; must run inside the server runtime. Both stop when `stop` turns true.
    pub async fn start(stop: watch::Receiver<bool>) -> anyhow::Result<Self> {
        let empty = EmptyServer::start(stop.clone()).await?;

        // An empty configuration directory: only the default Telemetry is loaded.
        let config_dir =
            std::env::temp_dir().join(format!("sextant-report-bench-{}", std::process::id()));
        std::fs::create_dir_all(&config_dir)
            .with_context(|| format!("creating {}", config_dir.display()))?;
        let decisions = hub_server::DecisionOptions {
            default_telemetry: true,
            ..Default::default()
        };
        let hub = servers::start_hub(&config_dir, decisions, stop).await?;
        let families = hub.state.telemetry.to_json();
        let adapters = families["adapters"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            adapters > 0,
            "the hub loaded no telemetry adapter (default telemetry): {families}"
        );
        Ok(Servers {
            empty_addr: empty.addr,
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
        self.empty.wait(limit).await?;
        servers::wait_hub(self.hub, limit).await?;
        let _ = std::fs::remove_dir_all(&self.config_dir);
        Ok(())
    }
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
        let m = |name: &str| prom::sum(&text, name, &a);
        AdapterCounts {
            accepted: m("sextant_hub_adapter_records_accepted_total"),
            delivered: m("sextant_hub_adapter_records_delivered_total"),
            dropped: m("sextant_hub_adapter_records_dropped_total"),
            queued: m("sextant_hub_adapter_queue_records"),
            batches: m("sextant_hub_adapter_batches_total"),
            segments_dropped: prom::sum(&text, "sextant_hub_telemetry_segments_dropped_total", ""),
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
