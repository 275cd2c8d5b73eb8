//! Connections to pilot: plain text, or TLS checked against the mesh's root (pilot's secure port, as
//! istiod's 15012), with `SO_MARK` when the proxy's own traffic must bypass interception. Both the xDS
//! client and the certificate client connect this way.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::{Channel, Endpoint};

/// TLS to pilot.
#[derive(Clone, Debug)]
pub struct PilotTls {
    /// The client configuration: the mesh root as the only trust anchor, ALPN `h2`.
    pub config: Arc<rustls::ClientConfig>,
    /// The name pilot's certificate must carry (Istio's `istiod.istio-system.svc`).
    pub server_name: ServerName<'static>,
}

impl PilotTls {
    /// TLS trusting only the certificates of `root_pem` (PEM), expecting pilot to be `server_name`.
    pub fn new(root_pem: &[u8], server_name: &str) -> Result<PilotTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_slice_iter(root_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the mesh root is not PEM: {e}"))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err("the mesh root holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("pilot's name {server_name:?}: {e}"))?;
        Ok(PilotTls {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// A gRPC channel to `endpoint` (`http://HOST:PORT`, or `https://` with `tls`), its socket marked with `mark`.
pub async fn channel(
    endpoint: &str,
    mark: Option<u32>,
    tls: Option<&PilotTls>,
) -> Result<Channel, tonic::transport::Error> {
    // TLS is this connector's, so tonic always sees plain HTTP/2.
    let plain = match endpoint.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => endpoint.to_string(),
    };
    let endpoint = Endpoint::from_shared(plain)?;
    let tls = tls.cloned();
    let connector = tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or("localhost")
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().unwrap_or(80);
            let address = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
            let socket = if address.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(mark) = mark {
                socket2::SockRef::from(&socket).set_mark(mark)?;
            }
            let stream = socket.connect(address).await?;
            stream.set_nodelay(true)?;
            let io: Box<dyn Io> = match tls {
                None => Box::new(stream),
                Some(tls) => {
                    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                    Box::new(connector.connect(tls.server_name.clone(), stream).await?)
                }
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
        }
    });
    endpoint.connect_with_connector(connector).await
}

/// An error with its causes, `outer: cause: root cause` (a transport error says why: refused, TLS unknown
/// issuer, …).
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
