//! Clients that ask for what pilot does not have, over real gRPC against the ADS server: 1000 distinct
//! unknown type URLs leave the metrics with the served types' labels (and `other`) only, are counted, and keep
//! no state; a delta client subscribing to 200 000 resources that do not exist is refused at the bound
//! (`RESOURCE_EXHAUSTED` naming it), counted, while a well-behaved client keeps being served; a stream whose
//! task panics gives its slot back and is counted.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pilot_xds::{
    AdsServer, Connections, SharedSnapshot, Snapshot, SnapshotBuilder, SnapshotSource, build, types,
};
use prometheus_client::registry::Registry;
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// Long enough for a loaded machine; the conditions waited for take milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);

struct Pilot {
    snapshots: Arc<SharedSnapshot>,
    connections: Arc<Connections>,
    registry: Registry,
    addr: SocketAddr,
}

impl Pilot {
    async fn start(initial: Snapshot) -> Pilot {
        let snapshots = Arc::new(SharedSnapshot::default());
        snapshots.publish(initial).expect("consistent");
        Self::serve(snapshots.clone(), snapshots, 100).await
    }

    async fn serve<S: SnapshotSource>(
        source: Arc<S>,
        snapshots: Arc<SharedSnapshot>,
        max_streams: usize,
    ) -> Pilot {
        let server = AdsServer::new(source, max_streams);
        let connections = server.connections();
        let mut registry = Registry::default();
        connections.metrics.register(&mut registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Pilot {
            snapshots,
            connections,
            registry,
            addr,
        }
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20)
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    /// The value of the series `series` (`name{labels}`), if exposed.
    fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    }
}

/// Waits for `cond`, polling; panics naming `what` after [`PATIENCE`].
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the next message of a stream, for at most [`PATIENCE`].
async fn next<T>(stream: &mut Streaming<T>) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("timed out waiting for pilot's response")
}

