//! Measured runs of the Report path: a closed loop of gRPC Reports (a fixed number in flight over a few
//! HTTP/2 connections, each sent as soon as the previous returned), and the in-process path (the hub's decode
//! and ingest called directly, no gRPC). Each run measures a window after a warm-up: bags acknowledged, the
//! prometheus adapter's records accepted, delivered and dropped, and CPU time by thread group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sextant_bench::load::{Shape, connect};
use sextant_bench::{cpu, process};
use sextant_proto::mixer;
use sextant_proto::mixer::mixer_client::MixerClient;
use tonic::transport::Channel;

use crate::servers::AdapterCounts;

/// Thread name prefix of the hub's adapter workers (`adapter <ns/name>`, cut to 15 bytes by the kernel).
const ADAPTER_THREADS: &str = "adapter ";

/// CPU seconds used during a window, by thread group.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuSeconds {
    /// The whole process (user + system; 10 ms resolution).
    pub process: Option<f64>,
    /// The server runtime's threads (gRPC, decode, Telemetry rules; the in-process loop runs there too).
    pub server: Option<f64>,
    /// The load client's runtime threads.
    pub client: Option<f64>,
    /// The adapter worker threads (the Wasm calls and the host registry).
    pub adapter: Option<f64>,
}

impl CpuSeconds {
    /// What the hub spent: server threads plus adapter workers.
    pub fn hub(&self) -> Option<f64> {
        Some(self.server? + self.adapter?)
    }
}

/// Marks the start of a window.
struct Mark {
    at: Instant,
    process: Option<f64>,
    adapter: Option<f64>,
    threads: cpu::Sample,
}

impl Mark {
    fn now() -> Self {
        Mark {
            process: process::own_cpu_seconds(),
            adapter: cpu::threads_seconds(ADAPTER_THREADS),
            threads: cpu::sample(),
            at: Instant::now(),
        }
    }

    /// Wall time and CPU seconds since this mark.
    fn elapsed(&self) -> (Duration, CpuSeconds) {
        let end = Mark::now();
        let wall = end.at.saturating_duration_since(self.at);
        let usage = cpu::usage(self.threads, end.threads);
        let secs = wall.as_secs_f64();
        let diff = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
        (
            wall,
            CpuSeconds {
                process: diff(self.process, end.process),
                server: usage.server.map(|f| f * secs),
                client: usage.client.map(|f| f * secs),
                adapter: diff(self.adapter, end.adapter),
            },
        )
    }
}

/// What one measured window saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    /// Length of the window.
    pub wall: Duration,
    /// Bags acknowledged as accepted by the server (Reports × bags, for the hub its `accepted` count).
    pub bags: u64,
    /// Reports that failed (gRPC error) or had rejected bags.
    pub errors: u64,
    /// The prometheus adapter's counts over the window (hub runs only).
    pub adapter: Option<AdapterCounts>,
    /// CPU seconds used in the window.
    pub cpu: CpuSeconds,
}

