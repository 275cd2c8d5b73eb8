//! Istio's certificate API (`istio.v1.auth.IstioCertificateService/CreateCertificate`): the caller's
//! bearer token (`authorization: Bearer TOKEN`) names its identity (an [`Authenticator`]: the token files
//! in file mode; in Kubernetes mode the API server's TokenReview too), the CSR must ask for exactly that
//! identity's SPIFFE ID, and the answer is the certificate for the caller's own key, its issuers, and the
//! trust root last. Nothing else is taken from the request: the token decides the identity, whatever the
//! CSR or the caller's node says.
//!
//! Outcomes, counted in `pilot_ca_csr_total{result}`: `signed`; `unauthenticated` (no token, or one that
//! is no identity's: UNAUTHENTICATED); `unavailable` (whether the token is valid could not be known — the
//! API server failed, was unreachable or slow: UNAVAILABLE, the caller retries); `denied` (a CSR for
//! another identity than the token's: PERMISSION_DENIED, logged with both); `invalid` (a CSR that is not a
//! validly signed PKCS #10 request: INVALID_ARGUMENT); `failed` (signing failed: INTERNAL).

use std::sync::Arc;
use std::time::Duration;

use pilot_ca::{Authority, CaError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sextant_proto::istio_ca::istio_certificate_service_server::IstioCertificateService;
use sextant_proto::istio_ca::{IstioCertificateRequest, IstioCertificateResponse};
use tonic::{Request, Response, Status};

use super::authenticate::Authenticator;

/// The longest CSR accepted, in bytes (a P-256 or RSA-4096 request is a few KiB).
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// The labels of `pilot_ca_csr_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CsrLabels {
    /// `signed`, `unauthenticated`, `unavailable`, `denied`, `invalid` or `failed`.
    pub result: &'static str,
}

/// The certificate service.
pub struct CertificateService {
    authority: Arc<Authority>,
    authenticator: Arc<dyn Authenticator>,
    outcomes: Family<CsrLabels, Counter>,
}

impl std::fmt::Debug for CertificateService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateService")
            .field("authenticator", &self.authenticator)
            .finish_non_exhaustive()
    }
}

impl CertificateService {
    /// Signs with `authority` for the identities `authenticator` finds.
    pub fn new(authority: Arc<Authority>, authenticator: Arc<dyn Authenticator>) -> Self {
        CertificateService {
            authority,
            authenticator,
            outcomes: Family::default(),
        }
    }

    /// `pilot_ca_csr_total`, to register.
    pub fn outcomes(&self) -> Family<CsrLabels, Counter> {
        self.outcomes.clone()
    }

    fn count(&self, result: &'static str) {
        self.outcomes.get_or_create(&CsrLabels { result }).inc();
    }
}

/// The bearer token of `authorization: Bearer TOKEN` (scheme case-insensitive).
fn bearer(metadata: &tonic::metadata::MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The chain as Istio answers: each certificate of `chain_pem` (the workload's first) as a PEM of its
/// own, without the root, and `root_pem` last.
fn answer_chain(chain_pem: &str, root_pem: &str) -> Vec<String> {
    let strip = |s: &str| s.split_whitespace().collect::<String>();
    let roots: Vec<String> = pem_blocks(root_pem).iter().map(|r| strip(r)).collect();
    let mut out: Vec<String> = pem_blocks(chain_pem)
        .into_iter()
        .filter(|c| !roots.contains(&strip(c)))
        .collect();
    out.push(root_pem.to_string());
    out
}

/// The PEM certificates of `text`, each with its trailing newline.
fn pem_blocks(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let end = start + end + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

#[tonic::async_trait]
impl IstioCertificateService for CertificateService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let Some(token) = bearer(request.metadata()) else {
            self.count("unauthenticated");
            tracing::warn!(%peer, "certificate request without a bearer token refused (UNAUTHENTICATED)");
            return Err(Status::unauthenticated(
                "no bearer token: send `authorization: Bearer TOKEN`",
            ));
        };
        let identity = match self.authenticator.identity_of(token).await {
            Ok(Some(identity)) => identity,
            Ok(None) => {
                self.count("unauthenticated");
                tracing::warn!(%peer, checked = %self.authenticator.describe(), "certificate request with a token of no identity refused (UNAUTHENTICATED)");
                return Err(Status::unauthenticated(
                    "the bearer token is no identity's token",
                ));
            }
            Err(e) => {
                self.count("unavailable");
                tracing::warn!(%peer, error = %e, "certificate request's token could not be checked (UNAVAILABLE)");
                return Err(Status::unavailable(
                    "the bearer token could not be checked now; retry",
                ));
            }
        };
        let request = request.into_inner();
        if request.csr.len() > MAX_CSR_BYTES {
            self.count("invalid");
            return Err(Status::invalid_argument(format!(
                "the CSR is longer than {MAX_CSR_BYTES} bytes"
            )));
        }
        let caller = identity.spiffe_id(self.authority.trust_domain());
        let ttl = u64::try_from(request.validity_duration)
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let authority = self.authority.clone();
        let id = caller.clone();
        let signed =
            tokio::task::spawn_blocking(move || authority.sign_csr(&request.csr, &id, ttl)).await;
        match signed {
            Ok(Ok(signed)) => {
                self.count("signed");
                tracing::info!(identity = %caller, %peer, not_after = ?signed.not_after, "workload certificate signed");
                Ok(Response::new(IstioCertificateResponse {
                    cert_chain: answer_chain(&signed.chain_pem, self.authority.root_pem()),
                }))
            }
            Ok(Err(CaError::OtherIdentity { asked, caller })) => {
                self.count("denied");
                tracing::warn!(asked = ?asked, token_identity = %caller, %peer, "refused a CSR for another identity than the token's (PERMISSION_DENIED)");
                Err(Status::permission_denied(format!(
                    "the CSR asks for {asked:?}; the token is for {caller:?} only"
                )))
            }
            Ok(Err(CaError::Csr(why))) => {
                self.count("invalid");
                tracing::warn!(identity = %caller, %peer, error = %why, "invalid certificate request refused (INVALID_ARGUMENT)");
                Err(Status::invalid_argument(why))
            }
            Ok(Err(e)) => {
                self.count("failed");
                tracing::error!(identity = %caller, error = %e, "signing a workload certificate failed");
                Err(Status::internal("signing failed"))
            }
            Err(e) => {
                self.count("failed");
                tracing::error!(identity = %caller, error = %e, "signing a workload certificate failed");
                Err(Status::internal("signing failed"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
