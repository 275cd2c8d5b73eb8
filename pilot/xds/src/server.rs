//! The gRPC service: one task per stream, woken by the proxy's requests and by snapshot changes. A slow or
//! dead proxy only ever blocks its own task.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::FutureExt as _;
use sextant_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::mpsc;
use tonic::Status;
use tracing::Instrument;

use crate::budget::{PushBudget, Share};
use crate::delta::Delta;
use crate::framing::{Frame, Requests, frame};
use crate::limits::MAX_BACKLOG_BYTES;
use crate::protocol::{Answer, Outgoing, Protocol, Verdict};
use crate::snapshot::Snapshot;
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

    /// Serves a `StreamAggregatedResources` stream; the receiver yields its responses.
    pub(crate) fn sotw(&self, inbound: Requests<DiscoveryRequest>) -> mpsc::Receiver<Frame> {
        self.spawn::<Sotw>(inbound)
    }

    /// Serves a `DeltaAggregatedResources` stream; the receiver yields its responses.
    pub(crate) fn delta(&self, inbound: Requests<DeltaDiscoveryRequest>) -> mpsc::Receiver<Frame> {
        self.spawn::<Delta>(inbound)
    }

    fn spawn<P: Protocol>(&self, inbound: Requests<P::Request>) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(SEND_BUFFER);
        let connections = self.connections.clone();
        let failed = tx.clone();
        let stream = serve::<P, S>(
            self.source.clone(),
            connections.clone(),
            self.budget.clone(),
            inbound,
            tx,
        );
        // A panic ends this stream only (its slot given back by `Slot`): logged and counted, never silent.
        tokio::spawn(async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(stream).catch_unwind().await {
                connections.metrics.stream_panicked();
                let why = sextant_supervise::panic_message(panic);
                tracing::error!(protocol = P::NAME, panic = %why, "ADS stream task panicked; the stream is closed");
                let status = Status::internal("pilot failed serving this stream; reconnect");
                let _ = failed.send(Err(Box::new(status))).await;
            }
        });
        rx
    }
}

/// Runs one stream until the proxy goes away.
async fn serve<P: Protocol, S: SnapshotSource>(
    source: Arc<S>,
    connections: Arc<Connections>,
    budget: PushBudget,
    mut inbound: Requests<P::Request>,
    tx: mpsc::Sender<Frame>,
) {
    let Ok(Some(first)) = inbound.message().await else {
        return;
    };
    // gRPC clients send the node only on the first request of a stream; Envoy on every one.
    let Some(node) = P::node(&first).cloned() else {
        let _ = tx
            .send(Err(Box::new(Status::invalid_argument(
                "the first request of an ADS stream must carry the node",
            ))))
            .await;
        return;
    };
    let Some(slot) = Slot::open(
        &connections,
        ProxyStatus {
            node_id: node.id.clone(),
            cluster: node.cluster.clone(),
            protocol: P::NAME,
            connected_at: SystemTime::now(),
            types: Default::default(),
        },
    ) else {
        let _ = tx
            .send(Err(Box::new(Status::resource_exhausted(
                "pilot serves its maximum number of ADS streams; retry later or raise --max-streams",
            ))))
            .await;
        return;
    };
    let id = slot.id;
    tracing::info!(node = %node.id, protocol = P::NAME, "proxy connected");
    let mut changes = source.changes();
    changes.borrow_and_update();
    let snapshot = source.snapshot(&node).await;
    let mut state = P::default();
    let first = P::parse(first, &snapshot);
    let mut inbound = Inbound::<P> {
        backlog_bytes: P::cost(&first),
        backlog: VecDeque::from([Event::Request(first)]),
        stream: inbound,
        ended: false,
        share: Share::default(),
        snapshot,
        pushed: HashMap::new(),
    };
    let pushes = Push {
        node: &node.id,
        protocol: P::NAME,
        budget: &budget,
        connections: &connections,
        id,
        tx: &tx,
    };
    let reason = loop {
        let deadline = inbound.share.deadline();
        let wake = tokio::select! {
            e = inbound.next() => Wake::Inbound(e),
            changed = changes.changed() => Wake::Changed(changed.is_ok()),
            () = sleep_until(deadline), if deadline.is_some() => Wake::Expired,
        };
        let start = Instant::now();
        let request = match wake {
            Wake::Inbound(Event::Request(r)) => r,
            Wake::Inbound(Event::Closed) => break "closed by the proxy".to_string(),
            Wake::Inbound(Event::Failed(e)) => break format!("stream error: {e}"),
            Wake::Changed(false) => break "pilot is shutting down".to_string(),
            Wake::Changed(true) => {
                inbound.snapshot = source.snapshot(&node).await;
                let batch = state.on_change(&inbound.snapshot);
                if !pushes.push(&mut inbound, batch, start).await {
                    break "the proxy stopped reading".to_string();
                }
                continue;
            }
            Wake::Expired => {
                // The proxy did not answer in time: its share goes back to the others.
                inbound.share.clear();
                continue;
            }
        };
        match state.on_request(request, &inbound.snapshot) {
            Err(refusal) => {
                connections.refused_request(&node.id, &refusal);
                if let Some(status) = refusal.status() {
                    let _ = tx.send(Err(Box::new(status))).await;
                    break format!("bad request: {refusal}");
                }
            }
            Ok(Answer { response, verdict }) => {
                if let Some(v) = verdict {
                    inbound.answered(&v);
                    record(&connections, id, &node.id, v);
                }
                let batch: Vec<_> = response.into_iter().collect();
                if !pushes.push(&mut inbound, batch, start).await {
                    break "the proxy stopped reading".to_string();
                }
            }
        }
    };
    for (_, span) in inbound.pushed.drain() {
        span.record("sextant.answer", "unanswered");
    }
    tracing::info!(node = %node.id, protocol = P::NAME, %reason, "proxy disconnected");
}

