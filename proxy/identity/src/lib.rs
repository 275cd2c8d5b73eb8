//! The proxy's own workload identity, as Istio's agent keeps it: the private key is made here and never
//! leaves the process; its certificate comes from pilot's certificate API
//! (`istio.v1.auth.IstioCertificateService/CreateCertificate`) over TLS checked against the mesh root, the
//! caller proving who it is with a bearer token; the certificate is renewed at half its lifetime with a
//! fresh key, and installed as the secrets `default` and `ROOTCA` that pilot's configuration names — pilot
//! sends this proxy none. Connections already open keep their certificate; new ones take the new one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proxy_config::secret::{Secret, SecretValue};
use proxy_state::SharedStore;
use proxy_stats::{Counter, Gauge, Scope, Stats};
use proxy_xds::PilotTls;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use sextant_proto::istio_ca::IstioCertificateRequest;
use sextant_proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient;
use sextant_supervise::TaskHealth;

/// The secret holding the workload's certificate and key.
pub const CERTIFICATE_SECRET: &str = "default";
/// The secret holding the mesh's trust root.
pub const ROOT_SECRET: &str = "ROOTCA";

/// Where and how to get the certificate.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Pilot's secure endpoint, `https://HOST:PORT`.
    pub endpoint: String,
    /// TLS to pilot, trusting the mesh root only.
    pub tls: PilotTls,
    /// `SO_MARK` of the connection (interception lets the proxy's own traffic through).
    pub mark: Option<u32>,
    /// The mesh root, PEM: the peers' trust anchor (`ROOTCA`).
    pub root_pem: String,
    /// The identity asked for, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
    pub spiffe_id: String,
    /// The file holding the bearer token that proves it (read at each request: tokens rotate).
    pub token_file: PathBuf,
    /// The lifetime asked for (pilot may give less).
    pub lifetime: Duration,
}

/// Why no certificate was obtained.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The token file cannot be read.
    #[error("token file {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key or the request could not be made.
    #[error("certificate signing request: {0}")]
    Csr(#[from] rcgen::Error),
    /// Pilot could not be reached.
    #[error("cannot reach pilot's certificate service: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// Pilot refused.
    #[error("pilot refused the certificate: {0}")]
    Refused(#[from] tonic::Status),
    /// What came back is not a certificate for this key and identity.
    #[error("pilot's answer: {0}")]
    Answer(String),
}

/// A certificate for the proxy's own key.
#[derive(Debug)]
pub struct Certificate {
    /// The workload certificate and its issuers up to (not including) the root, PEM.
    pub chain_pem: String,
    /// The private key, PKCS #8 PEM (made here, never sent).
    pub key_pem: String,
    /// When it starts to be valid (CAs backdate it a little, for clocks behind theirs).
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
    /// When it came.
    pub received: SystemTime,
}

impl Certificate {
    /// When to renew it: half the time it had left when it came (not half its validity, which the CA
    /// backdates).
    pub fn renew_at(&self) -> SystemTime {
        let left = self
            .not_after
            .duration_since(self.received)
            .unwrap_or_default();
        self.received + left / 2
    }

    /// The secrets `default` and `ROOTCA`, with `root_pem` as the trust root.
    pub fn secrets(&self, root_pem: &str) -> Vec<Secret> {
        vec![
            Secret {
                name: CERTIFICATE_SECRET.into(),
                value: SecretValue::Certificate {
                    chain: self.chain_pem.clone().into_bytes(),
                    key: self.key_pem.clone().into_bytes(),
                },
            },
            Secret {
                name: ROOT_SECRET.into(),
                value: SecretValue::Roots(root_pem.as_bytes().to_vec()),
            },
        ]
    }
}

/// Makes a fresh key and obtains its certificate.
pub async fn obtain(settings: &Settings) -> Result<Certificate, IdentityError> {
    let token =
        std::fs::read_to_string(&settings.token_file).map_err(|source| IdentityError::Token {
            path: settings.token_file.clone(),
            source,
        })?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(settings.spiffe_id.as_str().try_into()?)];
    let csr = params.serialize_request(&key)?.pem()?;
    let channel =
        proxy_xds::connect::channel(&settings.endpoint, settings.mark, Some(&settings.tls)).await?;
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: i64::try_from(settings.lifetime.as_secs()).unwrap_or(i64::MAX),
        metadata: None,
    });
    let bearer = format!("Bearer {}", token.trim());
    let value = bearer
        .parse()
        .map_err(|_| IdentityError::Answer("the token is not a valid header value".into()))?;
    request.metadata_mut().insert("authorization", value);
    let answer = IstioCertificateServiceClient::new(channel)
        .create_certificate(request)
        .await?
        .into_inner();
    certificate(answer.cert_chain, &key, &settings.spiffe_id)
}

/// Checks pilot's chain (workload certificate first, root last) against the key and identity asked for.
fn certificate(
    chain: Vec<String>,
    key: &KeyPair,
    spiffe_id: &str,
) -> Result<Certificate, IdentityError> {
    use rcgen::PublicKeyData;
    use x509_parser::extensions::GeneralName;
    let bad = |why: String| IdentityError::Answer(why);
    let leaf_pem = chain
        .first()
        .ok_or_else(|| bad("an empty certificate chain".into()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes())
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    let leaf = pem
        .parse_x509()
        .map_err(|e| bad(format!("not a certificate: {e}")))?;
    if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(bad("the certificate is not for this proxy's key".into()));
    }
    let names: Vec<String> = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names != [spiffe_id] {
        return Err(bad(format!(
            "the certificate names {names:?}, not {spiffe_id:?}"
        )));
    }
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    let (not_before, not_after) = (
        time(leaf.validity().not_before),
        time(leaf.validity().not_after),
    );
    // The root is the trust anchor the proxy was given, not what came back.
    let issuers = chain.len().saturating_sub(1).max(1);
    Ok(Certificate {
        chain_pem: chain[..issuers].concat(),
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
        received: SystemTime::now(),
    })
}