fn mesh(clusters: &[&str]) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for c in clusters {
        b.cluster(&build::eds_cluster(c, 1000))
            .endpoints(&build::assignment(
                c,
                &[(SocketAddr::from(([127, 0, 0, 1], 1)), 1)],
            ));
    }
    b.build()
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        cluster: "abuse".into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_type_urls_get_one_label_value_and_no_state() {
    let pilot = Pilot::start(mesh(&["a"])).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut responses = pilot
        .client()
        .await
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(DiscoveryRequest {
        node: node("sidecar~abuser"),
        type_url: types::CLUSTER.into(),
        ..Default::default()
    })
    .unwrap();
    let cds: DiscoveryResponse = next(&mut responses).await.unwrap().expect("CDS");
    assert_eq!(cds.type_url, types::CLUSTER);
    // 1000 distinct type URLs pilot does not serve, the ACK of one response of each would-be type, then a
    // type pilot serves: requests are handled in order, so its answer means all 1000 were.
    for i in 0..1000 {
        tx.send(DiscoveryRequest {
            type_url: format!("type.googleapis.com/abuse.v{i}.Thing"),
            resource_names: vec![format!("thing-{i}")],
            response_nonce: if i % 2 == 0 {
                String::new()
            } else {
                "1".into()
            },
            error_detail: (i % 2 == 1).then(|| sextant_proto::google::rpc::Status {
                code: 3,
                message: "rejected".into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .unwrap();
    }
    tx.send(DiscoveryRequest {
        type_url: types::ENDPOINT.into(),
        resource_names: vec!["a".into()],
        ..Default::default()
    })
    .unwrap();
    let eds = next(&mut responses)
        .await
        .expect("the stream stays open")
        .expect("EDS");
    assert_eq!(
        eds.type_url,
        types::ENDPOINT,
        "no response to unknown types"
    );
    assert_eq!(eds.resources.len(), 1);

    let metrics = pilot.metrics();
    let allowed: BTreeSet<&str> = ["sds", "cds", "eds", "lds", "rds", "other"].into();
    let mut series = 0;
    for line in metrics.lines().filter(|l| l.starts_with("pilot_xds_")) {
        series += 1;
        if let Some(rest) = line.split("type=\"").nth(1) {
            let value = rest.split('"').next().unwrap_or_default();
            assert!(allowed.contains(value), "label type={value:?} in {line}");
        }
    }
    assert!(series < 60, "{series} series:\n{metrics}");
    assert_eq!(
        pilot.metric("pilot_xds_rejected_requests_total{reason=\"unknown_type\"}"),
        Some(1000.0),
        "{metrics}"
    );
    assert_eq!(
        pilot.metric("pilot_xds_nacks_total{type=\"other\"}"),
        None,
        "{metrics}"
    );
    // What pilot holds of the stream: the two types it serves, nothing of the others.
    let status = pilot
        .connections
        .proxy("sidecar~abuser")
        .expect("connected");
    assert_eq!(
        status.types.keys().map(String::as_str).collect::<Vec<_>>(),
        [types::CLUSTER, types::ENDPOINT]
    );
    let syncz = status.to_json().to_string();
    assert!(!syncz.contains("abuse.v"), "{syncz}");
}

fn delta_request(type_url: &str, subscribe: Vec<String>) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: subscribe,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_client_subscribing_to_200000_missing_names_is_refused_at_the_bound() {
    let pilot = Pilot::start(mesh(&["a"])).await;

    // A well-behaved proxy, on a connection of its own.
    let (good_tx, rx) = mpsc::unbounded_channel();
    let mut good = pilot
        .client()
        .await
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    good_tx
        .send(DeltaDiscoveryRequest {
            node: node("sidecar~good"),
            ..delta_request(types::CLUSTER, vec![])
        })
        .unwrap();
    let first: DeltaDiscoveryResponse = next(&mut good).await.unwrap().expect("CDS");
    assert_eq!(first.resources.len(), 1);
    good_tx
        .send(DeltaDiscoveryRequest {
            response_nonce: first.nonce.clone(),
            ..delta_request(types::CLUSTER, vec![])
        })
        .unwrap();

    // The abuser: 200 000 names of endpoints that do not exist, 50 000 a request.
    let (tx, rx) = mpsc::unbounded_channel();
    let mut abuser = pilot
        .client()
        .await
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    for batch in 0..4 {
        let names = (0..50_000)
            .map(|i| format!("missing-{batch}-{i:05}.default.svc.cluster.local"))
            .collect();
        tx.send(DeltaDiscoveryRequest {
            node: (batch == 0).then(|| node("sidecar~abuser")).flatten(),
            ..delta_request(types::ENDPOINT, names)
        })
        .unwrap();
    }
    let refusal = loop {
        match next(&mut abuser).await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(
        refusal.code(),
        tonic::Code::ResourceExhausted,
        "{refusal:?}"
    );
    assert!(
        refusal.message().contains("eds") && refusal.message().contains("100000"),
        "{refusal:?}"
    );
    wait_for("the refused stream to be forgotten", || {
        pilot.connections.proxy("sidecar~abuser").is_none()
    })
    .await;
    assert_eq!(
        pilot.metric("pilot_xds_rejected_requests_total{reason=\"too_many_names\"}"),
        Some(1.0),
        "{}",
        pilot.metrics()
    );

    // The well-behaved proxy is still served: a new cluster reaches it.
    pilot
        .snapshots
        .publish(mesh(&["a", "b"]))
        .expect("consistent");
    let push = next(&mut good).await.unwrap().expect("CDS push");
    assert_eq!(
        push.resources
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(pilot.connections.statuses().len(), 1);
}

/// A source whose translation panics for the node `boom` (a translator bug).
struct Panicking(Arc<SharedSnapshot>);

impl SnapshotSource for Panicking {
    async fn snapshot(&self, node: &Node) -> Arc<Snapshot> {
        assert_ne!(node.id, "boom", "injected translation panic");
        self.0.current()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes()
    }
}

/// The defect of 41954b2: a stream released its slot by a call at its end, so a panic leaked one of the
/// `max_streams` slots for good (and left the stream in /debug/syncz). With one slot, the next proxy was
/// refused forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_panics_gives_its_slot_back() {
    let snapshots = Arc::new(SharedSnapshot::default());
    snapshots.publish(mesh(&["a"])).expect("consistent");
    let pilot = Pilot::serve(Arc::new(Panicking(snapshots.clone())), snapshots, 1).await;
    let ask = |id: &str| DiscoveryRequest {
        node: node(id),
        type_url: types::CLUSTER.into(),
        ..Default::default()
    };
    let mut boom = pilot
        .client()
        .await
        .stream_aggregated_resources(tokio_stream::iter([ask("boom")]))
        .await
        .expect("stream")
        .into_inner();
    assert!(
        next(&mut boom).await.is_err(),
        "the panicked stream ends with an error"
    );
    wait_for("the panic to be counted", || {
        pilot.metric("pilot_xds_stream_panics_total") == Some(1.0)
    })
    .await;
    assert!(pilot.connections.proxy("boom").is_none(), "no stale entry");

    let (tx, rx) = mpsc::unbounded_channel();
    let mut good = pilot
        .client()
        .await
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(ask("good")).unwrap();
    let cds = next(&mut good)
        .await
        .expect("the one slot is free again")
        .expect("CDS");
    assert_eq!(cds.resources.len(), 1);
}
