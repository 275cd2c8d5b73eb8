//! A simulated Envoy on an incremental ADS stream (`DeltaAggregatedResources`): the node on the first
//! request, wildcard CDS and LDS, then subscriptions to (and unsubscriptions from) the EDS names of its
//! clusters and the route configurations its listeners name as they come and go, every response ACKed with
//! its nonce.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sextant_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::client::{
    CDS, EDS, LDS, MAX_MESSAGE, RDS, TYPES, Tracker, cluster_eds, listener_routes, node, type_index,
};

/// What one stream knows.
#[derive(Default)]
struct State {
    /// Per type: whether a response was ACKed.
    acked: [bool; 4],
    /// EDS clusters held: cluster name → its EDS resource name.
    clusters: HashMap<String, String>,
    /// Route configuration names per listener held.
    listeners: BTreeMap<String, Vec<String>>,
    /// Names subscribed to, for EDS and RDS.
    subscribed: [BTreeSet<String>; 2],
    /// Hashes of the names held, for EDS and RDS (enough to tell whether every subscribed one arrived).
    held: [HashSet<u64>; 2],
    /// Hashes names for `held`.
    hasher: RandomState,
}

impl State {
    fn synced(&self) -> bool {
        self.acked.iter().all(|a| *a)
            && (0..2).all(|k| {
                self.held[k].len() == self.subscribed[k].len()
                    && self.subscribed[k]
                        .iter()
                        .all(|n| self.held[k].contains(&self.hasher.hash_one(n)))
            })
    }

    /// The subscription changes that make `k` (0 = EDS, 1 = RDS) subscribe exactly `wanted`, if any.
    fn resubscribe(&mut self, k: usize, wanted: BTreeSet<String>) -> Option<DeltaDiscoveryRequest> {
        let subscribe: Vec<String> = wanted.difference(&self.subscribed[k]).cloned().collect();
        let unsubscribe: Vec<String> = self.subscribed[k].difference(&wanted).cloned().collect();
        if subscribe.is_empty() && unsubscribe.is_empty() {
            return None;
        }
        for n in &unsubscribe {
            self.held[k].remove(&self.hasher.hash_one(n));
        }
        self.subscribed[k] = wanted;
        Some(DeltaDiscoveryRequest {
            type_url: TYPES[if k == 0 { EDS } else { RDS }].to_string(),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            ..Default::default()
        })
    }
}

/// Runs proxy `i`'s stream on `channel` until pilot closes it; records into `tracker`.
pub async fn run(i: usize, channel: Channel, tracker: Arc<Tracker>) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    let send = |r: DeltaDiscoveryRequest| {
        tx.send(r)
            .map_err(|_| anyhow::anyhow!("the request stream closed"))
    };
    send(DeltaDiscoveryRequest {
        node: Some(node(i)),
        type_url: TYPES[CDS].to_string(),
        ..Default::default()
    })?;
    send(DeltaDiscoveryRequest {
        type_url: TYPES[LDS].to_string(),
        ..Default::default()
    })?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut responses = client
        .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .context("opening DeltaAggregatedResources")?
        .into_inner();
    let mut state = State::default();
    while let Some(resp) = responses
        .message()
        .await
        .context("DeltaAggregatedResources")?
    {
        let received = Instant::now();
        let t = type_index(&resp.type_url)?;
        let bytes = resp
            .resources
            .iter()
            .filter_map(|r| r.resource.as_ref())
            .map(|r| r.value.len())
            .sum();
        if let Some(sub) = handle(&mut state, t, &resp)? {
            send(sub)?;
        }
        send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        })?;
        state.acked[t] = true;
        tracker.acked(i, t, received, bytes, state.synced());
    }
    Ok(())
}

/// Applies one response; the subscription change it implies, to send before the ACK (as Envoy does).
fn handle(
    state: &mut State,
    t: usize,
    resp: &DeltaDiscoveryResponse,
) -> anyhow::Result<Option<DeltaDiscoveryRequest>> {
    match t {
        CDS => {
            for name in &resp.removed_resources {
                state.clusters.remove(name);
            }
            for r in &resp.resources {
                let body = r.resource.as_ref().context("a Cluster without a body")?;
                match cluster_eds(body)? {
                    (name, Some(eds)) => state.clusters.insert(name, eds),
                    (name, None) => state.clusters.remove(&name),
                };
            }
            let wanted = state.clusters.values().cloned().collect();
            Ok(state.resubscribe(0, wanted))
        }
        LDS => {
            for name in &resp.removed_resources {
                state.listeners.remove(name);
            }
            for r in &resp.resources {
                let body = r.resource.as_ref().context("a Listener without a body")?;
                let (name, routes) = listener_routes(body)?;
                state.listeners.insert(name, routes);
            }
            let wanted = state.listeners.values().flatten().cloned().collect();
            Ok(state.resubscribe(1, wanted))
        }
        _ => {
            let k = if t == EDS { 0 } else { 1 };
            for name in &resp.removed_resources {
                state.held[k].remove(&state.hasher.hash_one(name));
            }
            for r in &resp.resources {
                state.held[k].insert(state.hasher.hash_one(&r.name));
            }
            Ok(None)
        }
    }
}
