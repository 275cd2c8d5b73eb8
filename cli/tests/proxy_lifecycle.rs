//! `sextant proxy`'s shutdown: SIGTERM stops the listeners and lets the requests in flight finish before
//! the process exits (within `--drain-time`); `/drain_listeners` makes it not ready.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{
    DataPlane, HeldPort, SextantProxy, call, get, scratch_config, slow_backend, start_pilot,
    wait_until,
};

#[test]
fn sigterm_lets_the_requests_in_flight_finish_then_exits() {
    let (dir, config) = scratch_config("proxy-lifecycle");
    let backend = slow_backend(Duration::from_millis(1500));
    let held = HeldPort::hold();
    let services = common::reviews_entry(held.port(), backend.port());
    std::fs::write(config.join("services.yaml"), services).expect("write");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let mut proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        &["--drain-time", "60s"],
    );
    let listen = held.addr;
    wait_until(
        Duration::from_secs(30),
        "the proxy to route reviews",
        || call(listen, "reviews", "/").is_some_and(|(s, _)| s == 200),
    );

    // A request in flight when SIGTERM comes.
    let in_flight = std::thread::spawn(move || call(listen, "reviews", "/in-flight"));
    let active = format!("http.127.0.0.1_{}.downstream_rq_active", held.port());
    wait_until(
        Duration::from_secs(10),
        "the request to be in flight",
        || proxy.stat(&active) == Some(1),
    );
    let status = proxy.proc.terminate();
    assert!(status.success(), "exit: {status:?}\n{}", proxy.proc.log());
    assert_eq!(
        in_flight.join().expect("client"),
        Some((200, "slow".to_string())),
        "the request in flight got its answer before the proxy exited"
    );
    assert!(
        TcpStream::connect(listen).is_err(),
        "the listener is closed"
    );
}

#[test]
fn drain_listeners_makes_the_proxy_not_ready() {
    let (dir, config) = scratch_config("proxy-drain");
    let held = HeldPort::hold();
    let services = common::reviews_entry(held.port(), 9);
    std::fs::write(config.join("services.yaml"), services).expect("write");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        &[],
    );
    let drained = common::http(proxy.admin, "POST", "/drain_listeners", &[]).expect("answered");
    assert_eq!(drained.status, 200);
    let ready = get(proxy.admin(), "/ready", &[]).expect("answered");
    assert_eq!((ready.status, ready.body.trim()), (503, "DRAINING"));
    wait_until(Duration::from_secs(10), "the listener to close", || {
        TcpStream::connect(held.addr).is_err()
    });
}
