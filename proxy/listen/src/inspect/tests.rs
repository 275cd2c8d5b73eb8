//! The listener filters on real sockets (127.0.0.1, port 0), and the chain Istio's sniffing inbound listener
//! then gives each connection.

use std::net::SocketAddr;
use std::time::Duration;

use proxy_config::listener::{ChainMatch, Direction, Listener};
use proxy_stats::{Scope, Stats};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Detected, FilterStats, listener_filters};
use crate::select::{Connection, select_chain};

const PORT: u16 = 9080;

fn listener(tls_inspector: bool, timeout: Duration, continue_on_timeout: bool) -> Listener {
    Listener {
        name: "virtualInbound".into(),
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        bind: true,
        use_original_dst: false,
        original_dst: false,
        tls_inspector,
        http_inspector: true,
        tls_inspector_disabled: None,
        http_inspector_disabled: None,
        listener_filters_timeout: Some(timeout),
        continue_on_timeout,
        direction: Direction::Inbound,
        filter_chains: Vec::new(),
        default_chain: None,
    }
}

/// Istio's sniffing chains for one port: HTTP, then anything else on the port (the default chain, not listed,
/// takes what neither does).
fn chains() -> Vec<ChainMatch> {
    let http = ChainMatch {
        destination_port: Some(PORT),
        transport_protocol: "raw_buffer".into(),
        application_protocols: vec!["http/1.1".into(), "h2c".into()],
        ..ChainMatch::default()
    };
    vec![http]
}

/// A connection accepted on 127.0.0.1, and its client sending each of `writes` (then staying open until
/// the handle's client is dropped).
async fn connection(writes: &[&[u8]]) -> (TcpStream, JoinHandle<TcpStream>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut client = TcpStream::connect(socket.local_addr().expect("address"))
        .await
        .expect("connect");
    let (server, _) = socket.accept().await.expect("accept");
    // Written by a task of its own: the server only peeks, so a long write may wait for it.
    let writes: Vec<Vec<u8>> = writes.iter().map(|w| w.to_vec()).collect();
    let client = tokio::spawn(async move {
        for bytes in writes {
            client.write_all(&bytes).await.expect("write");
            client.flush().await.expect("flush");
        }
        client
    });
    (server, client)
}

/// What the filters find on a connection whose client sends `writes`, and the chain it then takes
/// (`None`: the default chain).
async fn run(
    l: &Listener,
    writes: &[&[u8]],
    stats: &FilterStats,
) -> Option<(Detected, Option<usize>)> {
    let (server, client) = connection(writes).await;
    let detected = listener_filters(&server, l, PORT, stats).await;
    client.abort();
    let detected = detected?;
    let connection = Connection {
        destination_port: PORT,
        detected: &detected,
    };
    let chain = select_chain(&chains(), connection);
    Some((detected, chain))
}

fn stats() -> (std::sync::Arc<Stats>, FilterStats) {
    let stats = Stats::new();
    let filters = FilterStats::new(&stats, &Scope::Listener("0.0.0.0_15006".into()));
    (stats, filters)
}

fn counter(stats: &Stats, scope: &Scope, name: &str) -> u64 {
    stats.counter(scope, name).get()
}

#[tokio::test]
async fn http_requests_and_the_h2_preface_take_the_http_chain() {
    let (registry, stats) = stats();
    // Long enough never to pass while the bytes are on their way.
    let l = listener(true, Duration::from_secs(60), true);
    let request: &[u8] = b"GET /productpage HTTP/1.1\r\nHost: productpage\r\n\r\n";
    let (detected, chain) = run(&l, &[request], &stats).await.expect("served");
    assert_eq!(detected.application_protocols, ["http/1.1"]);
    assert_eq!(detected.transport, "raw_buffer");
    assert_eq!(chain, Some(0));

    // The preface in two writes, as a client may send it.
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let (detected, chain) = run(&l, &[&preface[..9], &preface[9..]], &stats)
        .await
        .expect("served");
    assert_eq!(detected.application_protocols, ["h2c"]);
    assert_eq!(chain, Some(0));

    // A request line longer than the first peek.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(5000));
    let (detected, chain) = run(&l, &[long.as_bytes()], &stats).await.expect("served");
    assert_eq!(detected.application_protocols, ["http/1.1"]);
    assert_eq!(chain, Some(0));

    let global = Scope::Server;
    assert_eq!(
        counter(&registry, &global, "http_inspector.http11_found"),
        2
    );
    assert_eq!(counter(&registry, &global, "http_inspector.http2_found"), 1);
}

