//! Incremental (`DeltaAggregatedResources`): pilot sends only the resources that changed and the names of
//! those that went away, and each request only the names subscribed or unsubscribed since the last one. The
//! client merges the changes into what it holds, so the consumer still gets each type's whole set.

mod held;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::session::{self, Error, REQUEST_QUEUE, Session, Shared};
use crate::{Consumer, Nack, Options, Status, types};
use held::{Change, Resources};

/// The delta client: what it holds across streams, and the types requested on the current one.
struct Delta<C> {
    consumer: Shared<C>,
    /// Per type URL, the resources applied (with their versions, which a new stream resumes from).
    resources: BTreeMap<String, Resources>,
    /// Per named type, the names subscribed.
    subscribed: BTreeMap<String, BTreeSet<String>>,
    /// The types requested on the current stream: the next request of one of them sends only differences.
    started: BTreeSet<&'static str>,
}

/// Runs the delta client until the task is dropped (see [`crate::run`]).
pub(crate) async fn run<C: Consumer>(options: Options, consumer: C, status: watch::Sender<Status>) {
    let mut delta = Delta {
        consumer: Arc::new(Mutex::new(consumer)),
        resources: BTreeMap::new(),
        subscribed: BTreeMap::new(),
        started: BTreeSet::new(),
    };
    session::reconnect(&options, &status, &mut delta).await;
}

impl<C: Consumer> Session for Delta<C> {
    async fn stream(
        &mut self,
        options: &Options,
        status: &watch::Sender<Status>,
        answered: &mut bool,
    ) -> Result<(), Error> {
        let mut client = session::client(options).await?;
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        self.started.clear();
        let mut node = Some(options.node.clone());
        // Resumed where the last stream left: the names subscribed and the versions held.
        let mut opening = Vec::new();
        for type_url in types::WILDCARD {
            opening.push(self.first(type_url));
        }
        for type_url in types::NAMED {
            if self.subscribed.get(type_url).is_some_and(|n| !n.is_empty()) {
                opening.push(self.first(type_url));
            }
        }
        for mut r in opening {
            r.node = node.take();
            tx.send(r).await?;
        }
        let mut responses = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        status.send_modify(|s| {
            s.connected = true;
            s.streams += 1;
        });
        while let Some(response) = responses.message().await? {
            *answered = true;
            for r in self.answer(status, response).await? {
                tx.send(r).await?;
            }
        }
        Ok(())
    }
}

impl<C: Consumer> Delta<C> {
    /// The first request of `type_url` on a stream: every name subscribed (none, for clusters and listeners,
    /// is what pilot takes for a wildcard) and the version of each resource held.
    fn first(&mut self, type_url: &'static str) -> DeltaDiscoveryRequest {
        self.started.insert(type_url);
        DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names_subscribe: self
                .subscribed
                .get(type_url)
                .map(|n| n.iter().cloned().collect())
                .unwrap_or_default(),
            initial_resource_versions: self
                .resources
                .get(type_url)
                .map(Resources::versions)
                .unwrap_or_default(),
            ..DeltaDiscoveryRequest::default()
        }
    }

    /// Merges and applies `response`, and returns what to send: its ACK or NACK, then, for each named type
    /// whose names the applied configuration changed, the names subscribed and unsubscribed.
    async fn answer(
        &mut self,
        status: &watch::Sender<Status>,
        response: DeltaDiscoveryResponse,
    ) -> Result<Vec<DeltaDiscoveryRequest>, Error> {
        let DeltaDiscoveryResponse {
            system_version_info,
            resources,
            type_url,
            removed_resources,
            nonce,
            ..
        } = response;
        let applied = if types::known(&type_url) {
            let change = self.change(&type_url, resources, removed_resources);
            self.resources
                .entry(type_url.clone())
                .or_default()
                .apply(&self.consumer, &type_url, change)
                .await?
        } else {
            session::apply(&self.consumer, &type_url, Vec::new()).await?
        };
        let mut reply = DeltaDiscoveryRequest {
            type_url: type_url.clone(),
            response_nonce: nonce,
            ..DeltaDiscoveryRequest::default()
        };
        let mut out = Vec::new();
        match applied.outcome {
            Ok(()) => {
                out.push(reply);
                for (named, before) in session::resubscribe(&mut self.subscribed, applied.wants) {
                    out.extend(self.resubscription(named, &before));
                }
                session::acked(status, type_url, system_version_info, &self.subscribed);
            }
            Err(message) => {
                reply.error_detail = Some(session::nack_detail(message.clone()));
                out.push(reply);
                session::nacked(
                    status,
                    Nack {
                        type_url,
                        version: system_version_info,
                        message,
                    },
                );
            }
        }
        Ok(out)
    }

    /// What a response changes. Of a named type, only resources subscribed are taken: one sent before pilot
    /// read an unsubscription would otherwise stay held, since pilot will never say it went away. A resource
    /// without a body (a TTL heartbeat) changes nothing.
    fn change(&self, type_url: &str, resources: Vec<Resource>, removed: Vec<String>) -> Change {
        let named = types::NAMED.contains(&type_url);
        let subscribed = self.subscribed.get(type_url);
        let upserts = resources
            .into_iter()
            .filter(|r| !named || subscribed.is_some_and(|s| s.contains(&r.name)))
            .filter_map(|r| Some((r.name, r.version, r.resource?)))
            .collect();
        Change { upserts, removed }
    }

    /// The request that follows the names of `type_url` changing from `before`, if one is needed. Names
    /// unsubscribed are forgotten at once: the consumer no longer refers to them, and a new stream must not
    /// announce them.
    fn resubscription(
        &mut self,
        type_url: &'static str,
        before: &BTreeSet<String>,
    ) -> Option<DeltaDiscoveryRequest> {
        let now = self.subscribed.get(type_url).cloned().unwrap_or_default();
        let gone: Vec<String> = before.difference(&now).cloned().collect();
        if let Some(r) = self.resources.get_mut(type_url) {
            r.forget(&gone);
        }
        if !self.started.contains(type_url) {
            return (!now.is_empty()).then(|| self.first(type_url));
        }
        Some(DeltaDiscoveryRequest {
            type_url: type_url.to_owned(),
            resource_names_subscribe: now.difference(before).cloned().collect(),
            resource_names_unsubscribe: gone,
            ..DeltaDiscoveryRequest::default()
        })
    }
}
