//! Pilot's mesh certificate authority: the workload certificates behind `ISTIO_MUTUAL`.
//!
//! Each workload identity is a SPIFFE ID, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
//! [`Authority::certificate`] issues an identity a certificate whose only name is that URI
//! (subject empty, SAN critical, as Istio's), an ECDSA P-256 key, client and server use, valid for the
//! configured lifetime (24 h by default). A certificate is handed out again until half its lifetime has
//! passed; then the next request gets a fresh one, and [`Authority::next_refresh_after`] says when that is
//! due so the server can push it before the old one expires.
//!
//! The signing certificate comes either from a directory laid out as Istio's plugged-in CA
//! (`ca-cert.pem`, `ca-key.pem`, optional `root-cert.pem` and `cert-chain.pem`; [`Authority::from_dir`]) or
//! is a self-signed root made at start ([`Authority::self_signed`]), which `from_dir` writes into an empty
//! directory (`ca-cert.pem`, `ca-key.pem`, and `root-cert.pem` for the proxies) so that restarts keep the
//! trust root.
//!
//! A key [`Authority::certificate`] makes travels to the proxy in an SDS secret over the xDS connection, so
//! that connection must be trusted (pilot listens on loopback by default). A workload that keeps its key
//! sends a certificate signing request instead ([`Authority::sign_csr`]: Istio's `CreateCertificate`), and
//! gets the same certificate for its own key, once the caller is known to have the identity it asks for
//! (a request for any other identity is [`CaError::OtherIdentity`]). Pilot's own TLS certificate, for the
//! port proxies reach it on over TLS, comes from [`Authority::serving_certificate`]. Issued certificates
//! are bounded ([`MAX_IDENTITIES`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The trust domain of a mesh that names none (Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// How long a workload certificate is valid unless configured otherwise (Istio's default).
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// The shortest workload certificate lifetime accepted (renewal happens at half of it).
pub const MIN_WORKLOAD_TTL: Duration = Duration::from_secs(10);
/// Identities with a certificate kept at most; beyond, the oldest is forgotten (and issued anew when asked).
pub const MAX_IDENTITIES: usize = 10_000;
/// How long a self-signed root is valid.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back a certificate's validity starts, for clocks slightly behind pilot's.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// File names of a plugged-in CA directory (Istio's `cacerts` layout).
pub mod files {
    /// The certificate that signs workload certificates.
    pub const CA_CERT: &str = "ca-cert.pem";
    /// Its private key (PKCS #8 PEM).
    pub const CA_KEY: &str = "ca-key.pem";
    /// The trust root proxies verify peers against (default: the CA certificate itself).
    pub const ROOT_CERT: &str = "root-cert.pem";
    /// The chain from the CA certificate up to the root, appended to every workload certificate.
    pub const CERT_CHAIN: &str = "cert-chain.pem";
}

/// Why the authority cannot start or issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file of the CA directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file of the CA directory does not hold what its name says.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The directory holds the CA certificate or its key, but not both.
    #[error(
        "{dir}: has {present} but not {missing}; a plugged-in CA needs both (or neither, to have one made)"
    )]
    Incomplete {
        /// The directory.
        dir: PathBuf,
        /// The file found.
        present: &'static str,
        /// The file missing.
        missing: &'static str,
    },
    /// The workload certificate lifetime is too short to renew in time.
    #[error("workload certificate lifetime {0:?}: use at least {MIN_WORKLOAD_TTL:?}")]
    Lifetime(Duration),
    /// The trust domain is not a valid SPIFFE trust domain.
    #[error("trust domain {0:?}: use lowercase letters, digits, '.', '-' and '_'")]
    TrustDomain(String),
    /// The CA certificate is not one for its key, or not a CA certificate.
    #[error("CA certificate: {0}")]
    Certificate(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A certificate signing request that cannot be signed: malformed or badly signed.
    #[error("certificate signing request: {0}")]
    Csr(String),
    /// A well-formed certificate signing request naming another identity than the caller's.
    #[error(
        "certificate signing request: it asks for {asked:?}; the caller may have only {caller:?}"
    )]
    OtherIdentity {
        /// The names the request asks for.
        asked: Vec<String>,
        /// The one identity the caller has.
        caller: String,
    },
}

/// A certificate signed for a workload's own key (the key never left the workload).
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    /// The workload certificate followed by the chain up to (not including) the root, PEM.
    pub chain_pem: String,
    /// When the certificate expires.
    pub not_after: SystemTime,
}

/// A workload's certificate as proxies take it.
#[derive(Debug, PartialEq, Eq)]
pub struct Issued {
    /// The workload certificate followed by the chain up to (not including) the root, PEM.
    pub chain_pem: String,
    /// The workload's private key, PKCS #8 PEM.
    pub key_pem: String,
    /// When the certificate expires.
    pub not_after: SystemTime,
    /// When a fresh certificate replaces it (half its lifetime).
    pub refresh_at: SystemTime,
}

