//! `sextant dev --intercept` (root): the bookinfo mesh as pods. Each workload's application and sidecar in a
//! network namespace of its own with `sextant proxy-init`'s rules, the sidecar as uid 1337; the application
//! calls each service at the service's address and the rules hand the call to its sidecar. A user would
//! notice: productpage answers from its pod's address; the calls between workloads go through the sidecars
//! (their outbound clusters count them) over mutual TLS, each caller known by its version (the hub's
//! graph); the guest is denied reviews; Ctrl-C exits 0 and leaves no process, namespace or bridge behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{DevMesh, get, get_json, scratch, start_dev, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// `ip ARGS` output (empty when it fails).
fn ip(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The users (uid) of the processes running in namespace `ns`, with their command lines.
fn users_in(ns: &str) -> Vec<(String, String)> {
    ip(&["netns", "pids", ns])
        .split_whitespace()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .split_whitespace()
                .next()?
                .to_string();
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            Some((uid, cmdline.replace('\0', " ")))
        })
        .collect()
}

#[test]
fn dev_intercept_runs_bookinfo_as_pods_and_removes_them() {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "skipped: --intercept needs root (namespaces, iptables, uid 1337); CI runs it as root"
        );
        return;
    }
    let dir = scratch("dev-intercept");
    let DevMesh {
        proc: mut dev,
        net,
        entry,
        admin,
        ..
    } = start_dev(&dir, &dir.join("config"), 30, 200, &["--intercept"]);
    let pods = net.replacen("127.", "10.", 1);
    assert!(
        entry.ip().to_string().starts_with(&format!("{pods}.0.")),
        "productpage is a pod on {pods}.0.0/24: {entry}"
    );
    let pid = dev.pid();

    // Each workload is a pod: its namespace, the sidecar as uid 1337, the application as root.
    let namespaces = ip(&["netns", "list"]);
    for workload in [
        "productpage-v1",
        "details-v1",
        "reviews-v1",
        "reviews-v2",
        "reviews-v3",
        "ratings-v1",
    ] {
        let ns = format!("sxd-{pid}-{workload}");
        assert!(namespaces.contains(&ns), "no namespace {ns}: {namespaces}");
        let users = users_in(&ns);
        assert!(
            users
                .iter()
                .any(|(uid, cmd)| uid == "1337" && cmd.contains(" proxy ")),
            "{workload}'s sidecar runs as 1337 in its pod: {users:?}"
        );
        assert!(
            users
                .iter()
                .any(|(uid, cmd)| uid == "0" && cmd.contains(&format!(" app {workload}"))),
            "{workload}'s application runs in its pod: {users:?}"
        );
    }

    // The page from the host, through productpage's captured inbound, and its calls through the sidecars.
    let mut last = None;
    wait_until(WAIT, "productpage to show details and reviews", || {
        last = get(entry, "/productpage", &[("x-user", "tester")]).map(|r| (r.status, r.body));
        last.as_ref().is_some_and(|(s, b)| {
            *s == 200 && b.contains("William Shakespeare") && b.contains("Reviewer1")
        })
    });
    let productpage_admin = std::net::SocketAddr::new(entry.ip(), 15000);
    let stats = get(productpage_admin, "/stats", &[])
        .map(|r| r.body)
        .unwrap_or_default();
    let sent = |service: &str| {
        stats
            .lines()
            // Per subset too: `outbound|9080|v1|reviews…`.
            .filter(|l| {
                l.starts_with("cluster.outbound|9080|")
                    && l.contains(&format!(
                        "|{service}.bookinfo.svc.cluster.local.upstream_rq_total:"
                    ))
            })
            .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
            .sum::<u64>()
    };
    assert!(
        sent("details") > 0 && sent("reviews") > 0,
        "productpage's sidecar took the application's calls (captured by its pod's rules):\n{stats}"
    );

    // The hub sees every call between pods over mutual TLS.
    let mut graph = serde_json::Value::Null;
    wait_until(
        WAIT,
        "the graph to show every call between the pods",
        || {
            graph = get_json(admin, "/api/v1/graph?window=1m");
            let edges = graph["edges"].as_array().cloned().unwrap_or_default();
            // The callers' versions come with their requests: reviews v2 and v3 each call ratings.
            [
                ("productpage/v1", "details/v1"),
                ("productpage/v1", "reviews/v1"),
                ("productpage/v1", "reviews/v2"),
                ("productpage/v1", "reviews/v3"),
                ("reviews/v2", "ratings/v1"),
                ("reviews/v3", "ratings/v1"),
            ]
            .iter()
            .all(|(from, to)| {
                edges.iter().any(|e| {
                    e["source"] == format!("bookinfo/{from}")
                        && e["destination"] == format!("bookinfo/{to}")
                        && e["stats"]["rps"].as_f64().is_some_and(|r| r > 0.0)
                        && e["stats"]["mtls_share"] == 1.0
                })
            })
        },
    );

    // The hub's policy holds in pods too.
    let guest = get(entry, "/productpage", &[("x-user", "guest")]).expect("an answer");
    assert!(
        guest.body.contains("guests may not read reviews"),
        "the guest is denied reviews: {}",
        guest.body
    );

    let status = dev.stop_with("INT");
    assert!(
        status.success(),
        "sextant dev exited {status}:\n{}",
        dev.log()
    );
    let namespaces = ip(&["netns", "list"]);
    assert!(
        !namespaces.contains(&format!("sxd-{pid}-")),
        "namespaces left behind: {namespaces}"
    );
    let bridges = ip(&["-o", "link", "show", "type", "bridge"]);
    assert!(
        !bridges.contains(&format!("sxd{pid}:")),
        "the bridge left behind: {bridges}"
    );
    let out = Command::new("pgrep")
        .args([
            "-a",
            "-f",
            &format!("{}\\.0\\.|--loopback {net} ", pods.replace('.', "\\.")),
        ])
        .output()
        .expect("pgrep");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "processes left behind"
    );
}
