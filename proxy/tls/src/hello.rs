//! Envoy's `tls_inspector`: whether a new connection starts with a TLS ClientHello and, if so, its SNI and
//! ALPN, told from the connection's first bytes. The listener peeks at them (they stay in the socket for
//! whichever chain takes the connection) and asks again as more arrive.

use rustls::server::Acceptor;

/// The most bytes read to find a ClientHello (a record is at most 16 KiB plus its header).
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;

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

/// What `first`, a connection's first bytes, say: `None` while they could be the start of a ClientHello not
/// yet complete. Given [`MAX_HELLO_BYTES`] bytes it always answers.
pub fn client_hello(first: &[u8]) -> Option<Hello> {
    // A TLS handshake record starts with content type 22.
    if *first.first()? != 0x16 {
        return Some(Hello::Plain);
    }
    let mut acceptor = Acceptor::default();
    let mut reader = first;
    if acceptor.read_tls(&mut reader).is_err() {
        return Some(Hello::Plain);
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => {
            let hello = accepted.client_hello();
            Some(Hello::Tls {
                sni: hello.server_name().map(str::to_ascii_lowercase),
                alpn: hello
                    .alpn()
                    .map(|protocols| {
                        protocols
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
        Ok(None) if first.len() < MAX_HELLO_BYTES => None,
        // Not a ClientHello rustls can read: leave it to the chains for plain text.
        _ => Some(Hello::Plain),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    use super::{Hello, MAX_HELLO_BYTES, client_hello};

    fn hello_bytes(sni: &str, alpn: &[&[u8]]) -> Vec<u8> {
        let mut config = ClientConfig::builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_string()).expect("a DNS name");
        let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).expect("ClientHello");
        bytes
    }

    #[test]
    fn a_client_hello_tells_its_sni_and_alpn_once_whole() {
        let bytes = hello_bytes("Reviews.Example", &[b"h2", b"http/1.1"]);
        for end in 1..bytes.len() {
            assert_eq!(client_hello(&bytes[..end]), None, "{end} bytes");
        }
        assert_eq!(
            client_hello(&bytes),
            Some(Hello::Tls {
                sni: Some("reviews.example".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
            })
        );
    }

    #[test]
    fn anything_else_is_plain_text() {
        assert_eq!(client_hello(b""), None);
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Some(Hello::Plain));
        // A handshake record that never completes within the bound.
        let mut big = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        big.resize(MAX_HELLO_BYTES, 0);
        assert_eq!(client_hello(&big), Some(Hello::Plain));
    }
}