/// The identity's stats (`workload_cert.*`).
#[derive(Clone, Debug)]
struct IdentityStats {
    issued: Counter,
    failed: Counter,
    expiry: Gauge,
}

/// Where a fresh certificate goes: the proxy's store, or the agent's SDS server. An error (the certificate
/// does not make a TLS configuration) is logged and the certificate asked for again.
pub type Sink = Arc<dyn Fn(&Certificate) -> Result<(), String> + Send + Sync>;

/// A sink installing the certificate in the proxy's own store as the secrets `default` and `ROOTCA`.
pub fn into_store(store: SharedStore, root_pem: String) -> Sink {
    Arc::new(move |cert: &Certificate| store.lock().set_local_secrets(cert.secrets(&root_pem)))
}

/// Obtains the certificate and keeps it fresh in `sink` until the task is dropped: renewed at half its
/// lifetime, retried with backoff (1 s doubling to 30 s) while pilot cannot give one. Supervised as
/// `workload-certificate` under `health`.
pub fn run(settings: Settings, sink: Sink, stats: &Arc<Stats>, health: Arc<TaskHealth>) {
    let stats = IdentityStats {
        issued: stats.counter(&Scope::Server, "workload_cert.issued"),
        failed: stats.counter(&Scope::Server, "workload_cert.failed"),
        expiry: stats.gauge(&Scope::Server, "workload_cert.expiry_timestamp_seconds"),
    };
    let settings = Arc::new(settings);
    sextant_supervise::restarting("workload-certificate", health, move || {
        let (settings, sink, stats) = (settings.clone(), sink.clone(), stats.clone());
        async move { keep_fresh(&settings, &sink, &stats).await }
    });
}

async fn keep_fresh(settings: &Settings, sink: &Sink, stats: &IdentityStats) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match obtain(settings).await {
            Ok(cert) => {
                backoff = Duration::from_secs(1);
                match sink(&cert) {
                    Ok(()) => {
                        stats.issued.inc();
                        let expiry = cert
                            .not_after
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        stats.expiry.set(i64::try_from(expiry).unwrap_or(i64::MAX));
                        tracing::info!(identity = %settings.spiffe_id, not_after = ?cert.not_after, "workload certificate installed");
                        let wait = cert
                            .renew_at()
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
                        continue;
                    }
                    Err(e) => {
                        stats.failed.inc();
                        tracing::error!(error = %e, "the workload certificate does not make a TLS configuration");
                    }
                }
            }
            Err(e) => {
                stats.failed.inc();
                let error = proxy_xds::connect::with_causes(&e);
                tracing::warn!(identity = %settings.spiffe_id, %error, retry_in = ?backoff, "no workload certificate");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, Issuer};

    const ID: &str = "spiffe://cluster.local/ns/shop/sa/web";

    /// A root, and a chain `[leaf, root]` for `key` naming `id`, as pilot answers.
    fn chain_for(key: &KeyPair, id: &str) -> Vec<String> {
        let root_key = KeyPair::generate().expect("root key");
        let mut root = CertificateParams::default();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_pem = root.self_signed(&root_key).expect("root").pem();
        let issuer = Issuer::from_ca_cert_pem(&root_pem, root_key).expect("issuer");
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = DistinguishedName::new();
        leaf.subject_alt_names = vec![SanType::URI(id.try_into().expect("uri"))];
        vec![leaf.signed_by(key, &issuer).expect("leaf").pem(), root_pem]
    }

    #[test]
    fn pilots_answer_is_taken_only_for_this_key_and_identity() {
        let key = KeyPair::generate().expect("key");
        let cert = certificate(chain_for(&key, ID), &key, ID).expect("taken");
        assert!(cert.not_after > cert.not_before);
        assert!(cert.renew_at() > cert.received, "renewed after it came");
        assert!(cert.renew_at() < cert.not_after);
        assert_eq!(
            cert.chain_pem.matches("BEGIN CERTIFICATE").count(),
            1,
            "the root is the proxy's own trust anchor, not pilot's word"
        );
        let secrets = cert.secrets("ROOT PEM");
        assert_eq!(secrets[0].name, CERTIFICATE_SECRET);
        assert_eq!(secrets[1].value, SecretValue::Roots(b"ROOT PEM".to_vec()));

        let other_key = KeyPair::generate().expect("key");
        let e = certificate(chain_for(&other_key, ID), &key, ID).expect_err("another key");
        assert!(e.to_string().contains("not for this proxy's key"), "{e}");
        let e = certificate(
            chain_for(&key, "spiffe://cluster.local/ns/shop/sa/admin"),
            &key,
            ID,
        )
        .expect_err("another identity");
        assert!(
            e.to_string()
                .contains("not \"spiffe://cluster.local/ns/shop/sa/web\""),
            "{e}"
        );
        assert!(certificate(Vec::new(), &key, ID).is_err());
    }
}