/// An open stream's place among the `max_streams`, given back when the stream's task ends, however it ends
/// (a panic included): no leaked slot, no stale `/debug/syncz` entry.
struct Slot<'a> {
    connections: &'a Connections,
    id: u64,
}

impl<'a> Slot<'a> {
    fn open(connections: &'a Connections, status: ProxyStatus) -> Option<Slot<'a>> {
        let id = connections.open(status)?;
        Some(Slot { connections, id })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.connections.close(self.id);
    }
}

/// What woke a stream's task.
enum Wake<R> {
    Inbound(Event<R>),
    /// The snapshots changed (false: the source is gone).
    Changed(bool),
    /// The proxy did not answer the last push in time.
    Expired,
}

/// What the proxy sent.
enum Event<R> {
    Request(R),
    Closed,
    Failed(String),
}

/// The proxy's requests, with those read while the stream was waiting for something else, and the share of
/// the push budget its unanswered responses hold (given back as soon as an answer is read).
struct Inbound<P: Protocol> {
    stream: Requests<P::Request>,
    backlog: VecDeque<Event<P::Parsed>>,
    /// What the backlog's requests hold ([`Protocol::cost`]), bounded by [`MAX_BACKLOG_BYTES`].
    backlog_bytes: usize,
    ended: bool,
    share: Share,
    /// The stream's current snapshot, which requests are parsed and answered against.
    snapshot: Arc<Snapshot>,
    /// The span of each type's last push, ended by the proxy's ACK or NACK (only while spans are exported;
    /// at most [`MAX_OPEN_PUSH_SPANS`] types).
    pushed: HashMap<String, tracing::Span>,
}

/// Types whose push spans one stream keeps open until answered; a push beyond ends its span unanswered.
const MAX_OPEN_PUSH_SPANS: usize = 16;

impl<P: Protocol> Inbound<P> {
    async fn read(&mut self) -> Event<P::Parsed> {
        match self.stream.message().await {
            Ok(Some(r)) => {
                let r = P::parse(r, &self.snapshot);
                if let Some(type_url) = P::answers(&r) {
                    self.share.answered(type_url);
                }
                Event::Request(r)
            }
            Ok(None) => {
                self.ended = true;
                Event::Closed
            }
            Err(e) => {
                self.ended = true;
                Event::Failed(e.message().to_string())
            }
        }
    }

    /// Keeps `span` open until the proxy answers the push of `type_url`; an earlier push of the type not
    /// answered by then ends superseded.
    fn push_sent(&mut self, type_url: String, span: tracing::Span) {
        if span.is_disabled() {
            return;
        }
        if self.pushed.len() >= MAX_OPEN_PUSH_SPANS && !self.pushed.contains_key(&type_url) {
            span.record("sextant.answer", "untracked");
            return;
        }
        if let Some(earlier) = self.pushed.insert(type_url, span) {
            earlier.record("sextant.answer", "superseded");
        }
    }

