//! The hub's gRPC port over TLS. The serving certificate comes from one of two places:
//!
//! - files (`--tls-cert-file`, `--tls-key-file`), typically the mesh CA's (`sextant agent` or a Kubernetes
//!   Secret keeps them fresh), read again when they change;
//! - the embedder, which hands each new certificate through a `watch` channel ([`CertificateSource::Handed`]):
//!   `sextant hub --token-file` gets them from pilot's certificate API by CSR, the key made in the process and
//!   never written. The hub opens no port before the first one comes, and logs a certificate that is not
//!   replaced in time (stale at three quarters of the time it had left, then expired); a new one serves new
//!   connections, those open keep theirs.
//!
//! Either way a rotated certificate needs no restart. With a client CA (`--tls-client-ca-file`, or the mesh
//! root with pilot's certificates) every client must present a certificate it signed: the caller's SPIFFE ID
//! then binds the attributes that name the calling workload (see `caller.rs`).

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
    /// Where the serving certificate comes from.
    pub certificate: CertificateSource,
    /// The CA (PEM) that signs the clients' certificates; when given, clients must present one (and what a
    /// call claiming another workload gets is `DecisionOptions::caller_identity`).
    pub client_ca_file: Option<PathBuf>,
}

/// Where the hub's serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertificateSource {
    /// A certificate chain and key in files, read at start (an error stops it) and again when they change.
    Files {
        /// The certificate chain (PEM), leaf first.
        cert_file: PathBuf,
        /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
        key_file: PathBuf,
    },
    /// Certificates handed by the embedder: `None` until the first, each value sent later serving new
    /// connections (a `None` sent later is ignored: the last certificate keeps serving). `start` waits for
    /// the first before it opens any port.
    Handed {
        /// The certificates, newest last.
        certificates: tokio::sync::watch::Receiver<Option<ServingCertificate>>,
        /// Who hands them, for the logs (`pilot https://…`).
        from: String,
    },
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
    /// A handed certificate and key cannot serve.
    #[error("serving certificate: {0}")]
    Handed(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The hub was asked to stop while it waited for its first certificate.
    #[error("stopped while waiting for the first serving certificate from {from}")]
    Stopped {
        /// Who was to hand it.
        from: String,
    },
    /// The sender of the certificates is gone, and none came.
    #[error("{from} ended without handing a serving certificate")]
    NeverHanded {
        /// Who was to hand it.
        from: String,
    },
}

/// A certificate chain and its key, checked to belong together, ready to serve; what an embedder hands the
/// hub ([`CertificateSource::Handed`]).
#[derive(Clone, Debug)]
pub struct ServingCertificate {
    key: Arc<CertifiedKey>,
    serial: String,
    identity: String,
    not_after: SystemTime,
}

impl ServingCertificate {
    /// The chain (PEM, leaf first, without the root) and its private key (PEM: PKCS#8, PKCS#1 or SEC1),
    /// loaded with ring; an error says which part is at fault (the embedder asks again rather than hand it).
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let key =
            sextant_tls_incoming::certified_key(chain_pem, key_pem, &provider).map_err(|e| {
                TlsError::Handed(match e {
                    KeyError::Chain(reason) => format!("the chain: {reason}"),
                    KeyError::Key(reason) => format!("the key: {reason}"),
                })
            })?;
        let bad = |why: String| TlsError::Handed(format!("the leaf: {why}"));
        let leaf = key
            .end_entity_cert()
            .map_err(|e| bad(e.to_string()))?
            .clone();
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&leaf).map_err(|e| bad(e.to_string()))?;
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|n| match n {
                        x509_parser::extensions::GeneralName::URI(u) => u.to_string(),
                        x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let not_after = u64::try_from(parsed.validity().not_after.timestamp())
            .map_err(|_| bad("it expired before 1970".to_string()))?;
        Ok(ServingCertificate {
            serial: parsed.raw_serial_as_string(),
            identity: names.join(","),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after),
            key,
        })
    }

    /// The leaf's serial number (hex, colon-separated), as the logs show it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The names the leaf carries (its SPIFFE ID for the mesh CA's), comma-separated.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

/// How late a handed certificate is: warnings are logged once each as it goes from one to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lateness {
    /// In time.
    InTime,
    /// Not replaced by three quarters of the time it had left when installed (embedders renew at half).
    Stale,
    /// Past its end: clients refuse it.
    Expired,
}

