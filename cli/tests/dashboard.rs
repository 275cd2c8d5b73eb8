//! The dashboard in a real browser: headless Chromium (Debian's, from `.ci/peers`) loads the hub's dashboard
//! while `sextant dev` runs, executes its JavaScript against the query API, and the rendered page is what a
//! user sees: the service graph with productpage, details, ratings and reviews in three versions; the services
//! table; the guest's denial with the rule that fired; the bot's rate limit; a trace's waterfall. A screenshot
//! is written to `target/dashboard.png` (CI keeps it as an artifact; README's picture comes from it).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{DevMesh, get, get_json, scratch, start_dev, target_dir, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// Debian's Chromium.
fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("Chromium is not installed: run .ci/peers (it installs Debian's chromium)")
}

/// Runs headless Chromium on `url` with `args`, giving the page's scripts `budget` of virtual time.
fn headless(url: &str, budget: Duration, args: &[&str]) -> std::process::Output {
    let profile = scratch("chromium-profile");
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1400,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={}", budget.as_millis()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn the_dashboard_shows_the_mesh_in_a_real_browser() {
    let dir = scratch("dashboard");
    let DevMesh {
        proc: mut dev,
        admin,
        ..
    } = start_dev(&dir, &dir.join("config"), 20, 60, &[]);
    // The page is the hub's: the admin root leads to it.
    let root = get(admin, "/", &[]).expect("the admin answers");
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/dashboard/"));

    // Traffic everywhere, a guest denied, the bot limited, a trace of several spans: then the browser.
    const NODES: [&str; 6] = [
        "bookinfo/productpage/v1",
        "bookinfo/details/v1",
        "bookinfo/ratings/v1",
        "bookinfo/reviews/v1",
        "bookinfo/reviews/v2",
        "bookinfo/reviews/v3",
    ];
    wait_until(WAIT, "the traffic to reach every part of the page", || {
        let graph = get_json(admin, "/api/v1/graph?window=1m");
        let decisions = get_json(admin, "/api/v1/decisions");
        let limits = get_json(admin, "/api/v1/ratelimits");
        let nodes = graph["nodes"].as_array().cloned().unwrap_or_default();
        let every_node = NODES.iter().all(|id| nodes.iter().any(|n| n["id"] == *id));
        let denied = decisions["counts"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["rule"] == "no-guests"));
        every_node
            && denied
            && limits["rate_limits"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
    });
    let url = format!("http://{admin}/dashboard/#trace=first");
    let out = headless(&url, Duration::from_secs(5), &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("<svg"),
        "Chromium rendered no graph:\n{}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in NODES {
        assert!(
            dom.contains(&format!("data-id=\"{node}\"")),
            "no {node} node in:\n{dom}"
        );
    }
    assert!(
        dom.contains("data-service=\"bookinfo/reviews\""),
        "the services table"
    );
    assert!(
        dom.contains("no-guests") && dom.contains("pill deny"),
        "the guest's denial with its rule"
    );
    assert!(
        dom.contains("bookinfo/details-per-user"),
        "the bot's rate limit"
    );
    assert!(
        dom.contains("<h3>Trace ") && dom.contains("class=\"row\""),
        "a trace's waterfall"
    );
    assert!(
        dom.contains("sextant-system/prometheus") && dom.contains("healthy"),
        "the adapters' health"
    );
    assert!(!dom.contains("cannot reach the hub"), "no error state");

    let shot = target_dir().join("dashboard.png");
    let out = headless(
        &url,
        Duration::from_secs(5),
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(
        out.status.success() && shot.metadata().is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}: {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("dashboard screenshot: {}", shot.display());
    let status = dev.stop_with("INT");
    assert!(status.success(), "sextant dev exited {status}");
}
