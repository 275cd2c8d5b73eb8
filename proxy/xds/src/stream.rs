//! State of the world (`StreamAggregatedResources`): each response carries the whole set of its type, and
//! each request the whole set of names subscribed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use sextant_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::session::{self, Error, REQUEST_QUEUE, Session, Shared};
use crate::{Consumer, Nack, Options, Status, types};

/// What the client holds across streams (the versions applied and the names subscribed), and the last nonce
/// of each type on the current stream.
#[derive(Default)]
struct Held {
    versions: BTreeMap<String, String>,
    subscribed: BTreeMap<String, BTreeSet<String>>,
    nonces: BTreeMap<String, String>,
}

/// The state-of-the-world client.
struct Sotw<C> {
    consumer: Shared<C>,
    held: Held,
}

/// Runs the state-of-the-world client until the task is dropped (see [`crate::run`]).
pub(crate) async fn run<C: Consumer>(options: Options, consumer: C, status: watch::Sender<Status>) {
    let mut sotw = Sotw {
        consumer: Arc::new(Mutex::new(consumer)),
        held: Held::default(),
    };
    session::reconnect(&options, &status, &mut sotw).await;
}

impl<C: Consumer> Session for Sotw<C> {
    async fn stream(
        &mut self,
        options: &Options,
        status: &watch::Sender<Status>,
        answered: &mut bool,
    ) -> Result<(), Error> {
        let held = &mut self.held;
        let mut client = session::client(options).await?;
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
            for r in answer(&self.consumer, held, status, response).await? {
                tx.send(r).await?;
            }
        }
        Ok(())
    }
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

/// Applies `response` and returns what to send: its ACK or NACK, then a request for each named type whose
/// names the applied configuration changed.
async fn answer<C: Consumer>(
    consumer: &Shared<C>,
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
    let applied = session::apply(consumer, &type_url, resources).await?;
    let mut out = Vec::new();
    match applied.outcome {
        Ok(()) => {
            held.versions.insert(type_url.clone(), version_info.clone());
            out.push(request(held, &type_url, nonce));
            for (named, _) in session::resubscribe(&mut held.subscribed, applied.wants) {
                let nonce = held.nonces.get(named).cloned().unwrap_or_default();
                out.push(request(held, named, nonce));
            }
            session::acked(status, type_url, version_info, &held.subscribed);
        }
        Err(message) => {
            let mut nack = request(held, &type_url, nonce);
            nack.error_detail = Some(session::nack_detail(message.clone()));
            out.push(nack);
            session::nacked(
                status,
                Nack {
                    type_url,
                    version: version_info,
                    message,
                },
            );
        }
    }
    Ok(out)
}
