//! One ADS stream at a time, reopened with backoff, and what the client keeps across streams.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use sextant_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use sextant_proto::google::rpc::Status as RpcStatus;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Consumer, Nack, Options, Status, types};

/// The largest response accepted (a large mesh's clusters or listeners in one response).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Requests queued for the stream; the client never has more than one per type outstanding plus a resubscription.
const REQUEST_QUEUE: usize = 16;
/// `google.rpc.Code.INVALID_ARGUMENT`, the code of a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the client holds across streams (the versions applied and the names subscribed), and the last nonce
/// of each type on the current stream.
#[derive(Default)]
struct Held {
    versions: BTreeMap<String, String>,
    subscribed: BTreeMap<String, BTreeSet<String>>,
    nonces: BTreeMap<String, String>,
}

/// Runs the client until the task is dropped: connects, applies and answers what pilot sends, and reconnects
/// with backoff whenever the stream ends. `status` receives what it does.
pub async fn run<C: Consumer>(options: Options, consumer: C, status: watch::Sender<Status>) {
    let consumer = Arc::new(Mutex::new(consumer));
    let mut held = Held::default();
    let mut backoff = options.min_backoff;
    loop {
        let mut answered = false;
        if let Err(e) = stream(&options, &consumer, &mut held, &status, &mut answered).await {
            tracing::warn!(endpoint = %options.endpoint, error = %e, "xDS stream ended; keeping the configuration held");
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

/// One stream, from connecting to its end. Sets `answered` once pilot has sent a response.
async fn stream<C: Consumer>(
    options: &Options,
    consumer: &Arc<Mutex<C>>,
    held: &mut Held,
    status: &watch::Sender<Status>,
    answered: &mut bool,
) -> Result<(), Error> {
    let mut client = AggregatedDiscoveryServiceClient::connect(options.endpoint.clone())
        .await?
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    held.nonces.clear();
    let mut node = Some(options.node.clone());
    // Resumed where the last stream left: the versions held and the names subscribed.
    let mut opening = Vec::new();
    for type_url in types::WILDCARD {
        opening.push(request(held, type_url, String::new()));
    }
    for type_url in types::NAMED {
        if held.subscribed.get(type_url).is_some_and(|n| !n.is_empty()) {
            opening.push(request(held, type_url, String::new()));
        }
    }
    for mut r in opening {
        r.node = node.take();
        tx.send(r).await?;
    }
    let mut responses = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    status.send_modify(|s| {
        s.connected = true;
        s.streams += 1;
    });
    while let Some(response) = responses.message().await? {
        *answered = true;
        for r in answer(consumer, held, status, response).await? {
            tx.send(r).await?;
        }
    }
    Ok(())
}

/// A request for `type_url` at the version held, with the names subscribed (none: a wildcard).
fn request(held: &Held, type_url: &str, nonce: String) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: held.versions.get(type_url).cloned().unwrap_or_default(),
        resource_names: held
            .subscribed
            .get(type_url)
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default(),
        type_url: type_url.to_owned(),
        response_nonce: nonce,
        ..DiscoveryRequest::default()
    }
}

/// Applies `response` (off the runtime: it decodes and validates the whole set) and returns what to send:
/// its ACK or NACK, then a request for each named type whose names the applied configuration changed.
async fn answer<C: Consumer>(
    consumer: &Arc<Mutex<C>>,
    held: &mut Held,
    status: &watch::Sender<Status>,
    response: DiscoveryResponse,
) -> Result<Vec<DiscoveryRequest>, Error> {
    let DiscoveryResponse {
        version_info,
        resources,
        type_url,
        nonce,
        ..
    } = response;
    held.nonces.insert(type_url.clone(), nonce.clone());
    let outcome = if types::known(&type_url) {
        let consumer = consumer.clone();
        let t = type_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = consumer.lock().unwrap_or_else(PoisonError::into_inner);
            let applied =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.apply(&t, &resources)))
                    .unwrap_or_else(|_| {
                        Err(format!("applying {t} failed inside the proxy (a panic)"))
                    });
            let wants: Vec<_> = types::NAMED.iter().map(|n| (*n, c.wants(n))).collect();
            (applied, wants)
        })
        .await?
    } else {
        (
            Err(format!("type {type_url} was not subscribed")),
            Vec::new(),
        )
    };
    let mut out = Vec::new();
    match outcome.0 {
        Ok(()) => {
            held.versions.insert(type_url.clone(), version_info.clone());
            out.push(request(held, &type_url, nonce));
            for (named, wants) in outcome.1 {
                if held.subscribed.get(named) != Some(&wants) {
                    held.subscribed.insert(named.to_owned(), wants);
                    let nonce = held.nonces.get(named).cloned().unwrap_or_default();
                    out.push(request(held, named, nonce));
                }
            }
            status.send_modify(|s| {
                s.acks += 1;
                s.acked.insert(type_url, version_info);
                s.subscribed.clone_from(&held.subscribed);
            });
        }
        Err(message) => {
            tracing::warn!(type_url, version = version_info, %message, "refused an xDS update; keeping the previous one");
            let mut nack = request(held, &type_url, nonce);
            nack.error_detail = Some(RpcStatus {
                code: INVALID_ARGUMENT,
                message: message.clone(),
                details: Vec::new(),
            });
            out.push(nack);
            status.send_modify(|s| {
                s.nacks += 1;
                s.last_nack = Some(Nack {
                    type_url,
                    version: version_info,
                    message,
                });
            });
        }
    }
    Ok(out)
}
