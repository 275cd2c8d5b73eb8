//! TLS for the proxy with rustls: client and server configurations built from a cluster's or filter chain's
//! TLS context (certificates and roots from files, inline, or SDS secrets), peer verification by roots and
//! SAN matchers (the SPIFFE identities of the mesh) as Envoy does it, ClientHello inspection (SNI, ALPN)
//! without consuming the connection's bytes, and the identity a downstream peer's certificate names (URI and
//! DNS SANs, subject), which network RBAC's `authenticated` principals match.
//!
//! Envoy's semantics kept: an upstream context without a validation context verifies nothing; one with a
//! validation context checks the chain against its roots and, when SAN matchers are given, that one matches
//! (never the SNI against the certificate's names).

mod hello;
mod identity;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use proxy_config::secret::{Secret, SecretValue};
use proxy_config::tls::{Certificate, DownstreamTls, Source, TlsContext, UpstreamTls};
use proxy_stats::Counter;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use hello::{Hello, MAX_HELLO_BYTES, client_hello};
pub use identity::{PeerIdentity, peer_identity};
pub use rustls;

/// The SDS secrets held, by name.
pub type Secrets = BTreeMap<String, Arc<Secret>>;

/// Why a configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unready {
    /// An SDS secret it needs has not arrived (the configuration is built again when it does).
    Waiting(String),
    /// A file is missing or does not parse, or the material is unusable.
    Invalid(String),
}

impl std::fmt::Display for Unready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unready::Waiting(name) => write!(f, "waiting for SDS secret {name:?}"),
            Unready::Invalid(why) => f.write_str(why),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client configuration of an upstream TLS context; `fail_verify_san` counts peers refused for their SANs.
pub fn client_config(
    tls: &UpstreamTls,
    secrets: &Secrets,
    fail_verify_san: Counter,
) -> Result<Arc<ClientConfig>, Unready> {
    let provider = provider();
    let ctx = &tls.context;
    let (roots, sans) = match &ctx.validation {
        None => (None, Vec::new()),
        Some(v) => (Some(roots(&v.roots, secrets)?), v.sans.clone()),
    };
    let verifier = Arc::new(verify::Peer::new(
        roots,
        sans,
        provider.clone(),
        fail_verify_san,
    ));
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Unready::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match certificate(ctx, secrets)? {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| Unready::Invalid(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = ctx.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server configuration of a downstream TLS context.
pub fn server_config(
    tls: &DownstreamTls,
    secrets: &Secrets,
    fail_verify_san: Counter,
) -> Result<ServerTls, Unready> {
    let with_alpn = server_config_with_alpn(tls, secrets, fail_verify_san)?;
    let mut without = (*with_alpn).clone();
    without.alpn_protocols.clear();
    Ok(ServerTls {
        with_alpn,
        without_alpn: Arc::new(without),
    })
}

/// A server configuration, and the same without ALPN for clients offering none of its protocols: rustls
/// refuses such a handshake (RFC 7301's `no_application_protocol`) where Envoy carries on without ALPN, and
/// mesh clients offer `istio` protocols a gateway's `h2`/`http/1.1` list does not contain.
#[derive(Debug, Clone)]
pub struct ServerTls {
    with_alpn: Arc<ServerConfig>,
    without_alpn: Arc<ServerConfig>,
}

impl ServerTls {
    /// The configuration for a client offering `offered` ALPN protocols (`None`: no ALPN extension).
    pub fn for_client<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> Arc<ServerConfig> {
        let ours = &self.with_alpn.alpn_protocols;
        let agree =
            ours.is_empty() || offered.is_none_or(|mut o| o.any(|p| ours.iter().any(|q| q == p)));
        if agree {
            self.with_alpn.clone()
        } else {
            self.without_alpn.clone()
        }
    }
}

fn server_config_with_alpn(
    tls: &DownstreamTls,
    secrets: &Secrets,
    fail_verify_san: Counter,
) -> Result<Arc<ServerConfig>, Unready> {
    let provider = provider();
    let ctx = &tls.context;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Unready::Invalid(e.to_string()))?;
    let builder = match &ctx.validation {
        None => builder.with_no_client_auth(),
        Some(v) => {
            let verifier = verify::client_verifier(
                roots(&v.roots, secrets)?,
                v.sans.clone(),
                tls.require_client_certificate,
                provider,
                fail_verify_san,
            )
            .map_err(Unready::Invalid)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let Some((chain, key)) = certificate(ctx, secrets)? else {
        return Err(Unready::Invalid("a server needs a certificate".into()));
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| Unready::Invalid(format!("server certificate: {e}")))?;
    config.alpn_protocols = ctx.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(Arc::new(config))
}

/// PEM bytes from `source`; `part` says which part of a certificate secret (chain or key) is meant.
fn bytes(source: &Source, secrets: &Secrets, part: Part) -> Result<Vec<u8>, Unready> {
    match source {
        Source::Inline(b) => Ok(b.clone()),
        Source::File(path) => {
            std::fs::read(path).map_err(|e| Unready::Invalid(format!("{}: {e}", path.display())))
        }
        Source::Sds(name) => {
            let secret = secrets
                .get(name)
                .ok_or_else(|| Unready::Waiting(name.clone()))?;
            match (&secret.value, part) {
                (SecretValue::Certificate { chain, .. }, Part::Chain) => Ok(chain.clone()),
                (SecretValue::Certificate { key, .. }, Part::Key) => Ok(key.clone()),
                (SecretValue::Roots(roots), Part::Roots) => Ok(roots.clone()),
                _ => Err(Unready::Invalid(format!(
                    "SDS secret {name:?} holds the wrong kind of material"
                ))),
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Part {
    Chain,
    Key,
    Roots,
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Unready> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Unready::Invalid(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(Unready::Invalid(format!("{what}: no PEM certificate")));
    }
    Ok(certs)
}

fn certificate(
    ctx: &TlsContext,
    secrets: &Secrets,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, Unready> {
    let (chain, key) = match &ctx.certificate {
        None => return Ok(None),
        Some(Certificate::Pair { chain, key }) => (
            bytes(chain, secrets, Part::Chain)?,
            bytes(key, secrets, Part::Key)?,
        ),
        Some(Certificate::Sds(name)) => {
            let source = Source::Sds(name.clone());
            (
                bytes(&source, secrets, Part::Chain)?,
                bytes(&source, secrets, Part::Key)?,
            )
        }
    };
    let chain = certificates(&chain, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| Unready::Invalid(format!("private key: {e}")))?;
    Ok(Some((chain, key)))
}

fn roots(source: &Source, secrets: &Secrets) -> Result<Arc<RootCertStore>, Unready> {
    let pem = bytes(source, secrets, Part::Roots)?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certificates(&pem, "trusted CA")?);
    if added == 0 {
        return Err(Unready::Invalid("trusted CA: no usable certificate".into()));
    }
    Ok(Arc::new(store))
}
