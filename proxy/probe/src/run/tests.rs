//! Each kind of probe against real servers on ports the kernel picks.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use tokio::net::TcpListener;

use super::*;
use crate::parse::{ProbeKind, Probers};

const POD_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The prober of `probe` (Istio's JSON of one probe), through the parser.
fn prober(probe: &str) -> Prober {
    let probers = Probers::parse(&format!(r#"{{"/app-health/app/readyz": {probe}}}"#))
        .unwrap_or_else(|e| panic!("{probe}: {e}"));
    probers
        .get("app", ProbeKind::Readiness)
        .cloned()
        .expect("the probe")
}

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// An application: `/ok` 200, `/fail` 500, `/moved` 302, `/headers` 200 only with the probe's headers.
async fn app() -> u16 {
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [("location", "/elsewhere")]) }),
        )
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                let probe: Vec<&str> = headers
                    .get_all("x-probe")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if h("host") == "app.example" && h("user-agent") == "custom" && probe == ["a", "b"]
                {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                }
            }),
        )
        .route(
            "/defaults",
            get(|headers: HeaderMap| async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
                if h("user-agent").starts_with("kube-probe/") && h("host").starts_with("127.0.0.1:")
                {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                }
            }),
        );
    let (listener, port) = listener().await;
    tokio::spawn(async move { axum::serve(listener, router).await });
    port
}

/// An HTTPS server with a self-signed certificate, answering 200 to everything.
async fn https_app() -> u16 {
    let cert = rcgen::generate_simple_self_signed(vec!["app.example".to_string()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

/// A server that accepts connections and never answers; each accepted connection is announced on the
/// returned channel.
async fn silent() -> (u16, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (listener, port) = listener().await;
    let (accepted, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
            let _ = accepted.send(());
        }
    });
    (port, rx)
}

/// A port where nothing listens (a socket bound without listening holds it: connections are refused).
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .expect("bind");
    let port = socket.local_addr().expect("address").port();
    (socket, port)
}

/// A gRPC server with the health service: `shop.Cart` SERVING, `shop.Sick` NOT_SERVING.
async fn grpc_app() -> u16 {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop.Cart", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("shop.Sick", tonic_health::ServingStatus::NotServing)
        .await;
    let (listener, port) = listener().await;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });
    port
}

#[tokio::test]
async fn http_probes_succeed_on_2xx_and_3xx_only() {
    let port = app().await;
    let run = |path: &str| {
        prober(&format!(
            r#"{{"httpGet": {{"path": "{path}", "port": {port}}}}}"#
        ))
    };
    assert!(run("/ok").run(POD_IP).await.is_ok());
    assert!(run("/moved").run(POD_IP).await.is_ok(), "a redirect");
    assert!(
        run("/defaults").run(POD_IP).await.is_ok(),
        "kubelet-like Host and User-Agent"
    );
    let failed = run("/fail").run(POD_IP).await.expect_err("500");
    assert_eq!(
        failed.to_string(),
        format!("GET http://127.0.0.1:{port}/fail: status 500")
    );
    assert!(matches!(
        run("/nowhere").run(POD_IP).await,
        Err(ProbeError::Status { status: 404, .. })
    ));
}

#[tokio::test]
async fn http_probes_send_the_probes_headers_and_host() {
    let port = app().await;
    let with_headers = prober(&format!(
        r#"{{"httpGet": {{"path": "/headers", "port": {port}, "host": "127.0.0.1", "httpHeaders": [
            {{"name": "Host", "value": "app.example"}}, {{"name": "User-Agent", "value": "custom"}},
            {{"name": "X-Probe", "value": "a"}}, {{"name": "x-probe", "value": "b"}}]}}}}"#
    ));
    // The pod IP is unroutable: the probe's own host is used.
    let elsewhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    assert!(with_headers.run(elsewhere).await.is_ok());
    let without = prober(&format!(
        r#"{{"httpGet": {{"path": "/headers", "port": {port}}}}}"#
    ));
    assert!(matches!(
        without.run(POD_IP).await,
        Err(ProbeError::Status { status: 400, .. })
    ));
}

