//! `sextant agent`: what Istio's pilot-agent does for a stock Envoy sidecar's certificates. The workload's
//! key is made here and stays in the pod; its certificate comes from pilot's certificate API by CSR
//! (`proxy-identity`), and Envoy takes both over SDS (`envoy.service.secret.v3.SecretDiscoveryService`) on a
//! Unix socket: the secrets `default` (certificate and key) and `ROOTCA` (the mesh root), pushed again on
//! every renewal so Envoy rotates without a restart. Envoy's bootstrap names the socket as the cluster
//! `sds-grpc`, and pilot points such a proxy's secrets there (`SEXTANT_LOCAL_CERT` in its node metadata).

use std::collections::BTreeSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use proxy_identity::{CERTIFICATE_SECRET, Certificate, ROOT_SECRET};
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::extensions::transport_sockets::tls::v3 as tls;
use sextant_proto::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use sextant_proto::envoy::service::secret::v3::secret_discovery_service_server::{
    SecretDiscoveryService, SecretDiscoveryServiceServer,
};
use sextant_proto::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// The type URL of SDS secrets.
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// The secrets served at one moment, with their version.
#[derive(Debug)]
pub struct Secrets {
    /// Changes with every certificate.
    pub version: String,
    /// `default`: the certificate and key.
    pub certificate: Any,
    /// `ROOTCA`: the mesh root.
    pub root: Any,
}

impl Secrets {
    /// The secrets of `cert`, trusting `root_pem`.
    pub fn of(cert: &Certificate, root_pem: &str, version: u64) -> Secrets {
        let inline = |b: &str| core::DataSource {
            specifier: Some(core::data_source::Specifier::InlineBytes(
                b.as_bytes().to_vec(),
            )),
            ..Default::default()
        };
        let pack = |s: tls::Secret| Any {
            type_url: SECRET_TYPE.to_string(),
            value: s.encode_to_vec(),
        };
        Secrets {
            version: version.to_string(),
            certificate: pack(tls::Secret {
                name: CERTIFICATE_SECRET.into(),
                r#type: Some(tls::secret::Type::TlsCertificate(tls::TlsCertificate {
                    certificate_chain: Some(inline(&cert.chain_pem)),
                    private_key: Some(inline(&cert.key_pem)),
                    ..Default::default()
                })),
            }),
            root: pack(tls::Secret {
                name: ROOT_SECRET.into(),
                r#type: Some(tls::secret::Type::ValidationContext(
                    tls::CertificateValidationContext {
                        trusted_ca: Some(inline(root_pem)),
                        ..Default::default()
                    },
                )),
            }),
        }
    }

    fn named(&self, names: &BTreeSet<String>) -> Vec<Any> {
        let mut out = Vec::new();
        if names.contains(CERTIFICATE_SECRET) {
            out.push(self.certificate.clone());
        }
        if names.contains(ROOT_SECRET) {
            out.push(self.root.clone());
        }
        out
    }
}

/// The SDS server: every stream gets the secrets it names, again whenever they change.
#[derive(Clone)]
pub struct Sds {
    secrets: watch::Receiver<Option<Arc<Secrets>>>,
}

impl Sds {
    /// A server of the secrets `secrets` holds (none until the first certificate).
    pub fn new(secrets: watch::Receiver<Option<Arc<Secrets>>>) -> Sds {
        Sds { secrets }
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaResponses = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type StreamSecretsStream = Responses;
    type DeltaSecretsStream = DeltaResponses;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let mut requests = request.into_inner();
        let mut secrets = self.secrets.clone();
        // One response in flight at most: the stream waits for Envoy to read it.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut names = BTreeSet::new();
            let mut sent: Option<String> = None;
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    next = requests.message() => match next {
                        Ok(Some(r)) => {
                            if let Some(e) = &r.error_detail {
                                tracing::warn!(version = %r.version_info, error = %e.message, "Envoy refused the secrets");
                                continue;
                            }
                            let wanted: BTreeSet<String> = r.resource_names.into_iter().collect();
                            if wanted == names && sent.is_some() {
                                continue; // an ACK
                            }
                            names = wanted;
                        }
                        _ => return,
                    },
                    changed = secrets.changed() => if changed.is_err() { return },
                }
                let current = secrets.borrow_and_update().clone();
                let Some(current) = current else { continue };
                nonce += 1;
                let response = DiscoveryResponse {
                    version_info: current.version.clone(),
                    resources: current.named(&names),
                    type_url: SECRET_TYPE.to_string(),
                    nonce: nonce.to_string(),
                    ..Default::default()
                };
                sent = Some(current.version.clone());
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Err(Status::unimplemented(
            "the agent serves SDS as state of the world",
        ))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let names: BTreeSet<String> = request.into_inner().resource_names.into_iter().collect();
        let current = self.secrets.borrow().clone();
        let current = current.ok_or_else(|| Status::unavailable("no workload certificate yet"))?;
        Ok(Response::new(DiscoveryResponse {
            version_info: current.version.clone(),
            resources: current.named(&names),
            type_url: SECRET_TYPE.to_string(),
            ..Default::default()
        }))
    }
}

/// Serves `sds` on the Unix socket `path` (an old socket file there is replaced) until `shutdown` ends.
pub async fn serve(
    path: &Path,
    sds: Sds,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(SecretDiscoveryServiceServer::new(sds))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(std::io::Error::other)
}
