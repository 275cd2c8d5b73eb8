//! TLS connections for tonic servers (pilot's secure port and webhook, the hub's gRPC port): accepted, their
//! handshakes run each in a task of its own (a slow or silent client delays nobody, and is dropped after
//! [`HANDSHAKE_TIMEOUT`]), at most [`MAX_HANDSHAKES`] at once, and handed to the gRPC server as a stream.
//! Handlers find the connection's [`PeerInfo`] in a request's extensions: its addresses and, when the client
//! presented a certificate the server verified, the SPIFFE ID it names.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at most; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 1024;

/// What handlers know of the connection a request came on.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its addresses.
    pub tcp: TcpConnectInfo,
    /// The SPIFFE ID (`spiffe://TRUST_DOMAIN/ns/NS/sa/SA`) of the certificate the client presented, when it
    /// presented one that the server verified and that names one.
    pub identity: Option<Arc<str>>,
}

/// A TLS connection; to gRPC's handlers, its [`PeerInfo`].
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    identity: Option<Arc<str>>,
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            tcp: self.stream.get_ref().0.connect_info(),
            identity: self.identity.clone(),
        }
    }
}

/// A serving certificate from PEM: the chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1), the
/// key loaded by `provider` and checked to be the leaf's. An error says which part is at fault.
pub fn certified_key(
    chain_pem: &[u8],
    key_pem: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, KeyError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyError::Chain(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(KeyError::Chain("no certificate in it".to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| KeyError::Key(format!("no PEM private key: {e}")))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| KeyError::Key(format!("unusable key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| KeyError::Key(format!("not the certificate's key: {e}")))?;
    Ok(Arc::new(certified))
}

/// Why [`certified_key`] failed: the chain or the key.
#[derive(Debug)]
pub enum KeyError {
    /// The certificate chain is at fault.
    Chain(String),
    /// The private key is at fault.
    Key(String),
}

/// The SPIFFE ID a DER certificate names in its URI subject alternative names, if one.
pub fn spiffe_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
            Some(uri.to_string())
        }
        _ => None,
    })
}

/// The namespace of a SPIFFE ID of Istio's shape (`spiffe://TD/ns/NS/sa/SA`).
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let path = id.strip_prefix("spiffe://")?.split_once('/')?.1;
    let mut parts = path.split('/');
    match (parts.next(), parts.next()) {
        (Some("ns"), Some(ns)) if !ns.is_empty() => Some(ns),
        _ => None,
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The TLS connections accepted on `listener`, until the stream is dropped.
pub fn accept(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<TlsConnection, std::io::Error>> {
    let (tx, rx) = mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "TLS port: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        drop(permit);
                        // Verified by the server's client verifier, when it has one.
                        let identity = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| spiffe_id(leaf))
                            .map(Arc::from);
                        let _ = tx.send(Ok(TlsConnection { stream, identity })).await;
                    }
                    // A client that does not trust the server's root, or whose certificate is refused, ends here.
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_and_their_namespace_are_read_from_a_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://cluster.local/ns/shop/sa/reviews")
                .expect("uri"),
        ));
        let cert = params.self_signed(&key).expect("cert");
        let id = spiffe_id(cert.der()).expect("a SPIFFE ID");
        assert_eq!(id, "spiffe://cluster.local/ns/shop/sa/reviews");
        assert_eq!(spiffe_namespace(&id), Some("shop"));
        assert_eq!(spiffe_namespace("spiffe://td/other/x"), None);
        let plain = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert_eq!(spiffe_id(plain.der()), None);
    }
}
