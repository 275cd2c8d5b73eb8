//! What both protocols share: streams reopened with a growing jittered backoff, responses applied by the
//! consumer off the runtime, and the status an ACK or a NACK leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sextant_proto::google::protobuf::Any;
use sextant_proto::google::rpc::Status as RpcStatus;
use tokio::sync::watch;

use crate::{Consumer, Nack, Options, Status, types};

/// The largest response accepted (a large mesh's clusters or listeners in one response).
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Requests queued for the stream; the client never has more than one per type outstanding plus a resubscription.
pub(crate) const REQUEST_QUEUE: usize = 16;
/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// Why a stream ended.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The consumer, shared with the blocking pool where it applies responses.
pub(crate) type Shared<C> = Arc<Mutex<C>>;

/// One protocol's client: what it holds across streams, and how it runs one stream.
pub(crate) trait Session: Send {
    /// One stream, from connecting to its end. Sets `answered` once pilot has sent a response.
    fn stream(
        &mut self,
        options: &Options,
        status: &watch::Sender<Status>,
        answered: &mut bool,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Runs `session`'s streams one after the other until the task is dropped, waiting between them with a
/// backoff that grows while pilot sends nothing and starts over once it answers.
pub(crate) async fn reconnect(
    options: &Options,
    status: &watch::Sender<Status>,
    session: &mut impl Session,
) {
    let mut backoff = options.min_backoff;
    loop {
        let mut answered = false;
        if let Err(e) = session.stream(options, status, &mut answered).await {
            let error = crate::connect::with_causes(e.as_ref());
            tracing::warn!(endpoint = %options.endpoint, %error, "xDS stream ended; keeping the configuration held");
        }
        status.send_modify(|s| s.connected = false);
        if answered {
            backoff = options.min_backoff;
        }
        tokio::time::sleep(backoff + jitter(backoff)).await;
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// Up to a quarter of `backoff`, so proxies that lost pilot together do not come back together.
fn jitter(backoff: Duration) -> Duration {
    let quarter = u64::try_from(backoff.as_nanos() / 4)
        .unwrap_or(u64::MAX)
        .max(1);
    let noise = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_nanos(noise % quarter)
}

/// What the consumer made of a whole set of resources.
pub(crate) struct Applied {
    /// Applied, or refused with the message for the NACK.
    pub outcome: Result<(), String>,
    /// Per named type, the names the configuration refers to now; `None` when they could not be asked.
    pub wants: Option<Vec<(&'static str, BTreeSet<String>)>>,
    /// The resources handed over, given back.
    pub resources: Vec<Any>,
}

/// Hands `resources`, the whole set of `type_url`, to the consumer on the blocking pool (it decodes and
/// validates all of them), then asks what it refers to. A panic in the consumer is a refusal, never the end
/// of the client; a type the client did not subscribe to is refused without asking the consumer.
pub(crate) async fn apply<C: Consumer>(
    consumer: &Shared<C>,
    type_url: &str,
    resources: Vec<Any>,
) -> Result<Applied, Error> {
    if !types::known(type_url) {
        return Ok(Applied {
            outcome: Err(format!("type {type_url} was not subscribed")),
            wants: None,
            resources,
        });
    }
    let span = sextant_otel::root_span!(
        None,
        "proxy.config.apply",
        sextant.type = type_url,
        sextant.resources = resources.len(),
        sextant.rejected = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let consumer = consumer.clone();
    let t = type_url.to_owned();
    let in_span = span.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let _in_span = in_span.enter();
        let mut c = consumer.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.apply(&t, &resources)))
                .unwrap_or_else(|_| Err(format!("applying {t} failed inside the proxy (a panic)")));
        let wants = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            types::NAMED.iter().map(|n| (*n, c.wants(n))).collect()
        }))
        .inspect_err(|_| {
            tracing::error!(
                type_url = t,
                "the consumer panicked naming what it refers to; keeping the subscriptions"
            )
        })
        .ok();
        Applied {
            outcome,
            wants,
            resources,
        }
    })
    .await?;
    if let Err(why) = &applied.outcome {
        span.record("sextant.rejected", why.as_str());
        span.record("otel.status_code", "ERROR");
    }
    Ok(applied)
}

/// Records `wants` (from [`Applied::wants`]) as the names subscribed, returning each named type whose names
/// changed with the names it had before. A type never subscribed and still wanting nothing is not
/// requested at all (as Envoy asks only for what its configuration uses).
pub(crate) fn resubscribe(
    subscribed: &mut BTreeMap<String, BTreeSet<String>>,
    wants: Option<Vec<(&'static str, BTreeSet<String>)>>,
) -> Vec<(&'static str, BTreeSet<String>)> {
    let mut changed = Vec::new();
    for (named, wants) in wants.unwrap_or_default() {
        let unchanged = subscribed
            .get(named)
            .map_or(wants.is_empty(), |held| *held == wants);
        if !unchanged {
            let before = subscribed.insert(named.to_owned(), wants);
            changed.push((named, before.unwrap_or_default()));
        }
    }
    changed
}

/// A NACK's `error_detail`.
pub(crate) fn nack_detail(message: String) -> RpcStatus {
    RpcStatus {
        code: INVALID_ARGUMENT,
        message,
        details: Vec::new(),
    }
}

/// Records an applied and ACKed response of `type_url` at `version`, with the names now subscribed.
pub(crate) fn acked(
    status: &watch::Sender<Status>,
    type_url: String,
    version: String,
    subscribed: &BTreeMap<String, BTreeSet<String>>,
) {
    status.send_modify(|s| {
        s.acks += 1;
        s.acked.insert(type_url, version);
        s.subscribed.clone_from(subscribed);
    });
}

/// Records (and logs) a refused and NACKed response.
pub(crate) fn nacked(status: &watch::Sender<Status>, nack: Nack) {
    tracing::warn!(type_url = nack.type_url, version = nack.version, message = %nack.message, "refused an xDS update; keeping the previous one");
    status.send_modify(|s| {
        s.nacks += 1;
        s.last_nack = Some(nack);
    });
}

/// A client for pilot's ADS service, connected as `options` say (with `SO_MARK` and TLS when asked).
pub(crate) async fn client(
    options: &crate::Options,
) -> Result<
    sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient<
        tonic::transport::Channel,
    >,
    Error,
>{
    use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let channel =
        crate::connect::channel(&options.endpoint, options.mark, options.tls.as_ref()).await?;
    Ok(
        AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES),
    )
}
