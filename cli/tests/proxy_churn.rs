//! Configuration churn under load: `sextant pilot` rewrites a VirtualService's weights and a
//! ServiceEntry's endpoints every 100 ms while clients send 10 000 requests through `sextant proxy`. Every
//! configuration in the sequence can serve every request (each version always keeps one of its two
//! endpoints), so none may fail: updates apply between requests, connections to removed endpoints finish
//! what they carry, and clusters never go a moment without hosts. The proxy's memory stays flat.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    Backend, DataPlane, HeldPort, SextantProxy, call, scratch_config, start_pilot_with, wait_until,
    write_atomically,
};

const VERSIONS: [&str; 3] = ["v1", "v2", "v3"];

/// The VirtualService with weights rotating over the versions.
fn routes(turn: usize) -> String {
    let weights = [[80, 10, 10], [10, 80, 10], [10, 10, 80], [34, 33, 33]][turn % 4];
    let mut out = String::from(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  \
         hosts: [reviews]\n  http:\n  - route:\n",
    );
    for (v, w) in VERSIONS.iter().zip(weights) {
        out.push_str(&format!(
            "    - {{destination: {{host: reviews, subset: {v}}}, weight: {w}}}\n"
        ));
    }
    out
}

const SUBSETS: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  \
     host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]\n";

#[test]
fn routes_and_endpoints_changing_every_100ms_fail_no_request_and_keep_memory_flat() {
    let (dir, config) = scratch_config("proxy-churn");
    let backends = [
        [Backend::answering("v1"), Backend::answering("v1")],
        [Backend::answering("v2"), Backend::answering("v2")],
        [Backend::answering("v3"), Backend::answering("v3")],
    ];
    let held = HeldPort::hold();
    let port = held.port();
    let ports: Vec<Vec<u16>> = backends
        .iter()
        .map(|p| p.iter().map(|b| b.addr.port()).collect())
        .collect();
    write_atomically(&config.join("services.yaml"), &endpoints(port, &ports, 0));
    write_atomically(&config.join("routes.yaml"), &routes(0));
    std::fs::write(config.join("subsets.yaml"), SUBSETS).expect("subsets");
    // Pushed once the files have been quiet 10 ms: each 100 ms rewrite becomes a push.
    let (_pilot, xds, _) = start_pilot_with(
        &config,
        "127.0.0.1:0",
        &["--debounce", "10ms", "--poll-interval", "50ms"],
    );
    let proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        &[],
    );
    let listen = held.addr;
    wait_until(
        Duration::from_secs(30),
        "the proxy to route reviews",
        || call(listen, "reviews", "/").is_some_and(|(s, _)| s == 200),
    );

    // Warm up, then measure memory from here.
    for _ in 0..500 {
        assert_eq!(call(listen, "reviews", "/").map(|a| a.0), Some(200));
    }
    let warm = proxy.proc.rss_kib();
    let updates = |p: &SextantProxy| p.stat("cluster_manager.eds.update_success").unwrap_or(0);
    let updates_before = updates(&proxy);

    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let config = config.clone();
        let ports = ports.clone();
        std::thread::spawn(move || {
            let mut turn = 1;
            while !stop.load(Ordering::Relaxed) {
                let text = endpoints(port, &ports, turn);
                write_atomically(&config.join("services.yaml"), &text);
                write_atomically(&config.join("routes.yaml"), &routes(turn));
                turn += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            turn
        })
    };
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut failed = Vec::new();
                for i in 0..2500 {
                    match call(listen, "reviews", &format!("/{i}")) {
                        Some((200, _)) => {}
                        other => failed.push(other),
                    }
                }
                failed
            })
        })
        .collect();
    let failed: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let turns = churn.join().expect("churn");
    let end = proxy.proc.rss_kib();
    let applied = updates(&proxy) - updates_before;
    eprintln!(
        "10 000 requests over {turns} configuration rewrites ({applied} endpoint updates applied); RSS {warm} KiB → {end} KiB"
    );
    assert!(
        failed.is_empty(),
        "{} requests failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        applied >= 10,
        "the proxy applied the churn ({applied} endpoint updates)"
    );
    assert!(
        end < warm + 32 * 1024,
        "memory grew from {warm} KiB to {end} KiB"
    );
    assert_eq!(proxy.rejected_updates(), 0);
}

/// The ServiceEntry with, per version (the backends' ports), both endpoints every third turn, else the one
/// `turn` picks.
fn endpoints(port: u16, ports: &[Vec<u16>], turn: usize) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  \
         hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: http}}]\n  endpoints:\n"
    );
    for (v, pair) in VERSIONS.iter().zip(ports) {
        for (i, p) in pair.iter().enumerate() {
            if turn.is_multiple_of(3) || i == turn % 2 {
                out.push_str(&format!(
                    "  - {{address: 127.0.0.1, ports: {{http: {p}}}, labels: {{version: {v}}}}}\n"
                ));
            }
        }
    }
    out
}
