//! The Kubernetes-mode service registry: pilot's services from core/v1 Services, discovery.k8s.io/v1
//! EndpointSlices and core/v1 Pods, watched through `kube` watchers.
//!
//! Data flow: three watchers ([`registry`]) → per-kind projections ([`objects`]) in bounded stores
//! (`sextant-kube`) → once all three kinds have listed, the pure [`build::build`] step makes the
//! services →
//! [`KubeRegistry`] hands out a new [`pilot_config::RegistrySnapshot`] version when they changed.
//!
//! What a user sees: Service `NAME` in `NAMESPACE` is host `NAME.NAMESPACE.svc.DOMAIN` (domain
//! `cluster.local` unless configured). A port's protocol is its `appProtocol` (`http`, `grpc`,
//! `kubernetes.io/h2c`, …), else UDP for UDP ports, else Istio's port-name rules (`http-web` is HTTP, an
//! unnamed port TCP). Its endpoints are the ready addresses of the EndpointSlices labelled
//! `kubernetes.io/service-name: NAME`, each service port mapped to the slice port of the same name, with the
//! labels and service account of the Pod the endpoint's `targetRef` names (so DestinationRule subsets by
//! `version` work) and the slice's zone as locality (`/ZONE`; Nodes are not watched, so no region).
//! Headless Services (`clusterIP: None`) are served like the others, balancing over the ready pods;
//! ExternalName Services become mesh-external services resolved by DNS to the external name.
//!
//! Bounds: at most [`pilot_config::registry::limits::MAX_SERVICES`] Services and
//! [`pilot_config::registry::limits::MAX_ENDPOINTS`] EndpointSlices and Pods are kept (more are refused
//! and counted), and the endpoint limits per service and in all hold (left-out endpoints are counted).
//!
//! Besides the registry, [`review`] asks the same API server whether a workload's bearer token is a service
//! account's (TokenReview), for pilot's certificate API in Kubernetes mode, [`roots`] publishes the mesh
//! root into every namespace for injected sidecars, and [`istio`] reads Istio's networking and security
//! resources and writes their status.

pub mod build;
pub mod istio;
pub mod objects;
mod registry;
pub mod review;
pub mod roots;

use std::path::PathBuf;
use std::time::Duration;

pub use registry::{EventLabels, KindLabels, KubeMetrics, KubeRegistry};
pub use review::{Review, ReviewError, ServiceAccount, TokenReviewer};

/// The Lease whose holder writes the Istio resources' status.
pub const STATUS_LEASE: &str = "sextant-pilot-status";

/// The domain of cluster host names unless configured.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// How the Kubernetes registry runs.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// The kubeconfig to use; `None` infers (in-cluster service account, else `$KUBECONFIG` or
    /// `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// How long a burst of watch events may go on before the services are rebuilt once.
    pub debounce: Duration,
    /// The Lease whose holder writes the Istio resources' status ([`istio`]).
    pub lease: LeaseOptions,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            kubeconfig: None,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            debounce: Duration::from_millis(100),
            lease: LeaseOptions {
                namespace: "default".to_string(),
                name: STATUS_LEASE.to_string(),
                identity: format!("pilot-{}", std::process::id()),
            },
        }
    }
}

/// Why the Kubernetes registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No client for the API server.
    #[error(transparent)]
    Client(#[from] sextant_kube::ClientError),
    /// The cluster domain is not a DNS name.
    #[error("cluster domain {0:?} is not a DNS name (like cluster.local)")]
    Domain(String),
}

/// Checks that `domain` is a DNS name (labels of letters, digits and `-`, separated by dots).
pub fn validate_domain(domain: &str) -> Result<(), KubeError> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() <= 253 && domain.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(KubeError::Domain(domain.to_string()))
    }
}

pub use sextant_kube::client;
pub use sextant_kube::lease::LeaseOptions;

/// Validates `options`, builds the client and starts the registry.
pub async fn start(
    options: &KubeOptions,
    health: &std::sync::Arc<sextant_supervise::TaskHealth>,
) -> Result<std::sync::Arc<KubeRegistry>, KubeError> {
    validate_domain(&options.cluster_domain)?;
    let client = client(options.kubeconfig.as_deref()).await?;
    Ok(KubeRegistry::start(client, options, health))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert!(validate_domain("cluster.local").is_ok());
        assert!(validate_domain("corp-1.example").is_ok());
        for bad in ["", "a..b", "-a.b", "a_b.local", "a.b."] {
            assert!(validate_domain(bad).is_err(), "{bad}");
        }
    }
}
