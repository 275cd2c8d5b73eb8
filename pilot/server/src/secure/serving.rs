//! Pilot's own TLS certificate on the secure port: issued by the mesh CA for istiod's names, so proxies
//! given only the mesh root (`root-cert.pem`) and expecting `istiod.istio-system.svc` accept it, and
//! renewed at half its lifetime by a supervised task while pilot runs. New connections get the new
//! certificate; open ones keep theirs.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use pilot_ca::Authority;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::PilotError;

/// The names pilot's certificate carries (istiod's, so Istio's and Sextant's proxies accept it).
pub const SERVING_NAMES: [&str; 3] = [
    "istiod.istio-system.svc",
    "istiod.istio-system.svc.cluster.local",
    "istiod",
];
/// How long pilot's certificate is valid; renewed at half of it.
pub const SERVING_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long to wait before trying again when renewal fails.
const RETRY: Duration = Duration::from_secs(60);

/// Pilot's current certificate, handed to each new TLS connection.
pub struct ServingCertificate {
    authority: Arc<Authority>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    refresh_at: Mutex<SystemTime>,
}

impl std::fmt::Debug for ServingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCertificate")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

impl ServingCertificate {
    /// Issues pilot's first certificate from `authority`, for istiod's names ([`SERVING_NAMES`]).
    pub fn issue(authority: Arc<Authority>) -> Result<Arc<ServingCertificate>, PilotError> {
        let names = SERVING_NAMES.iter().map(|n| n.to_string()).collect();
        ServingCertificate::issue_for(authority, names)
    }

    /// Issues a first certificate from `authority` for `names` (the first also its common name).
    pub fn issue_for(
        authority: Arc<Authority>,
        names: Vec<String>,
    ) -> Result<Arc<ServingCertificate>, PilotError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (key, refresh_at) = make(&authority, &names, &provider)?;
        Ok(Arc::new(ServingCertificate {
            authority,
            names,
            provider,
            current: RwLock::new(key),
            refresh_at: Mutex::new(refresh_at),
        }))
    }

    /// The TLS server configuration: TLS 1.2 and 1.3 with ring, ALPN `h2` (gRPC), this certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, PilotError> {
        self.server_config_for(&[b"h2"])
    }

    /// [`ServingCertificate::server_config`] offering the protocols `alpn` (most preferred first).
    pub fn server_config_for(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, PilotError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PilotError::ServingCertificate(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Renews the certificate at half its lifetime, forever (a supervised task: safe to restart).
    pub async fn renew(self: Arc<Self>) {
        loop {
            let at = *self.refresh_at.lock().unwrap_or_else(|p| p.into_inner());
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(wait).await;
            let this = self.clone();
            let made = tokio::task::spawn_blocking(move || {
                make(&this.authority, &this.names, &this.provider)
            })
            .await;
            match made {
                Ok(Ok((key, refresh_at))) => {
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
                    *self.refresh_at.lock().unwrap_or_else(|p| p.into_inner()) = refresh_at;
                    tracing::info!(next_renewal = ?refresh_at, "pilot's TLS certificate renewed");
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, retry_in = ?RETRY, "pilot's TLS certificate could not be renewed");
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?RETRY, "pilot's TLS certificate renewal failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// A fresh certificate and key for pilot, and when to renew it.
fn make(
    authority: &Authority,
    names: &[String],
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, SystemTime), PilotError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        PilotError::ServingCertificate(format!("{what}: {e}"))
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let issued = authority
        .serving_certificate(&names, SERVING_TTL)
        .map_err(|e| bad("issuing", &e))?;
    let key = sextant_tls_incoming::certified_key(
        issued.chain_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        provider,
    )
    .map_err(|e| match e {
        sextant_tls_incoming::KeyError::Chain(e) => bad("its chain", &e),
        sextant_tls_incoming::KeyError::Key(e) => bad("its key", &e),
    })?;
    Ok((key, issued.refresh_at))
}
