//! Pilot's secure port (istiod's 15012): the ADS services of the plain port and Istio's certificate API,
//! over TLS with pilot's own certificate from the mesh CA ([`ServingCertificate`], istiod's names). A
//! proxy given the mesh root (`root-cert.pem`) checks pilot there, proves its identity with a bearer token
//! (an [`Authenticator`]: [`TokenStore`], `<config-dir>/tokens/NAMESPACE/SERVICE_ACCOUNT`; in Kubernetes
//! mode also [`TokenReviewAuthenticator`], its service-account token checked by the API server), and has the
//! certificate for a key it made itself signed ([`CertificateService`]); pilot then sends it no secret
//! (`SEXTANT_LOCAL_CERT`).
//!
//! ADS on this port asks for no token, as on the plain port: what a proxy keeping its own key is sent holds
//! nothing secret.

mod authenticate;
mod cache;
mod certificates;
mod identity;
mod review;
mod serving;
mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use authenticate::{AuthError, Authenticator, FirstOf};
pub use cache::{CACHE_MAX, CACHE_TTL, IdentityCache, TokenDigest};

pub use certificates::{CertificateService, CsrLabels, MAX_CSR_BYTES};
pub use identity::Identity;
pub use review::TokenReviewAuthenticator;
pub use serving::{SERVING_NAMES, SERVING_TTL, ServingCertificate};
pub use sextant_tls_incoming::{HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, TlsConnection, accept};
pub use tokens::{MAX_TOKEN_BYTES, MAX_TOKENS, RECHECK, TokenStore};

/// The directory of the configuration directory holding the bootstrap tokens (never read as configuration).
pub const TOKENS_DIR: &str = "tokens";

/// The secure port's settings.
#[derive(Clone, Debug)]
pub struct SecureOptions {
    /// Where it listens (port 0: one the kernel picks).
    pub addr: SocketAddr,
    /// The mesh CA: signs the workloads' CSRs and pilot's own certificate.
    pub authority: Arc<pilot_ca::Authority>,
    /// What decides the identity of a certificate request's bearer token; `None`: the token files of the
    /// configuration directory (file mode).
    pub authenticator: Option<Arc<dyn Authenticator>>,
}

impl SecureOptions {
    /// The authenticator of certificate requests: the one given, else the token files under `config_dir`
    /// (warned about when there are none: every request is refused until some are written).
    pub async fn authenticator(&self, config_dir: &Path) -> Arc<dyn Authenticator> {
        if let Some(given) = &self.authenticator {
            tracing::info!(authenticator = %given.describe(), "certificate requests authenticated");
            return given.clone();
        }
        let tokens = TokenStore::new(config_dir.join(TOKENS_DIR));
        if tokens.is_empty().await {
            tracing::warn!(dir = %tokens.dir().display(), "no bootstrap tokens (NAMESPACE/SERVICE_ACCOUNT files): every certificate request is refused until some are written");
        }
        Arc::new(tokens)
    }
}