impl Window {
    /// Acknowledged bags per wall-clock second.
    pub fn bags_per_sec(&self) -> f64 {
        self.bags as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// A Mixer client on a new connection to `addr`.
async fn client(addr: SocketAddr) -> anyhow::Result<MixerClient<Channel>> {
    let channel = connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(MixerClient::new(channel).max_decoding_message_size(hub_server::MAX_MESSAGE_BYTES))
}

/// Runs the closed loop against `addr`; `hub` (when the target is the hub) is read for adapter counts at the
/// window's edges. Must run on the client runtime.
pub async fn closed_loop(
    addr: SocketAddr,
    requests: Arc<[mixer::ReportRequest]>,
    shape: Shape,
    hub: Option<Arc<hub_server::HubState>>,
) -> anyhow::Result<Window> {
    let mut clients = Vec::with_capacity(shape.connections);
    for _ in 0..shape.connections.max(1) {
        clients.push(client(addr).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let measure_from = Instant::now() + shape.warmup;
    let end = measure_from + shape.duration;
    let mut workers = Vec::with_capacity(shape.concurrency);
    for w in 0..shape.concurrency.max(1) {
        let mut client = clients[w % clients.len()].clone();
        let (next, requests) = (next.clone(), requests.clone());
        workers.push(tokio::spawn(async move {
            let (mut bags, mut errors) = (0u64, 0u64);
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let req = requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()].clone();
                let sent = req.attributes.len() as u64;
                let r = client.report(req).await;
                let done = Instant::now();
                if start >= measure_from && done <= end {
                    match r {
                        Ok(r) => {
                            let r = r.into_inner();
                            bags += r.accepted;
                            if r.rejected > 0 || r.accepted != sent {
                                errors += 1;
                            }
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            (bags, errors)
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let counts_before = hub.as_deref().map(AdapterCounts::read);
    let mark = Mark::now();
    tokio::time::sleep_until(end.into()).await;
    let (wall, cpu) = mark.elapsed();
    let counts = hub
        .as_deref()
        .map(AdapterCounts::read)
        .zip(counts_before)
        .map(|(a, b)| a.since(b));
    let (mut bags, mut errors) = (0, 0);
    for w in workers {
        let (b, e) = w.await.context("closed-loop worker")?;
        bags += b;
        errors += e;
    }
    Ok(Window {
        wall,
        bags,
        errors,
        adapter: counts,
        cpu,
    })
}

/// The in-process path: decodes each encoded Report's bags one at a time (`hub_server::each_report_bag` on a
/// `sextant_attributes::ReportWire`, as the gRPC handler does with the request's bytes) straight into
/// `HubState::ingest_each`, in a loop on a thread of the server runtime. When the adapter's
/// queue refuses a segment the loop pauses 1 ms (so it measures what the adapter sustains rather than how
/// fast records can be thrown away); every refusal is still counted as dropped.
pub async fn in_process(
    state: Arc<hub_server::HubState>,
    requests: Arc<[mixer::ReportRequest]>,
    shape: Shape,
) -> anyhow::Result<Window> {
    let measure_from = Instant::now() + shape.warmup;
    let end = measure_from + shape.duration;
    let counted = state.clone();
    let encoded: Vec<Vec<u8>> = requests.iter().map(prost::Message::encode_to_vec).collect();
    let worker = tokio::task::spawn_blocking(move || {
        let (mut bags, mut errors, mut i) = (0u64, 0u64, 0usize);
        loop {
            let start = Instant::now();
            if start >= end {
                break;
            }
            let bytes = &encoded[i % encoded.len()];
            i += 1;
            let mut rejected = 0;
            let out = match sextant_attributes::ReportWire::parse(bytes) {
                Ok(wire) => state.ingest_each("bench", |visit| {
                    rejected = hub_server::each_report_bag(&wire, visit).rejected;
                }),
                Err(_) => {
                    rejected = 1;
                    Default::default()
                }
            };
            if start >= measure_from && Instant::now() <= end {
                bags += out.bags;
                errors += u64::from(rejected > 0);
            }
            if out.segments_dropped > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (bags, errors)
    });
    tokio::time::sleep_until(measure_from.into()).await;
    let before = AdapterCounts::read(&counted);
    let mark = Mark::now();
    tokio::time::sleep_until(end.into()).await;
    let (wall, cpu) = mark.elapsed();
    let counts = AdapterCounts::read(&counted).since(before);
    let (bags, errors) = worker.await.context("in-process loop")?;
    Ok(Window {
        wall,
        bags,
        errors,
        adapter: Some(counts),
        cpu,
    })
}

/// Waits (up to `limit`) until the prometheus adapter's queue is empty; returns whether it emptied.
pub async fn drained(state: &hub_server::HubState, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if AdapterCounts::read(state).queued == 0.0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
