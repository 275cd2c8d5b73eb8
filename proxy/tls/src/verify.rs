//! Peer certificate verification: the chain against the context's roots, then its SANs against the
//! context's matchers (DNS or URI, any one matching), never the SNI against the certificate's names.

use std::sync::Arc;

use proxy_config::tls::SanMatcher;
use proxy_stats::Counter;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Whether the certificate carries a SAN some matcher accepts (true when there are no matchers).
fn sans_match(end_entity: &CertificateDer<'_>, matchers: &[SanMatcher]) -> Result<bool, Error> {
    if matchers.is_empty() {
        return Ok(true);
    }
    let (_, cert) = X509Certificate::from_der(end_entity)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return Ok(false);
    };
    Ok(sans.value.general_names.iter().any(|name| {
        let (uri, value) = match name {
            GeneralName::URI(v) => (true, *v),
            GeneralName::DNSName(v) => (false, *v),
            _ => return false,
        };
        matchers
            .iter()
            .any(|m| m.uri == uri && m.matcher.matches(value))
    }))
}

/// Verifies an upstream's certificate by roots and SANs.
#[derive(Debug)]
pub(crate) struct Peer {
    /// `None`: any certificate (an upstream context without a validation context, as in Envoy).
    roots: Option<Arc<RootCertStore>>,
    sans: Vec<SanMatcher>,
    provider: Arc<CryptoProvider>,
    fail_verify_san: Counter,
}

impl Peer {
    pub(crate) fn new(
        roots: Option<Arc<RootCertStore>>,
        sans: Vec<SanMatcher>,
        provider: Arc<CryptoProvider>,
        fail_verify_san: Counter,
    ) -> Peer {
        Peer {
            roots,
            sans,
            provider,
            fail_verify_san,
        }
    }
}

impl ServerCertVerifier for Peer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if !sans_match(end_entity, &self.sans)? {
            self.fail_verify_san.inc();
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client-certificate verifier by roots (webpki) and, when given, SAN matchers.
pub(crate) fn client_verifier(
    roots: Arc<RootCertStore>,
    sans: Vec<SanMatcher>,
    required: bool,
    provider: Arc<CryptoProvider>,
    fail_verify_san: Counter,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider);
    if !required {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder
        .build()
        .map_err(|e| format!("client verification: {e}"))?;
    if sans.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(ClientSans {
        inner,
        sans,
        fail_verify_san,
    }))
}

#[derive(Debug)]
struct ClientSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<SanMatcher>,
    fail_verify_san: Counter,
}

impl ClientCertVerifier for ClientSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if !sans_match(end_entity, &self.sans)? {
            self.fail_verify_san.inc();
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
