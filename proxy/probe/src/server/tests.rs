use std::net::Ipv4Addr;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use super::*;

const POD_IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn get_path(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn listening() -> (TcpListener, u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

#[tokio::test]
async fn healthz_ready_answers_the_proxys_readiness() {
    let reason: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(Some(
        "PRE_INITIALIZING: waiting for clusters".into(),
    )));
    let read = reason.clone();
    let port = StatusPort::new(Probers::default(), POD_IP, move || {
        read.lock().ok().and_then(|r| r.clone())
    });
    let router = router(Arc::new(port));
    assert_eq!(
        get_path(&router, "/healthz/ready").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "PRE_INITIALIZING: waiting for clusters\n".into()
        )
    );
    *reason.lock().expect("lock") = None;
    assert_eq!(
        get_path(&router, "/healthz/ready").await,
        (StatusCode::OK, "LIVE\n".into())
    );
}

#[tokio::test]
async fn app_health_runs_the_named_probe() {
    let (open, up) = listening().await;
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed.bind((Ipv4Addr::LOCALHOST, 0).into()).expect("bind");
    let down = closed.local_addr().expect("address").port();
    let probers = Probers::parse(&format!(
        r#"{{"/app-health/app/readyz": {{"tcpSocket": {{"port": {up}}}}},
            "/app-health/app/livez": {{"tcpSocket": {{"port": {down}}}}}}}"#
    ))
    .expect("probers");
    let router = router(Arc::new(StatusPort::new(probers, POD_IP, || None)));
    assert_eq!(
        get_path(&router, "/app-health/app/readyz").await,
        (StatusCode::OK, "OK\n".into())
    );
    let (status, body) = get_path(&router, "/app-health/app/livez").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.starts_with(&format!("cannot connect to 127.0.0.1:{down}: ")),
        "{body}"
    );
    assert_eq!(body.lines().count(), 1, "one line: {body:?}");
    for missing in [
        "/app-health/app/startupz",
        "/app-health/other/readyz",
        "/app-health/app/ready",
    ] {
        assert_eq!(
            get_path(&router, missing).await.0,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    drop(open);
}

#[tokio::test]
async fn probes_beyond_the_bound_in_flight_are_refused_and_counted() {
    // A server that accepts and never answers: the first probe stays in flight until its timeout.
    let (listener, port) = listening().await;
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
            let _ = accepted_tx.send(());
        }
    });
    let probers = Probers::parse(&format!(
        r#"{{"/app-health/app/readyz": {{"httpGet": {{"port": {port}}}, "timeoutSeconds": 30}},
            "/app-health/app/livez": {{"tcpSocket": {{"port": {port}}}}}}}"#
    ))
    .expect("probers");
    let counter = Counter::default();
    let status = Arc::new(
        StatusPort::new(probers, POD_IP, || None)
            .max_in_flight(1)
            .count_rejected(counter.clone()),
    );
    let router = router(status.clone());
    let first = tokio::spawn({
        let router = router.clone();
        async move { get_path(&router, "/app-health/app/readyz").await }
    });
    accepted.recv().await.expect("the first probe connected");
    assert_eq!(
        get_path(&router, "/app-health/app/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many probes in flight (at most 1)\n".into()
        )
    );
    assert_eq!((status.rejected(), counter.get()), (1, 1));
    // The proxy's own readiness is not a probe: never refused.
    assert_eq!(get_path(&router, "/healthz/ready").await.0, StatusCode::OK);
    first.abort();
    let _ = first.await;
    // The aborted request's permit is back.
    assert_eq!(
        get_path(&router, "/app-health/app/livez").await,
        (StatusCode::OK, "OK\n".into())
    );
    assert_eq!(status.rejected(), 1);
}
