//! `sextant proxy` under bad input, as a client on the network can send it: malformed requests get 400 and a
//! closed connection, oversized heads 431, a client that never finishes its headers is cut off, an idle
//! connection is closed, thousands of idle connections cost bounded memory, and connections past the limit
//! are refused at once; each refusal is counted in the proxy's stats, and the proxy keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{
    Backend, DataPlane, HeldPort, SextantProxy, call, scratch_config, start_pilot, wait_until,
};

/// A sidecar (no interception) routing `reviews` on a held port to a backend, started with `args`.
fn proxy(name: &str, args: &[&str]) -> (SextantProxy, SocketAddr, common::Proc, Backend) {
    let (dir, config) = scratch_config(name);
    let backend = Backend::start();
    let held = HeldPort::hold();
    let services = common::reviews_entry(held.port(), backend.addr.port());
    std::fs::write(config.join("services.yaml"), services).expect("write");
    let (pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        args,
    );
    let listen = held.addr;
    wait_until(
        Duration::from_secs(30),
        "the proxy to route reviews",
        || call(listen, "reviews", "/").is_some_and(|(s, _)| s == 200),
    );
    (proxy, listen, pilot, backend)
}

/// Sends `bytes` on a new connection and reads until the proxy closes it: what it answered.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).to_string()
}

#[test]
fn malformed_oversized_slow_and_idle_clients_are_refused_counted_and_the_proxy_serves_on() {
    // hyper's header timer also runs between the requests of a kept-alive connection: the idle timeout is
    // shorter, so that the idle client below is closed by it, not by the header timer (equal, they raced).
    let (proxy, listen, _pilot, _backend) = proxy(
        "proxy-bad-input",
        &["--request-headers-timeout", "3s", "--idle-timeout", "1s"],
    );
    let http = format!("http.127.0.0.1_{}", listen.port());

    // Malformed: 400, and the connection is closed (read_to_end returned).
    let answer = exchange(listen, b"NOT A REQUEST\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // A head larger than 60 KiB, or with more than 100 headers: 431.
    let big = format!(
        "GET / HTTP/1.1\r\nhost: reviews\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = exchange(listen, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let answer = exchange(
        listen,
        format!("GET / HTTP/1.1\r\nhost: reviews\r\n{many}\r\n").as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(
        proxy
            .stat(&format!("{http}.downstream_cx_protocol_error"))
            .unwrap_or(0)
            >= 3
    );

    // Slowloris: headers never finished; the proxy closes the connection after the headers timeout.
    let answer = exchange(listen, b"GET / HTTP/1.1\r\nhost: reviews\r\nx-slow: ");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    wait_until(
        Duration::from_secs(10),
        "the header timeout to be counted",
        || {
            proxy
                .stat(&format!("{http}.downstream_rq_header_timeout"))
                .unwrap_or(0)
                >= 1
        },
    );

    // Idle: a keep-alive connection that sends nothing after its request is closed by the proxy.
    let mut idle = TcpStream::connect(listen).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    idle.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).expect("the response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    wait_until(
        Duration::from_secs(10),
        "the idle timeout to be counted",
        || {
            proxy
                .stat(&format!("{http}.downstream_cx_idle_timeout"))
                .unwrap_or(0)
                >= 1
        },
    );

    // And the proxy serves on.
    assert_eq!(call(listen, "reviews", "/").map(|a| a.0), Some(200));
}

#[test]
fn thousands_of_idle_connections_cost_bounded_memory_and_a_flood_past_the_limit_is_refused() {
    let (proxy, listen, _pilot, _backend) = proxy(
        "proxy-flood",
        &[
            "--max-connections",
            "2500",
            "--request-headers-timeout",
            "120s",
            "--idle-timeout",
            "120s",
        ],
    );
    let listener = format!("listener.127.0.0.1_{}", listen.port());
    let before = proxy.proc.rss_kib();
    // 2000 keep-alive connections, each after one request, then silent.
    let mut open = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(listen).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).expect("response");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        open.push(s);
    }
    wait_until(Duration::from_secs(30), "2000 connections open", || {
        proxy
            .stat(&format!("{listener}.downstream_cx_active"))
            .unwrap_or(0)
            == 2000
    });
    let after = proxy.proc.rss_kib();
    let per_connection = after.saturating_sub(before) * 1024 / 2000;
    eprintln!(
        "RSS {before} KiB idle, {after} KiB with 2000 idle connections: {per_connection} bytes each"
    );
    assert!(
        per_connection < 64 * 1024,
        "{per_connection} bytes per idle connection"
    );

    // 700 more: the 500 under the limit are served, the 200 past it are closed at once and counted.
    let mut refused = 0;
    for _ in 0..700 {
        let mut s =
            TcpStream::connect(listen).expect("connect (the kernel accepts; the proxy decides)");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\n\r\n");
        let mut buf = [0u8; 1024];
        match s.read(&mut buf) {
            Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") => open.push(s),
            _ => refused += 1,
        }
    }
    assert_eq!(
        refused, 200,
        "connections past --max-connections are refused"
    );
    assert_eq!(
        proxy.stat(&format!("{listener}.downstream_cx_overflow")),
        Some(200)
    );
    drop(open);
    wait_until(Duration::from_secs(30), "the connections to close", || {
        proxy.stat(&format!("{listener}.downstream_cx_active")) == Some(0)
    });
    assert_eq!(
        call(listen, "reviews", "/").map(|a| a.0),
        Some(200),
        "the proxy serves on"
    );
}
