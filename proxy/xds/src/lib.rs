//! The proxy's ADS client: one gRPC stream to pilot carrying every type, state of the world or delta
//! ([`Protocol`]).
//!
//! Clusters and listeners are subscribed as wildcards; endpoints, routes and secrets by the names the applied
//! configuration refers to, which the [`Consumer`] reports after each update. The consumer is handed each
//! type's whole set, whichever the protocol (with delta, the client merges the changes pilot sends into the
//! set it holds), and applies it or refuses it: an applied response is ACKed, a refused one NACKed with the
//! consumer's message and the previous set kept, so the proxy keeps serving what it had. When the stream ends
//! or pilot cannot be reached, the client reconnects with a growing backoff and resumes with the versions and
//! names it holds; the consumer's configuration is never cleared by a lost connection.

pub mod connect;
mod delta;
mod session;
mod stream;
pub mod types;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::google::protobuf::Any;
use tokio::sync::watch;

pub use connect::PilotTls;

/// Runs the client until the task is dropped: connects, applies and answers what pilot sends over
/// `options.protocol`, and reconnects with backoff whenever the stream ends. `status` receives what it does.
pub async fn run<C: Consumer>(options: Options, consumer: C, status: watch::Sender<Status>) {
    match options.protocol {
        Protocol::StateOfTheWorld => stream::run(options, consumer, status).await,
        Protocol::Delta => delta::run(options, consumer, status).await,
    }
}

/// What receives the configuration: validates and applies each response, and names what it refers to.
pub trait Consumer: Send + 'static {
    /// Applies `resources`, the whole set of `type_url` pilot now serves (for endpoints, routes and secrets:
    /// of the names subscribed) sorted by name, or refuses them with a message naming what and where,
    /// changing nothing.
    fn apply(&mut self, type_url: &str, resources: &[Any]) -> Result<(), String>;

    /// The names of `type_url` (one of [`types::NAMED`]) the applied configuration refers to.
    fn wants(&self, type_url: &str) -> BTreeSet<String>;
}

/// Which ADS protocol the client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// State of the world (`StreamAggregatedResources`): each response carries its type's whole set.
    #[default]
    StateOfTheWorld,
    /// Delta (`DeltaAggregatedResources`): each response carries the resources that changed and the names of
    /// those removed; a new stream resumes with the version of each resource held.
    Delta,
}

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Options {
    /// Pilot's xDS endpoint, e.g. `http://127.0.0.1:15010`.
    pub endpoint: String,
    /// The proxy's node, sent in the first request of each stream.
    pub node: Node,
    /// First wait before reconnecting; doubled after each failed attempt up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait before reconnecting.
    pub max_backoff: Duration,
    /// The protocol spoken.
    pub protocol: Protocol,
    /// `SO_MARK` for the connection to pilot (Istio's 1337), so interception lets it through.
    pub mark: Option<u32>,
    /// TLS to pilot (an `https://` endpoint), checked against the mesh root.
    pub tls: Option<PilotTls>,
}

impl Options {
    /// Options with the default backoff (100 ms doubling to 10 s), speaking state of the world.
    pub fn new(endpoint: impl Into<String>, node: Node) -> Options {
        Options {
            endpoint: endpoint.into(),
            node,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            protocol: Protocol::default(),
            mark: None,
            tls: None,
        }
    }
}

/// What the client has done so far, for the admin page and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Whether a stream is open now.
    pub connected: bool,
    /// Streams opened so far.
    pub streams: u64,
    /// Per type URL: the version last applied and ACKed (with delta, the response's `system_version_info`).
    pub acked: BTreeMap<String, String>,
    /// Per type URL: the names subscribed (empty for a wildcard).
    pub subscribed: BTreeMap<String, BTreeSet<String>>,
    /// The last refusal: type URL, the version refused and the message sent back.
    pub last_nack: Option<Nack>,
    /// Responses applied and ACKed.
    pub acks: u64,
    /// Responses refused and NACKed.
    pub nacks: u64,
}

/// A refused response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nack {
    /// Its type URL.
    pub type_url: String,
    /// The version pilot sent.
    pub version: String,
    /// The consumer's message, as sent in `error_detail`.
    pub message: String,
}

/// A handle on the status a running client publishes.
pub type StatusReceiver = watch::Receiver<Status>;
