//! Pilot's secure port (istiod's 15012): the ADS services of the plain port and Istio's certificate API,
//! over TLS with pilot's own certificate from the mesh CA ([`ServingCertificate`], istiod's names). A
//! proxy given the mesh root (`root-cert.pem`) checks pilot there, proves its identity with a bearer token
//! ([`TokenStore`]: `<config-dir>/tokens/NAMESPACE/SERVICE_ACCOUNT`), and has the certificate for a key it
//! made itself signed ([`CertificateService`]); pilot then sends it no secret (`SEXTANT_LOCAL_CERT`).
//!
//! ADS on this port asks for no token, as on the plain port: what a proxy keeping its own key is sent holds
//! nothing secret.

mod certificates;
mod incoming;
mod serving;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

pub use certificates::{CertificateService, CsrLabels, MAX_CSR_BYTES};
pub use incoming::{HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, TlsConnection, accept};
pub use serving::{SERVING_NAMES, SERVING_TTL, ServingCertificate};
pub use tokens::{Identity, MAX_TOKEN_BYTES, MAX_TOKENS, RECHECK, TokenStore};

/// The directory of the configuration directory holding the bootstrap tokens (never read as configuration).
pub const TOKENS_DIR: &str = "tokens";

/// The secure port's settings.
#[derive(Clone, Debug)]
pub struct SecureOptions {
    /// Where it listens (port 0: one the kernel picks).
    pub addr: SocketAddr,
    /// The mesh CA: signs the workloads' CSRs and pilot's own certificate.
    pub authority: Arc<pilot_ca::Authority>,
}