/// The next warning due for a certificate installed at `installed` and valid until `not_after`, after
/// `warned` was logged: when, and which.
fn next_warning(
    installed: SystemTime,
    not_after: SystemTime,
    warned: Lateness,
) -> Option<(SystemTime, Lateness)> {
    match warned {
        Lateness::InTime => {
            let left = not_after.duration_since(installed).unwrap_or_default();
            Some((installed + left / 4 * 3, Lateness::Stale))
        }
        Lateness::Stale => Some((not_after, Lateness::Expired)),
        Lateness::Expired => None,
    }
}

/// The certificate an embedder handed last, and when it was installed.
#[derive(Debug)]
pub struct HandedCertificate {
    from: String,
    current: RwLock<(ServingCertificate, SystemTime)>,
}

impl HandedCertificate {
    /// Waits until `certificates` holds one (logging that the hub waits, when it does not yet), and serves
    /// it; an error when the sender is gone first.
    pub async fn first(
        certificates: &mut tokio::sync::watch::Receiver<Option<ServingCertificate>>,
        from: &str,
    ) -> Result<Arc<Self>, TlsError> {
        let ready = certificates.borrow_and_update().clone();
        let first = match ready {
            Some(c) => c,
            None => {
                tracing::info!(%from, "waiting for the first serving certificate: no port opens (and /readyz does not answer) until it comes");
                certificates
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|c| c.clone())
                    .ok_or_else(|| TlsError::NeverHanded {
                        from: from.to_string(),
                    })?
            }
        };
        log_installed(&first, from);
        Ok(Arc::new(HandedCertificate {
            from: from.to_string(),
            current: RwLock::new((first, SystemTime::now())),
        }))
    }

    fn current(&self) -> (ServingCertificate, SystemTime) {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves each certificate `certificates` hands from now on, and logs one not replaced in time (stale,
    /// then expired: it keeps serving, clients decide). A supervised task: safe to restart.
    pub async fn follow(
        self: Arc<Self>,
        mut certificates: tokio::sync::watch::Receiver<Option<ServingCertificate>>,
    ) {
        let mut open = true;
        let mut warned = Lateness::InTime;
        loop {
            let handed = certificates.borrow_and_update().clone();
            if let Some(new) = handed
                && !Arc::ptr_eq(&new.key, &self.current().0.key)
            {
                log_installed(&new, &self.from);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (new, SystemTime::now());
                warned = Lateness::InTime;
            }
            let (serving, installed) = self.current();
            let due = next_warning(installed, serving.not_after, warned);
            let alarm = async {
                match due {
                    Some((at, lateness)) => {
                        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::sleep(wait).await;
                        lateness
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = certificates.changed(), if open => {
                    if changed.is_err() {
                        open = false;
                        tracing::warn!(from = %self.from, serial = %serving.serial, "no more serving certificates will come; the last one serves until it expires");
                    }
                }
                lateness = alarm => {
                    warned = lateness;
                    let not_after = humantime::format_rfc3339_seconds(serving.not_after);
                    if lateness == Lateness::Stale {
                        tracing::warn!(from = %self.from, serial = %serving.serial, %not_after, "the serving certificate was not renewed in time; it still serves");
                    } else {
                        tracing::error!(from = %self.from, serial = %serving.serial, %not_after, "the serving certificate expired and was not renewed: clients refuse it");
                    }
                }
            }
        }
    }
}

fn log_installed(certificate: &ServingCertificate, from: &str) {
    let not_after = humantime::format_rfc3339_seconds(certificate.not_after);
    tracing::info!(%from, identity = %certificate.identity, serial = %certificate.serial, %not_after, "serving certificate installed");
}

impl ResolvesServerCert for HandedCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .key
                .clone(),
        )
    }
}

/// The serving certificate of a running hub, kept fresh by the supervised `tls-certificate` task.
#[derive(Clone, Debug)]
pub enum Serving {
    /// From files.
    Files(Arc<ReloadingCertificate>),
    /// Handed by the embedder, with the channel it comes through.
    Handed(
        Arc<HandedCertificate>,
        tokio::sync::watch::Receiver<Option<ServingCertificate>>,
    ),
}

impl Serving {
    /// The first certificate: read from the files, or waited for.
    pub async fn start(
        source: &CertificateSource,
        provider: Arc<CryptoProvider>,
    ) -> Result<Serving, TlsError> {
        match source {
            CertificateSource::Files {
                cert_file,
                key_file,
            } => Ok(Serving::Files(ReloadingCertificate::read(
                cert_file, key_file, provider,
            )?)),
            CertificateSource::Handed { certificates, from } => {
                let mut certificates = certificates.clone();
                let first = HandedCertificate::first(&mut certificates, from).await?;
                Ok(Serving::Handed(first, certificates))
            }
        }
    }

