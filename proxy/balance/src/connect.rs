//! Upstream connections: TCP within the connect timeout, then TLS when the cluster originates it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::{Error, Shared};

/// An ALPN list replacing the cluster's on a TLS handshake.
pub type Alpn = proxy_config::filter_state::Alpn;

/// An upstream connection: plain or TLS.
#[derive(Debug)]
pub enum Io {
    /// Plain text.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The `SO_MARK` every upstream socket carries (Istio's 1337: interception lets them through), if set.
static MARK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Marks every upstream connection of the process with `mark` (`SO_MARK`, which needs `CAP_NET_ADMIN`); set
/// once, before the first connection.
pub fn set_upstream_mark(mark: u32) {
    let _ = MARK.set(mark);
}

async fn tcp(address: SocketAddr, bind: Option<std::net::IpAddr>) -> io::Result<TcpStream> {
    let mark = MARK.get();
    if mark.is_none() && bind.is_none() {
        return TcpStream::connect(address).await;
    }
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(mark) = mark {
        socket2::SockRef::from(&socket).set_mark(*mark)?;
    }
    // A source of the other family (127.0.0.6 for an IPv6 destination) is left out, as Envoy does.
    if let Some(ip) = bind.filter(|ip| ip.is_ipv4() == address.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(address).await
}

/// Connects to `address` within the cluster's connect timeout (TCP and, when the cluster originates TLS,
/// the handshake, offering `alpn` instead of the cluster's ALPN list when given), counting attempts,
/// failures and handshakes in the cluster's stats.
pub(crate) async fn connect(
    address: SocketAddr,
    alpn: Option<&Alpn>,
    shared: &Shared,
) -> Result<Io, Error> {
    shared.stats.cx_total.inc();
    let tls = if shared.originates_tls {
        let config = shared
            .tls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match config {
            Some(c) => Some(match alpn {
                Some(alpn) => {
                    let mut c = (*c).clone();
                    c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
                    Arc::new(c)
                }
                None => c,
            }),
            None => {
                shared.stats.cx_connect_fail.inc();
                return Err(Error::ConnectFailure(format!(
                    "{address}: TLS credentials not received yet"
                )));
            }
        }
    } else {
        None
    };
    let attempt = async {
        let stream = tcp(address, shared.bind)
            .await
            .map_err(|e| (false, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Io::Plain(stream));
        };
        // Without an SNI, the server name is the host's IP, which rustls does not send.
        let name = ServerName::try_from(shared.sni.clone())
            .unwrap_or_else(|_| ServerName::IpAddress(address.ip().into()));
        let tls = TlsConnector::from(Arc::clone(&config))
            .connect(name, stream)
            .await
            .map_err(|e| (true, e.to_string()))?;
        shared.stats.ssl_handshake.inc();
        Ok(Io::Tls(Box::new(tls)))
    };
    match tokio::time::timeout(shared.connect_timeout, attempt).await {
        Ok(Ok(io)) => Ok(io),
        Ok(Err((handshake, e))) => {
            shared.stats.cx_connect_fail.inc();
            if handshake {
                shared.stats.ssl_connection_error.inc();
            }
            Err(Error::ConnectFailure(format!("{address}: {e}")))
        }
        Err(_) => {
            shared.stats.cx_connect_fail.inc();
            shared.stats.cx_connect_timeout.inc();
            Err(Error::ConnectFailure(format!(
                "{address}: timed out after {:?}",
                shared.connect_timeout
            )))
        }
    }
}
