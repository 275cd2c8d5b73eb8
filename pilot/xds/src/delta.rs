//! Incremental ADS (`DeltaAggregatedResources`): a response carries only the resources that changed for the
//! proxy and the names of those that went away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use crate::protocol::{Answer, Outgoing, Protocol, Verdict, select};
use crate::snapshot::{Snapshot, XdsResource};
use crate::types;

/// One type's subscription on a stream.
#[derive(Debug, Default)]
struct Watch {
    started: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the proxy holds: name → version (from `initial_resource_versions`, then from what was sent).
    holds: BTreeMap<String, String>,
    /// The resources behind `holds`, for debug output.
    held: BTreeMap<String, Arc<XdsResource>>,
    nonce: Option<String>,
    version: String,
}

/// A delta stream.
#[derive(Debug, Default)]
pub struct Delta {
    watches: BTreeMap<String, Watch>,
    nonces: u64,
}

impl Delta {
    /// The changes for one type, if any (or always, with `force`).
    fn respond(
        &mut self,
        type_url: &str,
        snapshot: &Snapshot,
        force: bool,
    ) -> Option<Outgoing<DeltaDiscoveryResponse>> {
        let w = self.watches.get_mut(type_url)?;
        let wanted = select(snapshot, type_url, w.wildcard, w.names.iter());
        let changed: Vec<&Arc<XdsResource>> = wanted
            .values()
            .filter(|r| w.holds.get(&r.name) != Some(&r.version))
            .collect();
        let removed: Vec<String> = w
            .holds
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() && !force {
            return None;
        }
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let message = DeltaDiscoveryResponse {
            system_version_info: snapshot.version().to_string(),
            resources: changed
                .iter()
                .map(|r| Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: type_url.to_string(),
            removed_resources: removed.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        for r in &changed {
            w.holds.insert(r.name.clone(), r.version.clone());
            w.held.insert(r.name.clone(), (*r).clone());
        }
        for n in &removed {
            w.holds.remove(n);
            w.held.remove(n);
        }
        w.nonce = Some(nonce.clone());
        w.version = snapshot.version().to_string();
        Some(Outgoing {
            message,
            type_url: type_url.to_string(),
            version: w.version.clone(),
            nonce,
            holds: w.held.clone(),
        })
    }
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Result<Answer<DeltaDiscoveryResponse>, tonic::Status> {
        if req.type_url.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "a DeltaDiscoveryRequest must name its type_url",
            ));
        }
        let w = self.watches.entry(req.type_url.clone()).or_default();
        let mut verdict = None;
        if !req.response_nonce.is_empty() && w.nonce.as_deref() == Some(req.response_nonce.as_str())
        {
            verdict = Some(Verdict::of(
                &req.type_url,
                &w.version,
                &w.version,
                req.error_detail.as_ref(),
            ));
        }
        let first = !w.started;
        if first {
            w.started = true;
            w.holds = req
                .initial_resource_versions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            w.wildcard = req.resource_names_subscribe.is_empty()
                && types::wildcard_by_default(&req.type_url);
        }
        for n in &req.resource_names_subscribe {
            if n == "*" {
                w.wildcard = true;
            } else {
                w.names.insert(n.clone());
            }
        }
        for n in &req.resource_names_unsubscribe {
            if n == "*" {
                w.wildcard = false;
            } else {
                w.names.remove(n);
                w.holds.remove(n);
                w.held.remove(n);
            }
        }
        // The first request of a type is always answered, so a proxy waiting for it can finish starting.
        let out = self.respond(&req.type_url, snapshot, first);
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
        urls.iter()
            .filter_map(|u| self.respond(u, snapshot, false))
            .collect()
    }
}