/// Issues and caches workload certificates under one signing certificate.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// PEM of the trust root (SDS `ROOTCA`).
    root_pem: String,
    /// PEM appended to each workload certificate: the signing certificate and its chain, unless it is the root.
    chain_pem: String,
    trust_domain: String,
    ttl: Duration,
    issued: Mutex<HashMap<String, Arc<Issued>>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("trust_domain", &self.trust_domain)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// An authority with a fresh self-signed root, kept in memory only.
    pub fn self_signed(trust_domain: &str, ttl: Duration) -> Result<Authority, CaError> {
        let (cert_pem, key) = make_root(trust_domain)?;
        Authority::new(trust_domain, ttl, &cert_pem, key, None, None)
    }

    /// An authority signing with the CA of `dir` (see [`files`]). An empty or missing directory gets a
    /// self-signed root written into it (the key readable by its owner only), so restarts keep the root.
    pub fn from_dir(dir: &Path, trust_domain: &str, ttl: Duration) -> Result<Authority, CaError> {
        check_trust_domain(trust_domain)?;
        if ttl < MIN_WORKLOAD_TTL {
            return Err(CaError::Lifetime(ttl));
        }
        let cert_path = dir.join(files::CA_CERT);
        let key_path = dir.join(files::CA_KEY);
        match (cert_path.exists(), key_path.exists()) {
            (false, false) if dir.join(files::ROOT_CERT).exists() => Err(CaError::BadFile {
                path: dir.join(files::ROOT_CERT),
                reason: format!(
                    "a trust root without {} and {}: give both, or an empty directory",
                    files::CA_CERT,
                    files::CA_KEY
                ),
            }),
            (false, false) => {
                let (cert_pem, key) = make_root(trust_domain)?;
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                write_private(&key_path, &key.serialize_pem())?;
                std::fs::write(&cert_path, &cert_pem).map_err(io(&cert_path))?;
                // What proxies are given to check pilot and their peers (`--root-cert`), as Istio names it.
                let root_path = dir.join(files::ROOT_CERT);
                std::fs::write(&root_path, &cert_pem).map_err(io(&root_path))?;
                tracing::info!(dir = %dir.display(), "made a self-signed mesh root CA");
                Authority::new(trust_domain, ttl, &cert_pem, key, None, None)
            }
            (true, true) => {
                let cert_pem = read(&cert_path)?;
                let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| CaError::BadFile {
                    path: key_path.clone(),
                    reason: format!("not a PEM private key ({e})"),
                })?;
                let optional = |name: &str| {
                    let p = dir.join(name);
                    p.exists().then(|| read(&p)).transpose()
                };
                let root = optional(files::ROOT_CERT)?;
                let chain = optional(files::CERT_CHAIN)?;
                Authority::new(trust_domain, ttl, &cert_pem, key, root, chain).map_err(
                    |e| match e {
                        CaError::Certificate(reason) => CaError::BadFile {
                            path: cert_path,
                            reason,
                        },
                        other => other,
                    },
                )
            }
            (present, _) => {
                let (present, missing) = if present {
                    (files::CA_CERT, files::CA_KEY)
                } else {
                    (files::CA_KEY, files::CA_CERT)
                };
                Err(CaError::Incomplete {
                    dir: dir.to_path_buf(),
                    present,
                    missing,
                })
            }
        }
    }

    fn new(
        trust_domain: &str,
        ttl: Duration,
        cert_pem: &str,
        key: KeyPair,
        root_pem: Option<String>,
        chain_pem: Option<String>,
    ) -> Result<Authority, CaError> {
        check_trust_domain(trust_domain)?;
        if ttl < MIN_WORKLOAD_TTL {
            return Err(CaError::Lifetime(ttl));
        }
        check_pair(cert_pem, &key)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        // A root file holding the CA certificate itself (a self-signed root this directory was given) is
        // not an issuer to send along.
        let own_root = root_pem
            .as_deref()
            .is_none_or(|root| same_certificates(root, cert_pem));
        let chain_pem = match chain_pem {
            Some(chain) => chain,
            None if own_root => String::new(),
            None => cert_pem.to_string(),
        };
        Ok(Authority {
            issuer,
            root_pem: root_pem.unwrap_or_else(|| cert_pem.to_string()),
            chain_pem,
            trust_domain: trust_domain.to_string(),
            ttl,
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// The mesh's trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust root proxies check peers against, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The certificate of `spiffe_id`: the one issued before while less than half its lifetime has passed,
    /// otherwise a fresh one.
    pub fn certificate(&self, spiffe_id: &str) -> Result<Arc<Issued>, CaError> {
        let now = SystemTime::now();
        if let Some(c) = self.cache().get(spiffe_id)
            && now < c.refresh_at
        {
            return Ok(c.clone());
        }
        let fresh = Arc::new(self.issue(spiffe_id, now)?);
        let mut cache = self.cache();
        if cache.len() >= MAX_IDENTITIES && !cache.contains_key(spiffe_id) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, c)| c.refresh_at)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                cache.remove(&id);
            }
        }
        cache.insert(spiffe_id.to_string(), fresh.clone());
        Ok(fresh)
    }

    /// When the earliest certificate due for replacement later than `after` is, if any. (Certificates due
    /// earlier that nobody asked for again are left alone: their proxies are gone.)
    pub fn next_refresh_after(&self, after: SystemTime) -> Option<SystemTime> {
        self.cache()
            .values()
            .map(|c| c.refresh_at)
            .filter(|t| *t > after)
            .min()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Issued>>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Signs `csr_pem`, a PKCS #10 request made by a workload whose identity the caller established as
    /// `spiffe_id`: the request must be validly signed and name exactly that identity (its one name, a URI
    /// SAN). The certificate is the one [`Authority::certificate`] would issue, for the request's key, valid
    /// for `ttl` when that is shorter than the authority's lifetime (and at least [`MIN_WORKLOAD_TTL`]).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        spiffe_id: &str,
        ttl: Option<Duration>,
    ) -> Result<Signed, CaError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::Csr(format!("not a validly signed PKCS #10 request: {e}")))?;
        let asked: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(uri) => uri.as_str().to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if asked != [spiffe_id] {
            return Err(CaError::OtherIdentity {
                asked,
                caller: spiffe_id.to_string(),
            });
        }
        let now = SystemTime::now();
        let ttl = ttl.map_or(self.ttl, |t| t.clamp(MIN_WORKLOAD_TTL, self.ttl));
        let params = workload_params(spiffe_id, now, ttl)?;
        let signed = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(Signed {
            chain_pem: signed.pem() + &self.chain_pem,
            not_after: now + ttl,
        })
    }

    /// A fresh TLS server certificate (and key) for pilot itself, naming `dns_names` (the first also its
    /// common name), valid for `ttl` from now; never cached. Proxies check it against the same trust root as
    /// their peers' certificates.
    pub fn serving_certificate(
        &self,
        dns_names: &[&str],
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        if let Some(first) = dns_names.first() {
            name.push(DnType::CommonName, *first);
        }
        params.distinguished_name = name;
        params.subject_alt_names = dns_names
            .iter()
            .map(|n| Ok(SanType::DnsName((*n).try_into()?)))
            .collect::<Result<_, rcgen::Error>>()?;
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + ttl).into();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            chain_pem: cert.pem() + &self.chain_pem,
            key_pem: key.serialize_pem(),
            not_after: now + ttl,
            refresh_at: now + ttl / 2,
        })
    }

    fn issue(&self, spiffe_id: &str, now: SystemTime) -> Result<Issued, CaError> {
        let params = workload_params(spiffe_id, now, self.ttl)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            chain_pem: cert.pem() + &self.chain_pem,
            key_pem: key.serialize_pem(),
            not_after: now + self.ttl,
            refresh_at: now + self.ttl / 2,
        })
    }
}

