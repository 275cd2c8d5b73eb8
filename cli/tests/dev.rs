//! `sextant dev`, the README's first command, as a newcomer runs it: the whole bookinfo mesh on loopback —
//! pilot, the hub, a `sextant proxy` per workload, the applications and their traffic — from one command.
//! A user would notice: productpage answers through the mesh; the hub's metrics show every workload
//! (reviews in its three versions) over mutual TLS; a guest is denied reviews by the hub's policy with the
//! policy's message and the bot meets its rate limit; the hub's query API shows the graph, the RED series,
//! the decision with its rule, the rate-limit refusals and joined traces; editing the config directory
//! changes the running mesh; Ctrl-C (SIGINT) exits 0 and leaves no process and no listening port behind.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{DevMesh, get, scratch, start_dev, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// `GET /productpage` at `entry` as `user`: (status, body).
fn productpage(entry: SocketAddr, user: &str) -> Option<(u16, String)> {
    get(entry, "/productpage", &[("x-user", user)]).map(|r| (r.status, r.body))
}

/// The lines of `istio_requests_total` in the hub's adapter exposition.
fn requests(metrics: SocketAddr) -> Vec<String> {
    get(metrics, "/metrics", &[])
        .map(|r| r.body)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(str::to_string)
        .collect()
}

/// Whether some series of `lines` holds every label of `labels`.
fn has(lines: &[String], labels: &[&str]) -> bool {
    lines.iter().any(|l| labels.iter().all(|w| l.contains(w)))
}

/// The processes whose command line names the loopback network `net` (the dev mesh's children).
fn left_behind(net: &str) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("{net}\\.1\\.")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dev_runs_the_bookinfo_mesh_and_stops_cleanly() {
    let dir = scratch("dev");
    // A loopback network of this run's own, so that runs on one machine do not meet.
    let DevMesh {
        proc: mut dev,
        net,
        entry,
        admin,
        metrics,
    } = start_dev(&dir, &dir.join("config"), 100, 150, &[]);

    let (status, body) = productpage(entry, "alice").expect("productpage answers");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"reviews\":[") && body.contains("William Shakespeare"),
        "{body}"
    );

    // The traffic reaches every workload, reviews in all three versions (v2 for jason, 10 % to v3), over
    // mutual TLS, checked and reported by the sidecars.
    wait_until(WAIT, "every workload in the hub's metrics", || {
        let lines = requests(metrics);
        let seen = |service: &str, version: &str| {
            has(
                &lines,
                &[
                    "reporter=\"destination\"",
                    &format!("destination_service_name=\"{service}\""),
                    &format!("destination_version=\"{version}\""),
                    "response_code=\"200\"",
                ],
            )
        };
        seen("productpage", "v1")
            && seen("details", "v1")
            && seen("reviews", "v1")
            && seen("reviews", "v2")
            && seen("reviews", "v3")
            && seen("ratings", "v1")
            && has(
                &lines,
                &[
                    "destination_service_name=\"reviews\"",
                    "connection_security_policy=\"mutual_tls\"",
                    "source_principal=\"spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage\"",
                ],
            )
            // Callers by version too: the server's sidecar learns it from the caller's.
            && has(
                &lines,
                &[
                    "reporter=\"destination\"",
                    "source_workload=\"reviews\"",
                    "source_version=\"v3\"",
                    "destination_service_name=\"ratings\"",
                ],
            )
    });
    // The hub's decisions: the guest is denied reviews with the policy's message; the bot meets its limit.
    let (_, body) = productpage(entry, "guest").expect("productpage answers a guest");
    assert!(body.contains("guests may not read reviews"), "{body}");
    wait_until(
        WAIT,
        "the bot's rate-limited requests in the metrics",
        || {
            has(
                &requests(metrics),
                &[
                    "destination_service_name=\"details\"",
                    "response_code=\"429\"",
                ],
            )
        },
    );

    // The hub's query API, from its window of recent telemetry: the graph, per-service RED, the decisions
    // with the rule that decided, rate-limit refusals, traces.
    wait_until(
        WAIT,
        "the graph to show productpage calling reviews' three versions",
        || {
            let graph = common::get_json(admin, "/api/v1/graph?window=1m");
            let edge = |to: &str| {
                graph["edges"].as_array().is_some_and(|edges| {
                    edges.iter().any(|e| {
                        e["source"] == "bookinfo/productpage/v1"
                            && e["destination"] == to
                            && e["stats"]["rps"].as_f64() > Some(0.0)
                    })
                })
            };
            edge("bookinfo/reviews/v1")
                && edge("bookinfo/reviews/v2")
                && edge("bookinfo/reviews/v3")
        },
    );
    let red = common::get_json(admin, "/api/v1/services/bookinfo/reviews/red?window=1m");
    let served: u64 = red["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["requests"].as_u64()).sum())
        .unwrap_or(0);
    assert!(served > 0, "reviews' RED series: {red}");
    let decisions = common::get_json(admin, "/api/v1/decisions");
    let denied_by_rule = decisions["counts"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["result"] == "deny"
                && c["policy"] == "bookinfo/reviews-guard"
                && c["rule"] == "no-guests"
        })
    });
    assert!(
        denied_by_rule,
        "the guest's denial with its rule: {decisions}"
    );
    let limits = common::get_json(admin, "/api/v1/ratelimits?window=5m");
    assert_eq!(
        limits["rate_limits"][0]["ratelimit"], "bookinfo/details-per-user",
        "{limits}"
    );
    let traces = common::get_json(admin, "/api/v1/traces?limit=50");
    let joined = traces["traces"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["spans"].as_array().is_some_and(|s| s.len() >= 2))
    });
    assert!(joined, "traces with their spans joined: {traces}");
    let bad = get(admin, "/api/v1/graph?window=soon", &[]).expect("an answer");
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The configuration directory changes the running mesh: details made to fail shows on the page.
    let apps = dir.join("config/apps.yaml");
    std::fs::write(&apps, "details-v1: {error_percent: 100}\n").expect("edit apps.yaml");
    let (mut last, mut n) = (None, 0);
    let failing = common::eventually(WAIT, || {
        // A new user each time: one user polling this fast would meet details' rate limit first.
        n += 1;
        last = productpage(entry, &format!("tester-{n}"));
        last.as_ref()
            .is_some_and(|(_, b)| b.contains("details-v1 is failing"))
    });
    assert!(failing, "the page does not show details failing: {last:?}");

    let status = dev.stop_with("INT");
    assert!(
        status.success(),
        "sextant dev exited {status}:\n{}",
        dev.log()
    );
    assert_eq!(left_behind(&net), "", "processes left behind");
    assert!(
        std::net::TcpListener::bind(entry).is_ok(),
        "productpage's sidecar port {entry} is free again"
    );
}
