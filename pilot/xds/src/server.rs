//! The gRPC service: one task per stream, woken by the proxy's requests and by snapshot changes. A slow or
//! dead proxy only ever blocks its own task.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::budget::{PushBudget, Share};
use crate::delta::Delta;
use crate::protocol::{Answer, Outgoing, Protocol, Verdict};
use crate::sotw::Sotw;
use crate::source::SnapshotSource;
use crate::status::{Connections, Nack, ProxyStatus};

/// Responses queued per stream before the stream's task waits for the proxy to read.
const SEND_BUFFER: usize = 8;

/// The ADS server over a snapshot source.
pub struct AdsServer<S> {
    source: Arc<S>,
    connections: Arc<Connections>,
    budget: PushBudget,
}

impl<S: SnapshotSource> AdsServer<S> {
    /// Serves `source`, with at most `max_streams` open streams.
    pub fn new(source: Arc<S>, max_streams: usize) -> Self {
        AdsServer {
            source,
            connections: Arc::new(Connections::new(max_streams)),
            budget: PushBudget::default(),
        }
    }

    /// Bounds the bytes of responses on their way to proxies at once (default
    /// [`crate::DEFAULT_BUDGET_BYTES`]); see [`PushBudget`].
    pub fn with_push_budget(mut self, bytes: usize) -> Self {
        self.budget = PushBudget::new(bytes);
        self
    }

    /// The open streams and the metrics (for `/debug/syncz` and `/metrics`).
    pub fn connections(&self) -> Arc<Connections> {
        self.connections.clone()
    }

    /// The tonic service.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(4 << 20)
    }

    fn spawn<P>(
        &self,
        inbound: Streaming<P::Request>,
    ) -> ReceiverStream<Result<P::Response, Status>>
    where
        P: Protocol,
        P::Request: prost::Message + Default,
        P::Response: prost::Message,
    {
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        tokio::spawn(serve::<P, S>(
            self.source.clone(),
            self.connections.clone(),
            self.budget.clone(),
            inbound,
            tx,
        ));
        ReceiverStream::new(rx)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<S: SnapshotSource> AggregatedDiscoveryService for AdsServer<S> {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(Response::new(Box::pin(
            self.spawn::<Sotw>(request.into_inner()),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(Box::pin(
            self.spawn::<Delta>(request.into_inner()),
        )))
    }
}

/// Runs one stream until the proxy goes away.
async fn serve<P, S>(
    source: Arc<S>,
    connections: Arc<Connections>,
    budget: PushBudget,
    mut inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) where
    P: Protocol,
    S: SnapshotSource,
    P::Request: prost::Message + Default,
    P::Response: prost::Message,
{
    let Ok(Some(first)) = inbound.message().await else {
        return;
    };
    // gRPC clients send the node only on the first request of a stream; Envoy on every one.
    let Some(node) = P::node(&first).cloned() else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first request of an ADS stream must carry the node",
            )))
            .await;
        return;
    };
    let Some(id) = connections.open(ProxyStatus {
        node_id: node.id.clone(),
        cluster: node.cluster.clone(),
        protocol: P::NAME,
        connected_at: SystemTime::now(),
        types: Default::default(),
    }) else {
        let _ = tx
            .send(Err(Status::resource_exhausted(
                "pilot serves its maximum number of ADS streams; retry later or raise --max-streams",
            )))
            .await;
        return;
    };
    tracing::info!(node = %node.id, protocol = P::NAME, "proxy connected");
    let mut changes = source.changes();
    changes.borrow_and_update();
    let mut snapshot = source.snapshot(&node);
    let mut state = P::default();
    let mut pending = Some(first);
    let mut share: Option<Share> = None;
    let reason = loop {
        let deadline = share.as_ref().map(|s| s.deadline);
        let request = match pending.take() {
            Some(r) => r,
            None => tokio::select! {
                m = inbound.message() => match m {
                    Ok(Some(r)) => r,
                    Ok(None) => break "closed by the proxy".to_string(),
                    Err(e) => break format!("stream error: {}", e.message()),
                },
                changed = changes.changed() => {
                    if changed.is_err() {
                        break "pilot is shutting down".to_string();
                    }
                    let start = Instant::now();
                    snapshot = source.snapshot(&node);
                    let batch = state.on_change(&snapshot);
                    if !push(&budget, &mut share, &connections, id, &tx, batch, start).await {
                        break "the proxy stopped reading".to_string();
                    }
                    continue;
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    // The proxy did not answer in time: its share goes back to the others.
                    share = None;
                    continue;
                }
            },
        };
        let start = Instant::now();
        match state.on_request(&request, &snapshot) {
            Err(status) => {
                let _ = tx.send(Err(status.clone())).await;
                break format!("bad request: {}", status.message());
            }
            Ok(Answer { response, verdict }) => {
                if let Some(v) = verdict {
                    if share.as_mut().is_some_and(|s| s.answered(v.type_url())) {
                        share = None;
                    }
                    record(&connections, id, &node.id, v);
                }
                let batch: Vec<_> = response.into_iter().collect();
                if !push(&budget, &mut share, &connections, id, &tx, batch, start).await {
                    break "the proxy stopped reading".to_string();
                }
            }
        }
    };
    tracing::info!(node = %node.id, protocol = P::NAME, %reason, "proxy disconnected");
    connections.close(id);
}

/// Waits for the push budget, then queues the responses of `batch` in order; false when the proxy is gone.
/// The stream's previous share is given back first, so a stream never waits while holding one.
async fn push<R: prost::Message>(
    budget: &PushBudget,
    share: &mut Option<Share>,
    connections: &Connections,
    id: u64,
    tx: &mpsc::Sender<Result<R, Status>>,
    batch: Vec<Outgoing<R>>,
    start: Instant,
) -> bool {
    if batch.is_empty() {
        return true;
    }
    *share = None;
    let bytes = batch.iter().map(|o| o.message.encoded_len()).sum();
    let types = batch.iter().map(|o| o.type_url.clone()).collect();
    *share = Some(budget.take(bytes, types).await);
    for out in batch {
        if !send(connections, id, tx, out, start).await {
            return false;
        }
    }
    true
}

/// Waits until `deadline` (forever without one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one response and records it; false when the proxy is gone.
async fn send<R>(
    connections: &Connections,
    id: u64,
    tx: &mpsc::Sender<Result<R, Status>>,
    out: Outgoing<R>,
    start: Instant,
) -> bool {
    let Outgoing {
        message,
        type_url,
        version,
        nonce,
        holds,
    } = out;
    if tx.send(Ok(message)).await.is_err() {
        return false;
    }
    connections
        .metrics
        .push(&type_url, start.elapsed().as_secs_f64());
    connections.update(id, |s| {
        let t = s.types.entry(type_url).or_default();
        t.sent_version = version;
        t.sent_nonce = nonce;
        t.pushes += 1;
        t.resources = holds;
    });
    true
}

fn record(connections: &Connections, id: u64, node: &str, verdict: Verdict) {
    match verdict {
        Verdict::Ack { type_url, version } => connections.update(id, |s| {
            s.types.entry(type_url).or_default().acked_version = Some(version);
        }),
        Verdict::Nack {
            type_url,
            version,
            message,
        } => {
            tracing::warn!(%node, r#type = %crate::types::short_name(&type_url), %version, error = %message, "proxy rejected a push (NACK); it keeps its previous configuration");
            connections.metrics.nack(&type_url);
            connections.update(id, |s| {
                s.types.entry(type_url).or_default().last_nack = Some(Nack {
                    version,
                    message,
                    at: SystemTime::now(),
                });
            });
        }
    }
}