#[tokio::test]
async fn https_probes_accept_any_certificate() {
    let port = https_app().await;
    let https = prober(&format!(
        r#"{{"httpGet": {{"path": "/", "port": {port}, "scheme": "HTTPS"}}}}"#
    ));
    https
        .run(POD_IP)
        .await
        .expect("a self-signed certificate for another name");
    let plain = prober(&format!(
        r#"{{"httpGet": {{"path": "/", "port": {port}}}}}"#
    ));
    assert!(
        matches!(plain.run(POD_IP).await, Err(ProbeError::Http { .. })),
        "plain HTTP to a TLS port"
    );
    let http_port = app().await;
    let tls_to_plain = prober(&format!(
        r#"{{"httpGet": {{"path": "/ok", "port": {http_port}, "scheme": "HTTPS"}}}}"#
    ));
    let error = tls_to_plain
        .run(POD_IP)
        .await
        .expect_err("TLS to a plain port");
    assert!(matches!(error, ProbeError::Tls { .. }), "{error:?}");
}

#[tokio::test]
async fn tcp_probes_succeed_when_the_connection_is_established() {
    let (listener, open) = listener().await;
    let (_held, closed) = closed_port();
    let probe = |port: u16| prober(&format!(r#"{{"tcpSocket": {{"port": {port}}}}}"#));
    probe(open).run(POD_IP).await.expect("a listening port");
    let refused = probe(closed).run(POD_IP).await.expect_err("a closed port");
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!("cannot connect to 127.0.0.1:{closed}: "))
            && message.contains("refused"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    drop(listener);
}

#[tokio::test]
async fn grpc_probes_ask_the_health_service() {
    let port = grpc_app().await;
    let probe = |service: &str| {
        prober(&format!(
            r#"{{"grpc": {{"port": {port}, "service": "{service}"}}}}"#
        ))
    };
    probe("shop.Cart").run(POD_IP).await.expect("SERVING");
    probe("").run(POD_IP).await.expect("the server as a whole");
    assert_eq!(
        probe("shop.Sick")
            .run(POD_IP)
            .await
            .expect_err("NOT_SERVING")
            .to_string(),
        format!(r#"gRPC health check of 127.0.0.1:{port}: service "shop.Sick" is NOT_SERVING"#)
    );
    let unknown = probe("shop.Gone").run(POD_IP).await.expect_err("unknown");
    assert!(
        unknown
            .to_string()
            .starts_with(&format!("gRPC health check of 127.0.0.1:{port}: NotFound")),
        "{unknown}"
    );
    let (_held, closed) = closed_port();
    let refused = prober(&format!(r#"{{"grpc": {{"port": {closed}}}}}"#))
        .run(POD_IP)
        .await
        .expect_err("a closed port");
    assert!(matches!(refused, ProbeError::Grpc { .. }), "{refused:?}");
    assert!(!refused.to_string().contains('\n'));
    // An HTTP/1.1 server is not a gRPC one.
    let http = app().await;
    let not_grpc = prober(&format!(r#"{{"grpc": {{"port": {http}}}}}"#))
        .run(POD_IP)
        .await
        .expect_err("not gRPC");
    assert!(matches!(not_grpc, ProbeError::Grpc { .. }), "{not_grpc:?}");
}

#[tokio::test]
async fn a_probe_that_gets_no_answer_fails_within_its_timeout() {
    let (port, mut accepted) = silent().await;
    for probe in [
        format!(r#"{{"httpGet": {{"path": "/", "port": {port}}}}}"#),
        format!(r#"{{"httpGet": {{"path": "/", "port": {port}, "scheme": "HTTPS"}}}}"#),
        format!(r#"{{"grpc": {{"port": {port}}}}}"#),
    ] {
        let mut prober = prober(&probe);
        prober.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let result = prober.run(POD_IP).await;
        let took = start.elapsed();
        assert!(
            matches!(result, Err(ProbeError::Timeout(t)) if t == prober.timeout),
            "{probe}: {result:?}"
        );
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err("probe timed out after 0.3s".to_string())
        );
        assert!(took >= prober.timeout, "{probe}: {took:?}");
        assert!(took < Duration::from_secs(5), "{probe}: took {took:?}");
        assert!(accepted.recv().await.is_some(), "{probe}: it connected");
    }
}
