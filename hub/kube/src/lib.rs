//! The hub's resources from the Kubernetes API server (`sextant hub --kubernetes`): the `policy.sextant.dev`
//! kinds (Policy, RateLimit, Telemetry, Adapter, [`objects::kinds`]) watched through
//! [`sextant_kube::resources`]; once every kind has listed, [`HubKube::files`] hands the hub the resources as
//! the documents a configuration directory would hold (`kubernetes/KIND/NAMESPACE/NAME`), so the same pure
//! validation judges them and a bad resource never replaces a good snapshot. The hub's verdict comes back
//! through [`HubKube::judged`] ([`status`] says what it means for each resource), and the replica holding
//! the status Lease writes each resource's `status`: the generation judged and the `Accepted` condition,
//! `False` with the same field-level message `sextant validate` prints.

pub mod objects;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hub_config::ConfigFiles;
use kube::Client;
use prometheus_client::registry::Registry;
use sextant_kube::resources::Resources;
use sextant_supervise::TaskHealth;
use tokio::sync::watch;

pub use sextant_kube::lease::LeaseOptions;
pub use sextant_kube::resources::MAX_PER_KIND;
pub use status::Verdict;

/// How the hub reads its resources from the API server.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The kubeconfig; `None` infers (in-cluster service account, else `$KUBECONFIG` or `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace; `None` watches all.
    pub namespace: Option<String>,
    /// The status Lease.
    pub lease: LeaseOptions,
}

/// The hub's resources as the API server has them.
#[derive(Debug)]
pub struct HubKube {
    resources: Arc<Resources>,
    /// The paths of the last [`HubKube::files`].
    read: Mutex<Vec<PathBuf>>,
}

impl HubKube {
    /// Connects with `options` and starts watching (on the current tokio runtime); the tasks are supervised
    /// in `health` and end when the returned value is dropped.
    pub async fn start(
        options: &KubeOptions,
        health: &Arc<TaskHealth>,
    ) -> Result<Arc<HubKube>, sextant_kube::ClientError> {
        let client = sextant_kube::client(options.kubeconfig.as_deref()).await?;
        Ok(HubKube::with_client(client, options, health))
    }

    /// [`HubKube::start`] with a client made elsewhere.
    pub fn with_client(
        client: Client,
        options: &KubeOptions,
        health: &Arc<TaskHealth>,
    ) -> Arc<HubKube> {
        let resources = Resources::start(
            client,
            objects::kinds(),
            options.namespace.clone(),
            options.lease.clone(),
            health,
        );
        Arc::new(HubKube {
            resources,
            read: Mutex::new(Vec::new()),
        })
    }

    /// The resources as configuration documents, once every kind has listed (`None` before). The verdict
    /// given next to [`HubKube::judged`] is about these.
    pub fn files(&self) -> Option<ConfigFiles> {
        let documents = self.resources.documents()?;
        *self.read.lock().unwrap_or_else(|p| p.into_inner()) =
            documents.iter().map(|(p, _)| p.clone()).collect();
        Some(ConfigFiles::from_texts(documents))
    }

    /// A receiver whose value changes with the resources (statuses included).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.resources.changes()
    }

    /// The hub's verdict on the resources of the last [`HubKube::files`]: the status writer writes it.
    pub fn judged(&self, verdict: Verdict) {
        let read = self.read.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.resources.judged(status::judgements(&read, &verdict));
    }

    /// Whether this replica holds the status lease.
    pub fn leader(&self) -> bool {
        self.resources.leader()
    }

    /// Registers the metrics under `sextant_hub_kube_*`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.resources
            .register_metrics("sextant_hub_kube", registry);
    }
}
