//! Kubernetes plumbing the hub and pilot both use: a [`client`] for the API server a kubeconfig names (or
//! the inferred one), a bounded [`store::Store`] of one kind's objects fed by watcher events, a role's
//! configuration resources read as documents with their status written back ([`resources`]), and the Lease
//! that says which replica writes it ([`lease`]).

pub mod lease;
pub mod resources;
pub mod store;

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use store::{Key, Outcome, Store};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it: the first line of the reader's error (a YAML error names the line and
        /// column there; the lines after it only draw the snippet again).
        reason: String,
    },
    /// No kubeconfig given, and none could be inferred.
    #[error(
        "no Kubernetes configuration found (not in a cluster, no $KUBECONFIG or ~/.kube/config): {0}"
    )]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the API server named by `kubeconfig` (or the inferred configuration: in-cluster service
/// account, else `$KUBECONFIG` or `~/.kube/config`). Must run on a tokio runtime. Nothing is contacted yet:
/// an unreachable server shows as watch errors later.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let err = |e: kube::config::KubeconfigError| ClientError::Kubeconfig {
                path: path.to_path_buf(),
                reason: e.to_string().lines().next().unwrap_or_default().to_string(),
            };
            let file = Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(kube::Client::try_from(config)?)
}
