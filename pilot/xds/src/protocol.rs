//! What the two ADS protocols have in common: a per-stream state machine that turns requests and snapshot
//! changes into responses, and reports acknowledgements and rejections.

use std::sync::Arc;

use sextant_proto::envoy::config::core::v3::Node;

use crate::limits::Refusal;
use crate::names::Names;
use crate::snapshot::{Resources, Snapshot};

/// Builds a response's message from shared resources.
pub type Build<R> = Box<dyn Fn() -> R + Send + Sync>;

/// One response about to be sent, with what the proxy will hold of its type once it applies it. The message
/// itself is built only when the stream may send it (see [`Outgoing::message`]), so that streams waiting for
/// the push budget hold pointers to shared resources, not copies of them.
pub struct Outgoing<R> {
    /// Builds the message.
    pub build: Build<R>,
    /// The bytes of the resources it carries.
    pub size: usize,
    /// Its type URL.
    pub type_url: String,
    /// The snapshot version it comes from.
    pub version: String,
    /// Its nonce.
    pub nonce: String,
    /// The resources of this type the proxy holds after applying it.
    pub holds: Resources,
}

impl<R> Outgoing<R> {
    /// The message.
    pub fn message(&self) -> R {
        (self.build)()
    }
}

impl<R> std::fmt::Debug for Outgoing<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("type_url", &self.type_url)
            .field("version", &self.version)
            .field("nonce", &self.nonce)
            .field("size", &self.size)
            .field("resources", &self.holds.len())
            .finish()
    }
}

/// What a request said about an earlier response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The proxy applied it.
    Ack {
        /// Type URL.
        type_url: String,
        /// The version it now runs.
        version: String,
    },
    /// The proxy rejected it and keeps its previous configuration.
    Nack {
        /// Type URL.
        type_url: String,
        /// The version it rejected.
        version: String,
        /// The proxy's error detail.
        message: String,
    },
}

/// What handling one request produced.
#[derive(Debug)]
pub struct Answer<R> {
    /// The response to send, if any.
    pub response: Option<Outgoing<R>>,
    /// What the request said about the previous response, if anything.
    pub verdict: Option<Verdict>,
}

impl Verdict {
    /// What a request answering a response of `type_url` says: a NACK of the `sent` version when it carries
    /// an error detail, else an ACK of `acked`.
    pub(crate) fn of(
        type_url: &str,
        sent: &str,
        acked: &str,
        error: Option<&sextant_proto::google::rpc::Status>,
    ) -> Verdict {
        match error {
            Some(e) => Verdict::Nack {
                type_url: type_url.to_string(),
                version: sent.to_string(),
                message: e.message.clone(),
            },
            None => Verdict::Ack {
                type_url: type_url.to_string(),
                version: acked.to_string(),
            },
        }
    }
}

/// How many bytes of a NACK's error detail pilot keeps (for `/debug/syncz` and the log): enough for
/// Envoy's messages, which name the resource and the field, and not the megabytes a client may send.
pub(crate) const MAX_NACK_MESSAGE: usize = 4096;

/// `s` cut to at most `max` bytes, at a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let end = (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    s[..end].to_string()
}

/// A NACK's error detail as a stream keeps it: its message cut to [`MAX_NACK_MESSAGE`], without details.
pub(crate) fn kept_error(
    mut e: sextant_proto::google::rpc::Status,
) -> sextant_proto::google::rpc::Status {
    e.message = cut(&e.message, MAX_NACK_MESSAGE);
    e.details = Vec::new();
    e
}

/// A stream's state machine for one protocol (state of the world or delta).
pub trait Protocol: Default + Send + 'static {
    /// Requests of the protocol, as they arrive.
    type Request: prost::Message + Default + Send + 'static;
    /// A request as the stream keeps it until it is handled: its resource names compacted (see [`Names`]),
    /// so that requests read ahead while the stream waits hold no copies of thousands of names.
    type Parsed: Send + 'static;
    /// Responses of the protocol.
    type Response: prost::Message + Send + 'static;
    /// `sotw` or `delta`.
    const NAME: &'static str;

    /// The node a request carries, if any.
    fn node(request: &Self::Request) -> Option<&Node>;

    /// The request as kept, its names shared with `snapshot`'s where they are the same.
    fn parse(request: Self::Request, snapshot: &Snapshot) -> Self::Parsed;

    /// The type of the response a request answers (ACK or NACK), if it answers one.
    fn answers(request: &Self::Parsed) -> Option<&str>;

    /// About how many heap bytes the request holds as kept (names counted with
    /// [`crate::limits::NAME_OVERHEAD`]): what the read-ahead backlog is bounded by.
    fn cost(request: &Self::Parsed) -> usize;

    /// Handles a request against the current snapshot: at most one response and at most one verdict. A
    /// request of a type pilot does not serve, or over a bound of [`crate::limits`], is refused and changes
    /// nothing.
    fn on_request(
        &mut self,
        request: Self::Parsed,
        snapshot: &Snapshot,
    ) -> Result<Answer<Self::Response>, Refusal>;

    /// The responses a new snapshot calls for, in push order; nothing for types whose resources did not
    /// change for this stream.
    fn on_change(&mut self, snapshot: &Snapshot) -> Vec<Outgoing<Self::Response>>;
}

/// The resources of `type_url` in `snapshot` a subscription selects: all of them for a wildcard
/// subscription, else those named that exist. Shared with the snapshot whenever that is all of them.
pub(crate) fn select(
    snapshot: &Snapshot,
    type_url: &str,
    wildcard: bool,
    names: &Names,
) -> Resources {
    let Some(all) = snapshot.shared(type_url) else {
        return Resources::default();
    };
    if wildcard {
        return all.clone();
    }
    if let Names::Keys(keys) = names
        && (Arc::ptr_eq(keys, all) || (keys.len() == all.len() && keys.keys().eq(all.keys())))
    {
        return all.clone();
    }
    Arc::new(
        names
            .iter()
            .filter_map(|n| all.get(n).map(|r| (n.clone(), r.clone())))
            .collect(),
    )
}

/// The names both maps hold at different versions: resources updated in place (not added or removed).
pub(crate) fn updated(before: &Resources, after: &Resources) -> std::collections::BTreeSet<String> {
    if Arc::ptr_eq(before, after) {
        return Default::default();
    }
    after
        .values()
        .filter(|r| before.get(&r.name).is_some_and(|b| b.version != r.version))
        .map(|r| r.name.clone())
        .collect()
}