    /// Ends the span of the push `verdict` answers, with the answer.
    fn answered(&mut self, verdict: &Verdict) {
        let (type_url, answer) = match verdict {
            Verdict::Ack { type_url, .. } => (type_url, None),
            Verdict::Nack {
                type_url, message, ..
            } => (type_url, Some(message)),
        };
        let Some(span) = self.pushed.remove(type_url) else {
            return;
        };
        match answer {
            None => span.record("sextant.answer", "ACK"),
            Some(message) => {
                span.record("sextant.answer", "NACK");
                span.record("sextant.nack", message.as_str());
                span.record("otel.status_code", "ERROR")
            }
        };
    }

    /// The next event, read ahead ones first.
    async fn next(&mut self) -> Event<P::Parsed> {
        match self.backlog.pop_front() {
            Some(e) => {
                if let Event::Request(r) = &e {
                    self.backlog_bytes = self.backlog_bytes.saturating_sub(P::cost(r));
                }
                e
            }
            None if self.ended => std::future::pending().await,
            None => self.read().await,
        }
    }

    /// Runs `fut` to its end while reading requests ahead (until they hold [`MAX_BACKLOG_BYTES`]): a stream
    /// that waits keeps consuming what its proxy sends, so it never holds HTTP/2 flow-control window that
    /// the answers of other streams on the same connection need (they would wait for their shares forever).
    /// A proxy that sends more than that meanwhile waits for the stream, as HTTP/2 flow control makes it.
    async fn meanwhile<T>(&mut self, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            if self.ended || self.backlog_bytes >= MAX_BACKLOG_BYTES {
                return fut.await;
            }
            tokio::select! {
                biased;
                out = &mut fut => return out,
                e = self.read() => {
                    if let Event::Request(r) = &e {
                        self.backlog_bytes += P::cost(r);
                    }
                    self.backlog.push_back(e);
                }
            }
        }
    }
}

/// Where a stream's responses go.
struct Push<'a> {
    node: &'a str,
    protocol: &'static str,
    budget: &'a PushBudget,
    connections: &'a Connections,
    id: u64,
    tx: &'a mpsc::Sender<Frame>,
}

impl Push<'_> {
    /// Waits for the push budget (reading requests, and so answers, meanwhile), then queues the responses of
    /// `batch` in order; false when the proxy is gone. `start`: when the change or request that caused the
    /// push arrived.
    async fn push<P: Protocol>(
        &self,
        inbound: &mut Inbound<P>,
        batch: Vec<Outgoing<P::Response>>,
        start: Instant,
    ) -> bool {
        // Each response is queued as soon as its bytes are granted, so all a stream holds while it waits is
        // on its way to the proxy, whose answers give it back.
        for out in batch {
            // From the push's start to the proxy's answer: how long the proxy took to take it.
            let span = sextant_otel::root_span!(
                None,
                "xds.push",
                otel.kind = "server",
                sextant.proxy = self.node,
                sextant.protocol = self.protocol,
                sextant.type = crate::types::short_name(&out.type_url),
                sextant.version = %out.version,
                sextant.bytes = tracing::field::Empty,
                sextant.answer = tracing::field::Empty,
                sextant.nack = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let type_url = (!span.is_disabled()).then(|| out.type_url.clone());
            let permit = inbound
                .meanwhile(self.budget.take(out.size))
                .instrument(span.clone())
                .await;
            inbound.share.add(&out.type_url, permit);
            if !send(self.connections, self.id, self.tx, out, start)
                .instrument(span.clone())
                .await
            {
                return false;
            }
            if let Some(type_url) = type_url {
                inbound.push_sent(type_url, span);
            }
        }
        true
    }
}

