//! A request overriding a TLS cluster's ALPN list (the filter state's `envoy.network.application_protocols`)
//! goes over a connection whose handshake offered that list, and connections are pooled by the list offered:
//! one opened for the override never carries a request without it, nor the other way round — what a mesh
//! server choosing its filter chain by ALPN depends on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use proxy_balance::{Alpn, Body, Cluster};
use proxy_config::cluster::{self as config, Discovery, HttpOptions, LbPolicy, Limits, Protocol};
use proxy_config::endpoint::{Endpoint, Locality};
use proxy_config::tls::{TlsContext, UpstreamTls};
use proxy_stats::Stats;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tls/tests/fixtures");
/// What the cluster offers on its own: mesh mTLS for TCP.
const CLUSTER_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("a fixture (proxy/tls/tests/fixtures)")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server answering each HTTP/1.1 request (keep-alive) with `CONNECTION ALPN`: the number of the
/// connection (in the order accepted) and the ALPN list its client offered.
async fn server() -> SocketAddr {
    let chain = vec![CertificateDer::from_pem_slice(&fixture("server.pem")).expect("certificate")];
    let key = PrivateKeyDer::from_pem_slice(&fixture("server.key")).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let start = tokio_rustls::LazyConfigAcceptor::new(Default::default(), tcp).await?;
                let offered: Vec<String> = (start.client_hello().alpn())
                    .into_iter()
                    .flatten()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
                let mut tls = start.into_stream(config).await?;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let read = tls.read(&mut chunk).await?;
                        if read == 0 {
                            return Ok::<_, std::io::Error>(());
                        }
                        buf.extend_from_slice(&chunk[..read]);
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    buf.drain(..end);
                    let body = format!("{n} {}", offered.join(","));
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    tls.write_all(response.as_bytes()).await?;
                }
            });
        }
    });
    addr
}

fn cluster(to: SocketAddr) -> Cluster {
    let config = config::Cluster {
        name: "outbound|80||web.shop.svc.cluster.local".into(),
        discovery: Discovery::Static(vec![Locality {
            name: Default::default(),
            weight: 1,
            endpoints: vec![Endpoint {
                address: to,
                weight: 1,
                healthy: true,
            }],
        }]),
        connect_timeout: Duration::from_secs(5),
        lb: LbPolicy::RoundRobin,
        limits: Limits::default(),
        protocol: Protocol::Http1,
        http: HttpOptions::default(),
        outlier: None,
        panic_threshold: 50.0,
        tls: Some(UpstreamTls {
            context: TlsContext {
                certificate: None,
                validation: None,
                alpn: CLUSTER_ALPN.map(String::from).to_vec(),
            },
            sni: "localhost".into(),
        }),
        bind: None,
    };
    let cluster = Cluster::new(config, &Stats::new());
    // What the proxy's state builds from the context: the server checked against the fixtures' CA, the
    // cluster's ALPN offered.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&fixture("ca.pem")).expect("CA"))
        .expect("a root");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = CLUSTER_ALPN.iter().map(|p| p.as_bytes().to_vec()).collect();
    cluster.set_tls(Some(Arc::new(tls)));
    cluster
}

/// `GET /` through `cluster`, offering `alpn` when given: the server's answer.
async fn get(cluster: &Cluster, alpn: Option<&Alpn>) -> String {
    let host = cluster.choose(None, None, 1, |_| false).expect("a host");
    let request = http::Request::builder()
        .uri("http://web.shop.svc.cluster.local/")
        .body(Body::Empty)
        .expect("request");
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        cluster.send_offering(&host, request, alpn),
    )
    .await
    .expect("in time")
    .expect("a response");
    let body = response.into_body().collect().await.expect("body");
    String::from_utf8_lossy(&body.to_bytes()).into_owned()
}

#[tokio::test]
async fn connections_offer_the_overriding_alpn_and_are_pooled_apart() {
    let cluster = cluster(server().await);
    let http11: Alpn = ["istio-http/1.1", "istio", "http/1.1"]
        .map(String::from)
        .to_vec()
        .into();
    let h2: Alpn = ["istio-h2", "istio", "h2"]
        .map(String::from)
        .to_vec()
        .into();
    let mesh_http = "istio-http/1.1,istio,http/1.1";
    assert_eq!(get(&cluster, Some(&http11)).await, format!("0 {mesh_http}"));
    // Without the override: the cluster's list, on a connection of its own (the idle one offered another).
    assert_eq!(get(&cluster, None).await, "1 istio-peer-exchange,istio");
    // Each list back on its own connection.
    assert_eq!(get(&cluster, Some(&http11)).await, format!("0 {mesh_http}"));
    assert_eq!(get(&cluster, None).await, "1 istio-peer-exchange,istio");
    // Another list: another connection.
    assert_eq!(get(&cluster, Some(&h2)).await, "2 istio-h2,istio,h2");
    assert_eq!(get(&cluster, Some(&http11)).await, format!("0 {mesh_http}"));
    assert_eq!(cluster.stats().cx_total.get(), 3);
}