    /// What picks the certificate of each handshake.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        match self {
            Serving::Files(c) => c.clone(),
            Serving::Handed(c, _) => c.clone(),
        }
    }

    /// Keeps the certificate fresh until the hub stops (a supervised task: safe to restart).
    pub async fn keep_fresh(self) {
        match self {
            Serving::Files(c) => c.watch().await,
            Serving::Handed(c, certificates) => c.follow(certificates).await,
        }
    }
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

/// The rustls configuration of the gRPC port (TLS 1.2 and 1.3 with `provider`, ALPN [`ALPN`]), serving what
/// `certificate` picks, requiring client certificates signed by the client CA when there is one.
pub fn server_config(
    client_ca_file: Option<&Path>,
    certificate: Arc<dyn ResolvesServerCert>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = match client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = read(ca)?;
            let bad = |reason: String| TlsError::Content {
                path: ca.to_path_buf(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::watch;

    const HUB: &str = "spiffe://cluster.local/ns/sextant-system/sa/sextant-hub";

    /// A certificate naming `id` and its key, PEM.
    fn pem(id: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(id.try_into().expect("a URI"))];
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = params.self_signed(&key).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn serving(id: &str) -> ServingCertificate {
        let (cert, key) = pem(id);
        ServingCertificate::from_pem(cert.as_bytes(), key.as_bytes()).expect("serves")
    }

    #[test]
    fn a_handed_certificate_serves_only_with_its_own_key() {
        let (cert, key) = pem(HUB);
        let good = ServingCertificate::from_pem(cert.as_bytes(), key.as_bytes()).expect("serves");
        assert_eq!(good.identity(), HUB);
        assert!(!good.serial().is_empty());
        assert!(good.not_after() > SystemTime::now());

        let (_, other_key) = pem(HUB);
        let e = ServingCertificate::from_pem(cert.as_bytes(), other_key.as_bytes())
            .expect_err("another key");
        assert!(e.to_string().contains("the key"), "{e}");
        let e = ServingCertificate::from_pem(b"no PEM here", key.as_bytes()).expect_err("no chain");
        assert!(e.to_string().contains("the chain"), "{e}");
    }

    #[tokio::test]
    async fn the_hub_waits_for_its_first_certificate_then_serves_each_new_one() {
        let (publish, certificates) = watch::channel(None);
        let mut waiting = certificates.clone();
        let first =
            tokio::spawn(async move { HandedCertificate::first(&mut waiting, "pilot").await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!first.is_finished(), "served before any certificate came");
        let a = serving(HUB);
        publish.send_replace(Some(a.clone()));
        let handed = first.await.expect("joined").expect("the first certificate");
        assert!(Arc::ptr_eq(&handed.current().0.key, &a.key));

        let follower = tokio::spawn(handed.clone().follow(certificates));
        let b = serving(HUB);
        publish.send_replace(Some(b.clone()));
        let serves_b = || Arc::ptr_eq(&handed.current().0.key, &b.key);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !serves_b() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the new certificate serves");

        // Taking a certificate away, or the sender going, leaves the last one serving.
        publish.send_replace(None);
        drop(publish);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(serves_b(), "the last certificate was dropped");
        assert!(
            !follower.is_finished(),
            "the follower keeps watching expiry"
        );
        follower.abort();
    }

    #[tokio::test]
    async fn no_certificate_ever_handed_is_an_error_not_a_plain_text_port() {
        let (publish, mut certificates) = watch::channel::<Option<ServingCertificate>>(None);
        drop(publish);
        let e = HandedCertificate::first(&mut certificates, "pilot https://pilot:15012")
            .await
            .expect_err("nothing to serve");
        assert!(matches!(e, TlsError::NeverHanded { .. }), "{e}");
    }

    #[test]
    fn a_certificate_not_replaced_in_time_is_warned_about_once_stale_then_once_expired() {
        let installed = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let not_after = installed + Duration::from_secs(100);
        assert_eq!(
            next_warning(installed, not_after, Lateness::InTime),
            Some((installed + Duration::from_secs(75), Lateness::Stale))
        );
        assert_eq!(
            next_warning(installed, not_after, Lateness::Stale),
            Some((not_after, Lateness::Expired))
        );
        assert_eq!(next_warning(installed, not_after, Lateness::Expired), None);
        // Installed already expired: due at once.
        assert_eq!(
            next_warning(not_after, installed, Lateness::InTime),
            Some((not_after, Lateness::Stale))
        );
    }
}
