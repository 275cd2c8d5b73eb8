//! Envoy's `tls_inspector`: whether a new connection starts with a TLS ClientHello and, if so, its SNI and
//! ALPN, read by peeking (the bytes stay in the socket for whichever chain takes the connection).

use std::time::Duration;

use rustls::server::Acceptor;
use tokio::net::TcpStream;

/// The most bytes read to find a ClientHello (a record is at most 16 KiB plus its header).
const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;
/// How often the socket is peeked again while a ClientHello is incomplete.
const PEEK_AGAIN: Duration = Duration::from_millis(2);

/// What a connection starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A TLS ClientHello.
    Tls {
        /// The server name asked for, lower case.
        sni: Option<String>,
        /// The ALPN protocols offered.
        alpn: Vec<String>,
    },
    /// Something else (plain text).
    Plain,
}

/// Peeks at `stream` until it shows a whole ClientHello, something that is not TLS, or `wait` passes
/// (`None`: the client sent too little in time, or closed).
pub async fn inspect(stream: &TcpStream, wait: Duration) -> Option<Hello> {
    let mut buf = vec![0u8; MAX_HELLO_BYTES];
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = 0;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        // A TLS handshake record starts with content type 22.
        if buf[0] != 0x16 {
            return Some(Hello::Plain);
        }
        if n > seen {
            seen = n;
            let mut acceptor = Acceptor::default();
            let mut reader = &buf[..n];
            if acceptor.read_tls(&mut reader).is_err() {
                return Some(Hello::Plain);
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    return Some(Hello::Tls {
                        sni: hello.server_name().map(str::to_ascii_lowercase),
                        alpn: hello
                            .alpn()
                            .map(|protocols| {
                                protocols
                                    .map(|p| String::from_utf8_lossy(p).into_owned())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
                Ok(None) if n < MAX_HELLO_BYTES => {}
                // Not a ClientHello rustls can read: leave it to the chains for plain text.
                _ => return Some(Hello::Plain),
            }
        }
        // Incomplete: the peek returns the same bytes until more arrive.
        if tokio::time::Instant::now() + PEEK_AGAIN >= deadline {
            return None;
        }
        tokio::time::sleep(PEEK_AGAIN).await;
    }
}
