//! What the simulated proxies share: their identity (an Istio sidecar node), the HTTP/2 connections their
//! ADS streams are spread over, the little decoding an Envoy needs to know what to ask for next (EDS cluster
//! names from CDS, route configuration names from LDS), and the [`Tracker`] where every stream records when
//! it was first fully synced and when it acknowledged the change.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pilot_xds::types;
use prost::Message as _;
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::config::listener::v3::{Listener, filter};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use sextant_proto::google::protobuf::{Any, Struct, Value, value::Kind};
use tonic::transport::{Channel, Endpoint};

use crate::mesh::NAMESPACE;

/// The xDS types a sidecar without mesh mTLS subscribes to, in push order (CDS, EDS, LDS, RDS); indexes into
/// per-type arrays.
pub const TYPES: [&str; 4] = [
    types::CLUSTER,
    types::ENDPOINT,
    types::LISTENER,
    types::ROUTE,
];
/// Index of CDS in [`TYPES`].
pub const CDS: usize = 0;
/// Index of EDS in [`TYPES`].
pub const EDS: usize = 1;
/// Index of LDS in [`TYPES`].
pub const LDS: usize = 2;
/// Index of RDS in [`TYPES`].
pub const RDS: usize = 3;

/// The index of `type_url` in [`TYPES`].
pub fn type_index(type_url: &str) -> anyhow::Result<usize> {
    TYPES
        .iter()
        .position(|t| *t == type_url)
        .with_context(|| format!("pilot sent an unexpected type {type_url:?}"))
}

/// Proxy `i`'s node: an Istio sidecar id, namespace `bench`, no interception (listeners bind their ports).
pub fn node(i: usize) -> Node {
    let string = |s: &str| Value {
        kind: Some(Kind::StringValue(s.to_string())),
    };
    let fields = [
        ("NAMESPACE".to_string(), string(NAMESPACE)),
        ("INTERCEPTION_MODE".to_string(), string("NONE")),
    ];
    Node {
        id: format!(
            "sidecar~10.0.{}.{}~pod-{i}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            (i / 256) % 256,
            i % 256
        ),
        cluster: "bench-client".to_string(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

/// Opens `n` HTTP/2 connections to `addr` with a flow-control window of `window` bytes per stream (four
/// times that per connection). Envoy's own are large (a state-of-the-world response is megabytes); a small
/// one bounds what pilot can have in flight to a slow proxy.
pub async fn connect(
    addr: std::net::SocketAddr,
    n: usize,
    window: u32,
) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .context("pilot's xDS address")?
        .initial_stream_window_size(Some(window))
        .initial_connection_window_size(Some(window.saturating_mul(4)))
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(
            endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to pilot at {addr}"))?,
        );
    }
    Ok(channels)
}

/// The largest response a stream accepts.
pub const MAX_MESSAGE: usize = 512 << 20;

/// The head of a `Cluster`: only the fields a proxy needs to know whether, and under which name, to ask for
/// its endpoints over EDS (prost skips everything else without allocating it).
#[derive(Clone, PartialEq, prost::Message)]
struct ClusterHead {
    /// `name`.
    #[prost(string, tag = "1")]
    name: String,
    /// `type` (the discovery type; 3 = EDS).
    #[prost(int32, optional, tag = "2")]
    discovery: Option<i32>,
    /// `eds_cluster_config`.
    #[prost(message, optional, tag = "3")]
    eds: Option<EdsHead>,
}

/// The head of an `EdsClusterConfig`.
#[derive(Clone, PartialEq, prost::Message)]
struct EdsHead {
    /// `service_name`: the EDS resource name when not empty.
    #[prost(string, tag = "2")]
    service_name: String,
}

/// `Cluster.DiscoveryType.EDS`.
const DISCOVERY_EDS: i32 = 3;

/// A cluster's name and, for an EDS cluster, the name of its endpoints resource.
pub fn cluster_eds(body: &Any) -> anyhow::Result<(String, Option<String>)> {
    let head = ClusterHead::decode(body.value.as_slice()).context("decoding a Cluster")?;
    let eds = (head.discovery == Some(DISCOVERY_EDS)).then(|| match head.eds {
        Some(e) if !e.service_name.is_empty() => e.service_name,
        _ => head.name.clone(),
    });
    Ok((head.name, eds))
}

/// A listener's name and the route configurations its HTTP connection managers take over RDS.
pub fn listener_routes(body: &Any) -> anyhow::Result<(String, Vec<String>)> {
    let l = Listener::decode(body.value.as_slice()).context("decoding a Listener")?;
    let mut routes = Vec::new();
    let mut add = |any: &Any| -> anyhow::Result<()> {
        if !any.type_url.ends_with("HttpConnectionManager") {
            return Ok(());
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice())
            .context("decoding an HttpConnectionManager")?;
        if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = hcm.route_specifier {
            routes.push(rds.route_config_name);
        }
        Ok(())
    };
    for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &chain.filters {
            if let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type {
                add(any)?;
            }
        }
    }
    if let Some(any) = l
        .api_listener
        .as_ref()
        .and_then(|a| a.api_listener.as_ref())
    {
        add(any)?;
    }
    Ok((l.name, routes))
}