/// Whether two PEM texts hold the same certificates (line breaks and surrounding space aside).
fn same_certificates(a: &str, b: &str) -> bool {
    let strip = |s: &str| s.split_whitespace().collect::<String>();
    strip(a) == strip(b)
}

/// A workload certificate's parameters: `spiffe_id` its only name (subject empty), client and server use,
/// valid from a little before `now` for `ttl`.
fn workload_params(
    spiffe_id: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into()?)];
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + ttl).into();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// A self-signed root for `trust_domain`: its PEM and key.
fn make_root(trust_domain: &str) -> Result<(String, KeyPair), CaError> {
    check_trust_domain(trust_domain)?;
    let now = SystemTime::now();
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, trust_domain);
    name.push(DnType::CommonName, "Sextant mesh root CA");
    params.distinguished_name = name;
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + ROOT_TTL).into();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Checks that `cert_pem` is a CA certificate for `key`.
fn check_pair(cert_pem: &str, key: &KeyPair) -> Result<(), CaError> {
    use rcgen::PublicKeyData;
    let bad = |reason: &str| CaError::Certificate(reason.to_string());
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|_| bad("not a PEM certificate"))?;
    let cert = pem
        .parse_x509()
        .map_err(|_| bad("not an X.509 certificate"))?;
    if cert.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
        return Err(bad("its public key is not the private key's"));
    }
    if !cert.is_ca() {
        return Err(bad(
            "not a CA certificate (basicConstraints CA:TRUE missing)",
        ));
    }
    Ok(())
}

fn check_trust_domain(td: &str) -> Result<(), CaError> {
    let ok = !td.is_empty()
        && td.len() <= 255
        && td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CaError::TrustDomain(td.to_string()))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(text.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests;
