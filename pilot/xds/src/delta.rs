//! Incremental ADS (`DeltaAggregatedResources`): a response carries only the resources that changed for the
//! proxy and the names of those that went away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use crate::limits::{Refusal, measure, names_cost};
use crate::names::{Names, take_wildcard};
use crate::protocol::{Answer, Outgoing, Protocol, Verdict, kept_error, select, updated};
use crate::snapshot::{Resources, Snapshot, XdsResource};
use crate::types;

/// One type's subscription on a stream.
#[derive(Debug, Default)]
struct Watch {
    started: bool,
    wildcard: bool,
    names: Names,
    /// What the proxy holds: what was sent to it (after the first response, exactly what it subscribes to),
    /// or before that the versions it announced in `initial_resource_versions` (without bodies).
    holds: Resources,
    nonce: Option<String>,
    version: String,
}

/// A `DeltaDiscoveryRequest` as a stream keeps it (see [`Protocol::Parsed`]).
#[derive(Debug)]
pub struct DeltaRequest {
    type_url: String,
    response_nonce: String,
    error: Option<sextant_proto::google::rpc::Status>,
    initial_resource_versions: HashMap<String, String>,
    /// Whether the subscribe list was empty (`*` counts).
    subscribes_nothing: bool,
    subscribe_wildcard: bool,
    subscribe: Names,
    unsubscribe_wildcard: bool,
    unsubscribe: Vec<String>,
    /// Set when the request is refused whatever the stream's state (its names are then dropped at once).
    refused: Option<Refusal>,
}

/// A delta stream.
#[derive(Debug, Default)]
pub struct Delta {
    watches: BTreeMap<String, Watch>,
    nonces: u64,
}

impl Delta {
    /// The changes for one type, plus the resources named in `resend` even if unchanged, if any (or always,
    /// with `force`).
    fn respond(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot,
        force: bool,
        resend: &BTreeSet<String>,
    ) -> Option<Outgoing<DeltaDiscoveryResponse>> {
        let w = self.watches.get_mut(type_url)?;
        let wanted = select(snapshot, type_url, w.wildcard, &w.names);
        let (changed, removed): (Vec<&Arc<XdsResource>>, Vec<String>) =
            if Arc::ptr_eq(&wanted, &w.holds) && resend.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                (
                    wanted
                        .values()
                        .filter(|r| {
                            w.holds.get(&r.name).map(|h| &h.version) != Some(&r.version)
                                || resend.contains(&r.name)
                        })
                        .collect(),
                    w.holds
                        .keys()
                        .filter(|n| !wanted.contains_key(*n))
                        .cloned()
                        .collect(),
                )
            };
        if changed.is_empty() && removed.is_empty() && !force {
            return None;
        }
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let changed: Vec<Arc<XdsResource>> = changed.into_iter().cloned().collect();
        let size = changed.iter().map(|r| r.body.value.len()).sum();
        let (system_version, url, sent_nonce) = (
            snapshot.version().to_string(),
            type_url.to_string(),
            nonce.clone(),
        );
        let build = move || DeltaDiscoveryResponse {
            system_version_info: system_version.clone(),
            resources: changed
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: url.clone(),
            removed_resources: removed.clone(),
            nonce: sent_nonce.clone(),
            ..Default::default()
        };
        // The proxy now holds exactly what it subscribes to: the changes sent, the rest unchanged.
        w.holds = wanted.clone();
        w.nonce = Some(nonce.clone());
        w.version = snapshot.version().to_string();
        Some(Outgoing {
            build: Box::new(build),
            size,
            type_url: type_url.to_string(),
            version: w.version.clone(),
            nonce,
            holds: w.holds.clone(),
        })
    }
}

#[cfg(test)]
impl Delta {
    /// The type URLs the stream watches.
    pub(crate) fn watched(&self) -> Vec<&str> {
        self.watches.keys().map(String::as_str).collect()
    }
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Parsed = DeltaRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn parse(req: DeltaDiscoveryRequest, snapshot: &Snapshot) -> DeltaRequest {
        let subscribes_nothing = req.resource_names_subscribe.is_empty();
        let (mut subscribe, mut unsubscribe, mut initial) = (
            req.resource_names_subscribe,
            req.resource_names_unsubscribe,
            req.initial_resource_versions,
        );
        let refused = if !types::is_served(&req.type_url) {
            (!req.type_url.is_empty()).then(|| Refusal::unknown_type(&req.type_url))
        } else {
            let (versions, version_bytes) = measure(initial.values());
            let (names, name_bytes) = measure(initial.keys());
            [
                measure(&subscribe),
                measure(&unsubscribe),
                (names.max(versions), name_bytes + version_bytes),
            ]
            .into_iter()
            .try_for_each(|(count, bytes)| Refusal::check_names(&req.type_url, count, bytes))
            .err()
        };
        if refused.is_some() {
            (subscribe, unsubscribe, initial) = Default::default();
        }
        let subscribe_wildcard = take_wildcard(&mut subscribe);
        let unsubscribe_wildcard = take_wildcard(&mut unsubscribe);
        DeltaRequest {
            subscribe: Names::from_list(subscribe, snapshot, &req.type_url),
            subscribes_nothing,
            subscribe_wildcard,
            unsubscribe,
            unsubscribe_wildcard,
            type_url: req.type_url,
            response_nonce: req.response_nonce,
            error: req.error_detail.map(kept_error),
            initial_resource_versions: initial,
            refused,
        }
    }