/// Waits until `deadline` (forever without one).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one response and records it; false when the proxy is gone.
async fn send<R: prost::Message>(
    connections: &Connections,
    id: u64,
    tx: &mpsc::Sender<Frame>,
    out: Outgoing<R>,
    start: Instant,
) -> bool {
    let frame = frame(&out.message());
    let bytes = frame.len();
    tracing::Span::current().record("sextant.bytes", bytes);
    if tx.send(Ok(frame)).await.is_err() {
        return false;
    }
    let Outgoing {
        type_url,
        version,
        nonce,
        holds,
        ..
    } = out;
    connections
        .metrics
        .push(&type_url, bytes, start.elapsed().as_secs_f64());
    connections.update(id, |s| {
        let t = s.types.entry(type_url).or_default();
        t.sent_version = version;
        t.sent_nonce = nonce;
        t.pushes += 1;
        t.bytes += u64::try_from(bytes).unwrap_or(u64::MAX);
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

#[cfg(test)]
mod tests {
    use sextant_proto::envoy::service::discovery::v3::DiscoveryRequest;
    use tonic::body::Body;

    use super::*;
    use crate::types;

    /// A stream's inbound side reading `body`, nothing read yet.
    fn inbound(body: Body) -> Inbound<Sotw> {
        Inbound {
            stream: Requests::new(body),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            ended: false,
            share: Share::default(),
            snapshot: Arc::new(Snapshot::default()),
            pushed: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn a_waiting_stream_reads_ahead_only_up_to_the_backlog_bound() {
        // 20 EDS requests of 80 000 names of their own each (about 4.6 MB each as kept), all sent at once.
        let mut bytes = Vec::new();
        for r in 0..20 {
            let request = DiscoveryRequest {
                type_url: types::ENDPOINT.into(),
                resource_names: (0..80_000).map(|i| format!("r{r:02}-{i:05}")).collect(),
                ..Default::default()
            };
            bytes.extend_from_slice(&frame(&request));
        }
        let body = Body::new(http_body_util::Full::new(tonic::codegen::Bytes::from(
            bytes,
        )));
        let mut inbound = inbound(body);
        // The stream waits for something that does not come (the push budget, say): it reads ahead until
        // the backlog is full, then waits.
        tokio::select! {
            biased;
            () = inbound.meanwhile(std::future::pending::<()>()) => unreachable!("pending"),
            () = std::future::ready(()) => {}
        }
        let held: usize = inbound
            .backlog
            .iter()
            .map(|e| match e {
                Event::Request(r) => Sotw::cost(r),
                _ => 0,
            })
            .sum();
        assert_eq!(inbound.backlog.len(), 2, "read ahead: {held} bytes");
        assert_eq!(held, inbound.backlog_bytes);
        assert!((MAX_BACKLOG_BYTES..MAX_BACKLOG_BYTES + 5_000_000).contains(&held));
        // Handling one makes room for another.
        assert!(matches!(inbound.next().await, Event::Request(_)));
        tokio::select! {
            biased;
            () = inbound.meanwhile(std::future::pending::<()>()) => unreachable!("pending"),
            () = std::future::ready(()) => {}
        }
        assert_eq!(inbound.backlog.len(), 2);
    }

    /// What was recorded on spans, in order: (field, value).
    #[derive(Clone, Default)]
    struct Recorded(Arc<std::sync::Mutex<Vec<(String, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
        fn on_record(
            &self,
            _: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            struct Visit<'a>(&'a mut Vec<(String, String)>);
            impl tracing::field::Visit for Visit<'_> {
                fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                    self.0.push((field.name().to_string(), value.to_string()));
                }
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    self.0
                        .push((field.name().to_string(), format!("{value:?}")));
                }
            }
            let mut seen = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            values.record(&mut Visit(&mut seen));
        }
    }

    #[test]
    fn a_push_span_ends_with_the_proxys_answer() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let recorded = Recorded::default();
        let subscriber = tracing_subscriber::registry().with(recorded.clone());
        tracing::subscriber::with_default(subscriber, || {
            let mut inbound = inbound(Body::new(http_body_util::Empty::new()));
            let push = || {
                tracing::info_span!(
                    target: sextant_otel::TARGET,
                    "xds.push",
                    sextant.answer = tracing::field::Empty,
                    sextant.nack = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                )
            };
            inbound.push_sent(types::CLUSTER.into(), push());
            inbound.push_sent(types::CLUSTER.into(), push());
            inbound.push_sent(types::LISTENER.into(), push());
            inbound.answered(&Verdict::Ack {
                type_url: types::CLUSTER.into(),
                version: "2".into(),
            });
            inbound.answered(&Verdict::Nack {
                type_url: types::LISTENER.into(),
                version: "2".into(),
                message: "unknown filter".into(),
            });
            assert!(inbound.pushed.is_empty(), "every answered span ended");
        });
        let seen = recorded
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pairs: Vec<(&str, &str)> = seen.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("sextant.answer", "superseded"),
                ("sextant.answer", "ACK"),
                ("sextant.answer", "NACK"),
                ("sextant.nack", "unknown filter"),
                ("otel.status_code", "ERROR"),
            ]
        );
    }
}