/// One proxy's record.
#[derive(Debug, Default, Clone)]
struct Slot {
    /// When it first held and had ACKed every type, with endpoints for all its clusters and every route
    /// configuration its listeners name.
    synced_at: Option<Instant>,
    /// When it ACKed the first route configuration received after the change.
    change_acked_at: Option<Instant>,
    /// Responses received after the change, per type.
    after_change: [u64; 4],
}

/// Where the streams record their progress.
pub struct Tracker {
    slots: Vec<Mutex<Slot>>,
    changed_at: OnceLock<Instant>,
    /// Responses received, per type.
    pub responses: [AtomicU64; 4],
    /// Payload bytes received (the resources' encoded bodies).
    pub bytes: AtomicU64,
    /// Streams that failed.
    pub errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tracker {
    /// A tracker for `n` proxies.
    pub fn new(n: usize) -> Self {
        Tracker {
            slots: (0..n).map(|_| Mutex::new(Slot::default())).collect(),
            changed_at: OnceLock::new(),
            responses: Default::default(),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn slot(&self, i: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.slots[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the moment the change is written (once); responses received from then on count as the change's.
    pub fn mark_change(&self) -> Instant {
        *self.changed_at.get_or_init(Instant::now)
    }

    /// Records that proxy `i` received a response of type `t` at `received` carrying `bytes`, has ACKed it,
    /// and is (or is not yet) fully synced.
    pub fn acked(&self, i: usize, t: usize, received: Instant, bytes: usize, synced: bool) {
        self.responses[t].fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut s = self.slot(i);
        if synced && s.synced_at.is_none() {
            s.synced_at = Some(now);
        }
        if self.changed_at.get().is_some_and(|c| received >= *c) {
            s.after_change[t] += 1;
            if t == RDS && s.change_acked_at.is_none() {
                s.change_acked_at = Some(now);
            }
        }
    }

    /// Records that proxy `i`'s stream failed.
    pub fn fail(&self, i: usize, error: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("proxy {i}: {error:#}"));
        }
    }

    /// The first stream failure, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many proxies are fully synced.
    pub fn synced(&self) -> usize {
        (0..self.slots.len())
            .filter(|i| self.slot(*i).synced_at.is_some())
            .count()
    }

    /// How many proxies ACKed the change.
    pub fn changed(&self) -> usize {
        (0..self.slots.len())
            .filter(|i| self.slot(*i).change_acked_at.is_some())
            .count()
    }

    /// Each synced proxy's time to sync from `start`.
    pub fn sync_times(&self, start: Instant) -> Vec<Duration> {
        (0..self.slots.len())
            .filter_map(|i| self.slot(i).synced_at)
            .map(|t| t.saturating_duration_since(start))
            .collect()
    }

    /// Each proxy's time from the change's file write to its ACK of the new routes (those that did).
    pub fn change_latencies(&self) -> Vec<Duration> {
        let Some(c) = self.changed_at.get() else {
            return Vec::new();
        };
        (0..self.slots.len())
            .filter_map(|i| self.slot(i).change_acked_at)
            .map(|t| t.saturating_duration_since(*c))
            .collect()
    }

    /// Responses received after the change, per type, summed over the proxies.
    pub fn after_change(&self) -> BTreeMap<&'static str, u64> {
        let mut sums = [0u64; 4];
        for i in 0..self.slots.len() {
            let s = self.slot(i);
            for (sum, n) in sums.iter_mut().zip(s.after_change) {
                *sum += n;
            }
        }
        TYPES
            .iter()
            .map(|t| types::short_name(t))
            .zip(sums)
            .collect()
    }
}
