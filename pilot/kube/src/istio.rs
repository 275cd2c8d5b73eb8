//! Istio's networking and security resources from the API server, for pilot to serve with those of its
//! configuration directory: VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Gateway and Sidecar
//! (`networking.istio.io/v1`), AuthorizationPolicy and PeerAuthentication (`security.istio.io/v1`), watched
//! through [`sextant_kube::resources`] as documents at `kubernetes/KIND/NAMESPACE/NAME`. Pilot judges them as
//! it judges files; [`IstioConfig::judged`] turns what it left out into each resource's status (`Accepted`
//! False with the field-level message, True otherwise), written by the replica holding the Lease. A kind whose
//! CRD is not installed (Istio's CRDs are Istio's to ship) is served as none.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::ApiResource;
use pilot_config::Rejected;
use prometheus_client::registry::Registry;
use sextant_kube::lease::LeaseOptions;
use sextant_kube::resources::{Judgement, Kind, Resources};
use sextant_supervise::TaskHealth;
use tokio::sync::watch;

/// The kinds watched: (group, kind, plural, watch task).
const KINDS: [(&str, &str, &str, &str); 8] = [
    (
        "networking.istio.io",
        "VirtualService",
        "virtualservices",
        "kube-watch-virtualservices",
    ),
    (
        "networking.istio.io",
        "DestinationRule",
        "destinationrules",
        "kube-watch-destinationrules",
    ),
    (
        "networking.istio.io",
        "ServiceEntry",
        "serviceentries",
        "kube-watch-serviceentries",
    ),
    (
        "networking.istio.io",
        "WorkloadEntry",
        "workloadentries",
        "kube-watch-workloadentries",
    ),
    (
        "networking.istio.io",
        "Gateway",
        "gateways",
        "kube-watch-gateways",
    ),
    (
        "networking.istio.io",
        "Sidecar",
        "sidecars",
        "kube-watch-sidecars",
    ),
    (
        "security.istio.io",
        "AuthorizationPolicy",
        "authorizationpolicies",
        "kube-watch-authorizationpolicies",
    ),
    (
        "security.istio.io",
        "PeerAuthentication",
        "peerauthentications",
        "kube-watch-peerauthentications",
    ),
];

/// The version watched (Istio serves `v1` of every kind since 1.22; the API server converts).
pub const VERSION: &str = "v1";

/// The Istio kinds pilot watches.
pub fn kinds() -> Vec<Kind> {
    KINDS
        .iter()
        .map(|(group, kind, plural, task)| Kind {
            name: kind,
            resource: ApiResource {
                group: (*group).to_string(),
                version: VERSION.to_string(),
                api_version: format!("{group}/{VERSION}"),
                kind: (*kind).to_string(),
                plural: (*plural).to_string(),
            },
            task,
        })
        .collect()
}

/// Istio's resources as the API server has them.
#[derive(Debug)]
pub struct IstioConfig {
    resources: Arc<Resources>,
    read: Mutex<Vec<PathBuf>>,
}

impl IstioConfig {
    /// Starts watching with `client` (every namespace), writing status while holding `lease`; the tasks are
    /// supervised in `health` and end when the returned value is dropped.
    pub fn start(
        client: Client,
        lease: LeaseOptions,
        health: &Arc<TaskHealth>,
    ) -> Arc<IstioConfig> {
        Arc::new(IstioConfig {
            resources: Resources::start(client, kinds(), None, lease, health),
            read: Mutex::new(Vec::new()),
        })
    }

    /// The resources as configuration documents (path, text), once every kind has listed (`None` before).
    /// [`IstioConfig::judged`] is about these.
    pub fn documents(&self) -> Option<Vec<(PathBuf, String)>> {
        let documents = self.resources.documents()?;
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) =
            documents.iter().map(|(p, _)| p.clone()).collect();
        Some(documents)
    }

    /// Whether every kind has listed once (a kind whose CRD is not installed counts as listed).
    pub fn synced(&self) -> bool {
        self.resources.synced()
    }

    /// A receiver whose value changes with the resources.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.resources.changes()
    }

    /// Pilot's verdict on the documents of the last [`IstioConfig::documents`]: those it left out.
    pub fn judged(&self, rejected: &[Rejected]) {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.resources.judged(judgements(&read, rejected));
    }

    /// Registers the metrics under `pilot_kube_config_*`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.resources
            .register_metrics("pilot_kube_config", registry);
    }
}

/// The judgement on each resource of `read` (pure): left out, with the errors that name it, or served.
pub fn judgements(read: &[PathBuf], rejected: &[Rejected]) -> BTreeMap<PathBuf, Judgement> {
    let mut messages: BTreeMap<&PathBuf, Vec<String>> = BTreeMap::new();
    for error in rejected.iter().flat_map(|r| &r.errors) {
        if let Some(at) = error.location()
            && let Some(path) = read.iter().find(|p| p.as_path() == &*at.file)
        {
            // The location is the API object, not a file line: the kind, name, field and what is wrong.
            let text = error.to_string();
            let text = text
                .strip_prefix(&format!("{at}: "))
                .map(str::to_string)
                .unwrap_or(text);
            messages.entry(path).or_default().push(text);
        }
    }
    read.iter()
        .map(|path| {
            let judgement = match messages.get(path) {
                Some(errors) => Judgement {
                    accepted: false,
                    reason: "Invalid".into(),
                    message: format!("{}; left out of pilot's configuration", errors.join("; ")),
                },
                None => Judgement {
                    accepted: true,
                    reason: "Accepted".into(),
                    message: "pilot serves it".into(),
                },
            };
            (path.clone(), judgement)
        })
        .collect()
}
