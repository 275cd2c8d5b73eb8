//! The mesh root, published in every namespace as Istio's namespace controller publishes it: the ConfigMap
//! [`CONFIG_MAP`] holding the root certificate under [`KEY`], which injected sidecars mount to check pilot
//! (and, through their certificates, each other). Each namespace gets it as it appears (the control plane's
//! own, [`SKIPPED`], aside); one deleted or edited is put back. Writes are server-side applies by the field
//! manager [`FIELD_MANAGER`]: applying what is there already changes nothing, so the publisher's own writes
//! do not wake it up again.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The ConfigMap's name (Istio's).
pub const CONFIG_MAP: &str = "istio-ca-root-cert";
/// The key of the root certificate in it.
pub const KEY: &str = "root-cert.pem";
/// The namespaces left out.
pub const SKIPPED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// Who writes it.
pub const FIELD_MANAGER: &str = "sextant-pilot";

/// The publisher's counts.
#[derive(Clone, Debug, Default)]
pub struct RootMetrics {
    /// ConfigMaps applied.
    pub applied: Counter,
    /// Applies that failed (retried with the namespace's next event).
    pub failed: Counter,
}

impl RootMetrics {
    /// Registers them as `pilot_root_cert_applied` and `pilot_root_cert_failed`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pilot_root_cert_applied",
            "Applies of the mesh root's ConfigMap (istio-ca-root-cert) into a namespace",
            self.applied.clone(),
        );
        registry.register(
            "pilot_root_cert_failed",
            "Applies of the mesh root's ConfigMap that failed (retried with the namespace's next change)",
            self.failed.clone(),
        );
    }
}

/// The ConfigMap carrying `root_pem` into `namespace`.
pub fn config_map(namespace: &str, root_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                "istio.io/config".to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), root_pem.to_string())])),
        ..ConfigMap::default()
    }
}

/// Publishes `root_pem` into every namespace, forever (run it supervised: it returns only if the watches
/// end).
pub async fn publish(client: Client, root_pem: String, metrics: RootMetrics) {
    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects()
    .filter_map(|n| async move {
        let n = n.ok()?;
        let terminating = n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        (!terminating).then_some(n.metadata.name?)
    })
    .boxed();
    // A published ConfigMap changed or deleted: its namespace again (a namespace being deleted refuses).
    let config_maps = watcher(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}")),
    )
    .default_backoff()
    .filter_map(|event| {
        let root_pem = root_pem.clone();
        async move {
            match event.ok()? {
                watcher::Event::Delete(c) => c.metadata.namespace,
                watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                    let current = c.data.as_ref().and_then(|d| d.get(KEY));
                    (current != Some(&root_pem)).then_some(c.metadata.namespace?)
                }
                _ => None,
            }
        }
    })
    .boxed();
    let mut namespaces = futures::stream::select(namespaces, config_maps);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    while let Some(namespace) = namespaces.next().await {
        if SKIPPED.contains(&namespace.as_str()) {
            continue;
        }
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let wanted = config_map(&namespace, &root_pem);
        match api.patch(CONFIG_MAP, &params, &Patch::Apply(&wanted)).await {
            Ok(_) => {
                metrics.applied.inc();
            }
            Err(e) => {
                metrics.failed.inc();
                tracing::warn!(%namespace, "cannot publish the mesh root ({CONFIG_MAP}): {e}");
            }
        };
    }
}
