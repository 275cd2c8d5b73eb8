//! The hub's gRPC port over TLS (`--tls-cert-file`, `--tls-key-file`): the certificate and key are read from
//! files, typically the mesh CA's (`sextant agent` or a Kubernetes Secret keeps them fresh), and read again
//! when they change, so a rotated certificate serves new connections without a restart. With a client CA
//! (`--tls-client-ca-file`) every client must present a certificate it signed: the caller's SPIFFE ID then
//! binds the attributes that name the calling workload (see `caller.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use sextant_tls_incoming::KeyError;

/// The ALPN values accepted, in preference order: gRPC's `h2`, and what a sidecar offers when the hub is a
/// mesh service with mesh mTLS (`ISTIO_MUTUAL`: Istio's `istio-h2`, `istio`, `istio-peer-exchange`). The
/// connection carries HTTP/2 whichever is chosen.
const ALPN: [&[u8]; 4] = [b"h2", b"istio-h2", b"istio", b"istio-peer-exchange"];

/// How often the certificate and key files are looked at for a change.
pub const RECHECK: Duration = Duration::from_secs(1);

/// TLS on the hub's gRPC port.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CA (PEM) that signs the clients' certificates; when given, clients must present one (and what a
    /// call claiming another workload gets is `DecisionOptions::caller_identity`).
    pub client_ca_file: Option<PathBuf>,
}

/// Why the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {reason}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The serving certificate, swapped when its files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// The modification times of the certificate and key files when last read.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl ReloadingCertificate {
    /// Reads the certificate and key; an error names the file at fault.
    pub fn read(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, TlsError> {
        let stamp = (modified(cert_file), modified(key_file));
        let key = certified_key(
            &read(cert_file)?,
            cert_file,
            &read(key_file)?,
            key_file,
            &provider,
        )?;
        Ok(Arc::new(ReloadingCertificate {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new((key, stamp)),
        }))
    }

    /// Looks at the files every [`RECHECK`] and serves their new contents once both read well; a bad
    /// pair (a key not yet written beside its new certificate) is logged and the previous one kept. A
    /// supervised task: safe to restart.
    pub async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RECHECK).await;
            let stamp = (
                tokio::fs::metadata(&self.cert_file)
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok()),
                tokio::fs::metadata(&self.key_file)
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok()),
            );
            if stamp == self.current.read().unwrap_or_else(|p| p.into_inner()).1 {
                continue;
            }
            let (cert, key) = (
                tokio::fs::read(&self.cert_file).await,
                tokio::fs::read(&self.key_file).await,
            );
            let read = match (cert, key) {
                (Ok(cert), Ok(key)) => {
                    certified_key(&cert, &self.cert_file, &key, &self.key_file, &self.provider)
                }
                (Err(source), _) => Err(TlsError::Read {
                    path: self.cert_file.clone(),
                    source,
                }),
                (_, Err(source)) => Err(TlsError::Read {
                    path: self.key_file.clone(),
                    source,
                }),
            };
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            match read {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_file.display(), "serving certificate reloaded");
                    *current = (key, stamp);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "serving certificate not reloaded; the previous one serves");
                    // Not read again until the files change again.
                    current.1 = stamp;
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}

/// The rustls configuration of the gRPC port (TLS 1.2 and 1.3 with ring, ALPN [`ALPN`]), serving `certificate`,
/// requiring client certificates signed by the client CA when there is one.
pub fn server_config(
    options: &TlsOptions,
    certificate: Arc<ReloadingCertificate>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = certificate.provider.clone();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Content {
            path: options.cert_file.clone(),
            reason: e.to_string(),
        })?;
    let mut config = match &options.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = read(ca)?;
            let bad = |reason: String| TlsError::Content {
                path: ca.clone(),
                reason,
            };
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad("no certificate in it".to_string()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(certificate)
        }
        None => builder
            .with_no_client_auth()
            .with_cert_resolver(certificate),
    };
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certified_key(
    cert: &[u8],
    cert_file: &Path,
    key: &[u8],
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    sextant_tls_incoming::certified_key(cert, key, provider).map_err(|e| match e {
        KeyError::Chain(reason) => TlsError::Content {
            path: cert_file.to_path_buf(),
            reason,
        },
        KeyError::Key(reason) => TlsError::Content {
            path: key_file.to_path_buf(),
            reason,
        },
    })
}
