//! A simulated Envoy on a state-of-the-world ADS stream (`StreamAggregatedResources`): the node on the
//! first request, wildcard CDS and LDS, then EDS for the EDS clusters it was sent and RDS for the route
//! configurations its listeners name, each request carrying the names it wants (as Envoy does), every
//! response ACKed with its version and nonce.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sextant_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::client::{
    CDS, EDS, LDS, MAX_MESSAGE, RDS, TYPES, Tracker, cluster_eds, listener_routes, node, type_index,
};

/// What one stream knows.
#[derive(Default)]
struct State {
    /// Per type: the last version and nonce received.
    last: [(String, String); 4],
    /// Per type: whether a response was ACKed.
    acked: [bool; 4],
    /// The EDS names asked for (sorted), and whether the last EDS response held all of them.
    eds: Vec<String>,
    eds_complete: bool,
    /// The route configuration names asked for (sorted), and whether the last RDS response held all.
    rds: Vec<String>,
    rds_complete: bool,
}

impl State {
    fn synced(&self) -> bool {
        self.acked.iter().all(|a| *a) && self.eds_complete && self.rds_complete
    }

    /// The request for type `t` carrying its names and the last version and nonce received (an ACK when
    /// a response of that type was received, else the first request).
    fn request(&self, t: usize) -> DiscoveryRequest {
        let names = match t {
            EDS => self.eds.clone(),
            RDS => self.rds.clone(),
            _ => Vec::new(),
        };
        DiscoveryRequest {
            version_info: self.last[t].0.clone(),
            response_nonce: self.last[t].1.clone(),
            type_url: TYPES[t].to_string(),
            resource_names: names,
            ..Default::default()
        }
    }
}

/// Runs proxy `i`'s stream on `channel` until pilot closes it; records into `tracker`.
pub async fn run(i: usize, channel: Channel, tracker: Arc<Tracker>) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let send = |r: DiscoveryRequest| {
        tx.send(r)
            .map_err(|_| anyhow::anyhow!("the request stream closed"))
    };
    let mut state = State::default();
    let mut first = state.request(CDS);
    first.node = Some(node(i));
    send(first)?;
    send(state.request(LDS))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut responses = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .context("opening StreamAggregatedResources")?
        .into_inner();
    while let Some(resp) = responses
        .message()
        .await
        .context("StreamAggregatedResources")?
    {
        let received = Instant::now();
        let t = type_index(&resp.type_url)?;
        let bytes = resp.resources.iter().map(|r| r.value.len()).sum();
        state.last[t] = (resp.version_info.clone(), resp.nonce.clone());
        handle(&mut state, t, &resp, &send)?;
        state.acked[t] = true;
        tracker.acked(i, t, received, bytes, state.synced());
    }
    Ok(())
}

/// Applies one response: asks for the EDS/RDS names it implies (before ACKing, as Envoy does), then ACKs.
fn handle(
    state: &mut State,
    t: usize,
    resp: &DiscoveryResponse,
    send: &impl Fn(DiscoveryRequest) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match t {
        CDS => {
            let mut eds = Vec::with_capacity(resp.resources.len());
            for r in &resp.resources {
                if let (_, Some(name)) = cluster_eds(r)? {
                    eds.push(name);
                }
            }
            eds.sort_unstable();
            eds.dedup();
            if eds != state.eds {
                state.eds = eds;
                state.eds_complete = false;
                send(state.request(EDS))?;
            }
        }
        LDS => {
            let mut rds = Vec::new();
            for r in &resp.resources {
                rds.extend(listener_routes(r)?.1);
            }
            rds.sort_unstable();
            rds.dedup();
            if rds != state.rds {
                state.rds = rds;
                state.rds_complete = false;
                send(state.request(RDS))?;
            }
        }
        EDS => state.eds_complete = resp.resources.len() == state.eds.len(),
        _ => state.rds_complete = resp.resources.len() == state.rds.len(),
    }
    send(state.request(t))
}
