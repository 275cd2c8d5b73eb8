//! State-of-the-world ADS (`StreamAggregatedResources`): each response carries every resource of its type
//! that the proxy subscribes to.

use std::collections::BTreeMap;

use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::limits::{Refusal, measure, names_cost};
use crate::names::{Names, take_wildcard};
use crate::protocol::{Answer, Outgoing, Protocol, Verdict, kept_error, select, updated};
use crate::snapshot::{Resources, Snapshot, same_versions};
use crate::types;

/// One type's subscription on a stream.
#[derive(Debug, Default)]
struct Watch {
    wildcard: bool,
    names: Names,
    /// Set once a response was sent.
    nonce: Option<String>,
    version: String,
    sent: Resources,
}

/// A `DiscoveryRequest` as a stream keeps it (see [`Protocol::Parsed`]).
#[derive(Debug)]
pub struct SotwRequest {
    type_url: String,
    version_info: String,
    response_nonce: String,
    error: Option<sextant_proto::google::rpc::Status>,
    wildcard: bool,
    names: Names,
    /// Set when the request is refused whatever the stream's state (its names are then dropped at once).
    refused: Option<Refusal>,
}

/// A state-of-the-world stream.
#[derive(Debug, Default)]
pub struct Sotw {
    watches: BTreeMap<String, Watch>,
    nonces: u64,
}

impl Sotw {
    fn respond(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot,
    ) -> Option<Outgoing<DiscoveryResponse>> {
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let w = self.watches.get_mut(type_url)?;
        let holds = select(snapshot, type_url, w.wildcard, &w.names);
        w.nonce = Some(nonce.clone());
        w.version = snapshot.version().to_string();
        w.sent = holds.clone();
        let (version, url, sent_nonce, resources) = (
            w.version.clone(),
            type_url.to_string(),
            nonce.clone(),
            holds.clone(),
        );
        Some(Outgoing {
            build: Box::new(move || DiscoveryResponse {
                version_info: version.clone(),
                resources: resources.values().map(|r| r.body.clone()).collect(),
                type_url: url.clone(),
                nonce: sent_nonce.clone(),
                ..Default::default()
            }),
            size: holds.values().map(|r| r.body.value.len()).sum(),
            type_url: type_url.to_string(),
            version: w.version.clone(),
            nonce,
            holds,
        })
    }
}

#[cfg(test)]
impl Sotw {
    /// The type URLs the stream watches.
    pub(crate) fn watched(&self) -> Vec<&str> {
        self.watches.keys().map(String::as_str).collect()
    }
}

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Parsed = SotwRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn parse(req: DiscoveryRequest, snapshot: &Snapshot) -> SotwRequest {
        let mut list = req.resource_names;
        let (count, bytes) = measure(&list);
        let refused = if !types::is_served(&req.type_url) {
            (!req.type_url.is_empty()).then(|| Refusal::unknown_type(&req.type_url))
        } else {
            Refusal::check_names(&req.type_url, count, bytes).err()
        };
        if refused.is_some() {
            list = Vec::new();
        }
        let wildcard = take_wildcard(&mut list)
            || (list.is_empty() && types::wildcard_by_default(&req.type_url));
        SotwRequest {
            names: Names::from_list(list, snapshot, &req.type_url),
            wildcard,
            type_url: req.type_url,
            version_info: req.version_info,
            response_nonce: req.response_nonce,
            error: req.error_detail.map(kept_error),
            refused,
        }
    }

    fn answers(request: &SotwRequest) -> Option<&str> {
        (!request.response_nonce.is_empty()).then_some(request.type_url.as_str())
    }

    fn cost(r: &SotwRequest) -> usize {
        let (count, bytes) = r.names.owned();
        names_cost(count, bytes)
            + r.type_url.len()
            + r.version_info.len()
            + r.response_nonce.len()
            + r.error.as_ref().map_or(0, |e| e.message.len())
    }

    fn on_request(
        &mut self,
        req: SotwRequest,
        snapshot: &Snapshot,
    ) -> Result<Answer<DiscoveryResponse>, Refusal> {
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
        if !req.response_nonce.is_empty() {
            if w.nonce.as_deref() != Some(req.response_nonce.as_str()) {
                // About a response that a newer one superseded: the newer one's answer will follow.
                return Ok(Answer {
                    response: None,
                    verdict: None,
                });
            }
            verdict = Some(Verdict::of(
                &req.type_url,
                &w.version,
                &req.version_info,
                req.error.as_ref(),
            ));
        }
        // An ACK usually repeats the names.
        let changed = req.wildcard != w.wildcard || !req.names.same(&w.names);
        if changed {
            w.names = req.names;
        }
        w.wildcard = req.wildcard;
        let first = w.nonce.is_none();
        let out = if first || changed {
            self.respond(&req.type_url, snapshot)
        } else {
            None
        };
        Ok(Answer {
            response: out,
            verdict,
        })
    }

    fn on_change(&mut self, snapshot: &Snapshot) -> Vec<Outgoing<DiscoveryResponse>> {
        let selected = |url: &str, w: &Watch| select(snapshot, url, w.wildcard, &w.names);
        let mut due: Vec<String> = self
            .watches
            .iter()
            .filter(|(url, w)| w.nonce.is_some() && !same_versions(&w.sent, &selected(url, w)))
            .map(|(url, _)| url.clone())
            .collect();
        // Envoy warms an updated EDS cluster again and waits for its endpoints (up to its initial fetch
        // timeout, 15 s): resend them even when they did not change.
        let clusters = self.watches.get(types::CLUSTER);
        let endpoints = self.watches.get(types::ENDPOINT);
        if let (Some(c), Some(e)) = (clusters, endpoints)
            && e.nonce.is_some()
            && !due.iter().any(|u| u == types::ENDPOINT)
            && updated(&c.sent, &selected(types::CLUSTER, c))
                .iter()
                .any(|name| e.sent.contains_key(name))
        {
            due.push(types::ENDPOINT.to_string());
        }
        due.sort_by_key(|u| types::push_rank(u));
        due.iter()
            .filter_map(|url| self.respond(url, snapshot))
            .collect()
    }
}