    fn answers(request: &DeltaRequest) -> Option<&str> {
        (!request.response_nonce.is_empty()).then_some(request.type_url.as_str())
    }

    fn cost(r: &DeltaRequest) -> usize {
        let (count, bytes) = r.subscribe.owned();
        let (unsubscribed, unsubscribed_bytes) = measure(&r.unsubscribe);
        let (initial, initial_bytes) = measure(
            r.initial_resource_versions
                .keys()
                .chain(r.initial_resource_versions.values()),
        );
        names_cost(count, bytes)
            + names_cost(unsubscribed, unsubscribed_bytes)
            + names_cost(initial, initial_bytes)
            + r.type_url.len()
            + r.response_nonce.len()
            + r.error.as_ref().map_or(0, |e| e.message.len())
    }

    fn on_request(
        &mut self,
        req: DeltaRequest,
        snapshot: &Snapshot,
    ) -> Result<Answer<DeltaDiscoveryResponse>, Refusal> {
        if req.type_url.is_empty() {
            return Err(Refusal::NoType {
                protocol: Self::NAME,
            });
        }
        if let Some(refusal) = req.refused {
            return Err(refusal);
        }
        let w = self.watches.entry(req.type_url.clone()).or_default();
        let mut verdict = None;
        if !req.response_nonce.is_empty() && w.nonce.as_deref() == Some(req.response_nonce.as_str())
        {
            verdict = Some(Verdict::of(
                &req.type_url,
                &w.version,
                &w.version,
                req.error.as_ref(),
            ));
        }
        let first = !w.started;
        if first {
            w.started = true;
            w.holds = Arc::new(
                req.initial_resource_versions
                    .into_iter()
                    .map(|(name, version)| {
                        let announced = XdsResource {
                            name: name.clone(),
                            version,
                            body: Default::default(),
                        };
                        (name, Arc::new(announced))
                    })
                    .collect::<BTreeMap<_, _>>(),
            );
            w.wildcard = req.subscribes_nothing && types::wildcard_by_default(&req.type_url);
        }
        w.wildcard |= req.subscribe_wildcard;
        if w.names.is_empty() {
            w.names = req.subscribe;
        } else {
            for n in req.subscribe.iter() {
                w.names.insert(n);
            }
        }
        if req.unsubscribe_wildcard {
            w.wildcard = false;
        }
        for n in &req.unsubscribe {
            w.names.remove(n);
            if w.holds.contains_key(n) {
                Arc::make_mut(&mut w.holds).remove(n);
            }
        }
        w.names = std::mem::take(&mut w.names).compact(snapshot, &req.type_url);
        // Names accumulate over requests (each one bounded when parsed): a stream subscribing to more than
        // the bound, existing or not, is refused, and its state goes with it.
        let (count, bytes) = w.names.owned();
        Refusal::check_names(&req.type_url, count, bytes)?;
        // The first request of a type is always answered, so a proxy waiting for it can finish starting.
        let out = self.respond(&req.type_url, snapshot, first, &BTreeSet::new());
        Ok(Answer {
            response: out,
            verdict,
        })
    }

    fn on_change(&mut self, snapshot: &Snapshot) -> Vec<Outgoing<DeltaDiscoveryResponse>> {
        let mut urls: Vec<String> = self
            .watches
            .iter()
            .filter(|(_, w)| w.started)
            .map(|(u, _)| u.clone())
            .collect();
        urls.sort_by_key(|u| types::push_rank(u));
        // Envoy warms an updated EDS cluster again and waits for its endpoints (up to its initial fetch
        // timeout, 15 s): resend them even when they did not change.
        let clusters_updated = self
            .watches
            .get(types::CLUSTER)
            .map(|w| {
                updated(
                    &w.holds,
                    &select(snapshot, types::CLUSTER, w.wildcard, &w.names),
                )
            })
            .unwrap_or_default();
        let none = BTreeSet::new();
        urls.iter()
            .filter_map(|u| {
                let resend = if u == types::ENDPOINT {
                    &clusters_updated
                } else {
                    &none
                };
                self.respond(u, snapshot, false, resend)
            })
            .collect()
    }
}