#[tokio::test]
async fn other_bytes_take_the_default_chain_without_waiting() {
    let (registry, stats) = stats();
    let l = listener(true, Duration::from_secs(60), false);
    for bytes in [
        &b"\0\0\0\x0a\x03select 1"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"GET /productpage HTTP/1.0\r\n\r\n",
        b"HELO relay.example\r\n",
    ] {
        let (detected, chain) = run(&l, &[bytes], &stats).await.expect("served");
        let expected: Vec<String> = if bytes.starts_with(b"GET") {
            vec!["http/1.0".into()]
        } else {
            Vec::new()
        };
        assert_eq!(detected.application_protocols, expected, "{bytes:?}");
        assert_eq!(chain, None, "{bytes:?}");
    }
    assert_eq!(
        counter(&registry, &Scope::Server, "http_inspector.http_not_found"),
        3
    );
    assert_eq!(
        counter(&registry, &Scope::Server, "http_inspector.http10_found"),
        1
    );
}

#[tokio::test]
async fn a_silent_client_reaches_the_default_chain_only_with_continue_on_timeout() {
    let (registry, stats) = stats();
    let listener_scope = Scope::Listener("0.0.0.0_15006".into());
    for tls_inspector in [true, false] {
        // A server-first protocol: the client waits for the server to speak.
        let l = listener(tls_inspector, Duration::from_millis(50), true);
        let (detected, chain) = run(&l, &[], &stats).await.expect("continued");
        assert_eq!(detected, Detected::plain());
        assert_eq!(chain, None);

        let l = listener(tls_inspector, Duration::from_millis(50), false);
        assert_eq!(run(&l, &[], &stats).await, None);
    }
    assert_eq!(
        counter(&registry, &listener_scope, "downstream_pre_cx_timeout"),
        4
    );
}

#[tokio::test]
async fn a_request_line_past_64_kib_or_a_closed_client_ends_the_connection() {
    let (registry, stats) = stats();
    let l = listener(true, Duration::from_secs(60), true);
    let long = format!("GET /{}", "a".repeat(64 * 1024));
    assert_eq!(run(&l, &[long.as_bytes()], &stats).await, None);
    assert_eq!(
        counter(&registry, &Scope::Server, "http_inspector.read_error"),
        1
    );

    let (server, client) = connection(&[]).await;
    drop(client.await.expect("client"));
    assert_eq!(listener_filters(&server, &l, PORT, &stats).await, None);
    let listener_scope = Scope::Listener("0.0.0.0_15006".into());
    assert_eq!(
        counter(
            &registry,
            &listener_scope,
            "downstream_listener_filter_remote_close"
        ),
        1
    );
}

#[tokio::test]
async fn an_inspector_left_out_for_a_port_reads_nothing_there() {
    use proxy_config::listener::Predicate;
    let (registry, stats) = stats();
    // pilot's virtualInbound: the HTTP inspector for the sniffed port only.
    let mut l = listener(false, Duration::from_millis(50), false);
    l.http_inspector_disabled = Some(Predicate::Not(Box::new(Predicate::DestinationPorts {
        start: i32::from(PORT),
        end: i32::from(PORT) + 1,
    })));
    let request: &[u8] = b"GET / HTTP/1.1\r\nHost: web\r\n\r\n";
    // Another port: nothing read, so a silent (server-first) client is not held for the timeout, and
    // without `continue_on_listener_filters_timeout` not refused either.
    for writes in [&[][..], &[request][..]] {
        let (server, client) = connection(writes).await;
        let detected = listener_filters(&server, &l, 5432, &stats).await;
        client.abort();
        assert_eq!(detected, Some(Detected::plain()));
    }
    // The sniffed port: read.
    let (server, client) = connection(&[request]).await;
    let detected = listener_filters(&server, &l, PORT, &stats).await;
    client.abort();
    assert_eq!(detected.expect("read").application_protocols, ["http/1.1"]);
    assert_eq!(
        counter(&registry, &Scope::Server, "http_inspector.http11_found"),
        1
    );
}
