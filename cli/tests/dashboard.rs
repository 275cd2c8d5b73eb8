//! The dashboard in a real browser: Playwright (playwright-core from npm, both installed by `.ci/peers`) drives
//! Debian's Chromium, headless, through the hub's dashboard while `sextant dev` runs
//! (`tests/dashboard/drive.mjs`). It waits until the service graph shows productpage, details, ratings and
//! reviews in three versions with requests flowing into each; sends a guest's request of its own to
//! productpage; finds the guests' denial with its rule among the decisions; clicks that request's trace in the
//! trace list and reads its waterfall; and writes a screenshot to `target/dashboard.png` (CI keeps it as an
//! artifact; README's picture comes from it). The driver reports what the page showed; this test judges it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BOOKINFO_NODES, DevMesh, get, peers, repo, scratch, start_dev, target_dir};
use serde_json::Value;

/// Debian's Chromium.
fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("Chromium is not installed: run .ci/peers (it installs Debian's chromium)")
}

/// The node_modules holding playwright-core.
fn playwright() -> PathBuf {
    let modules = peers().join("playwright/node_modules");
    assert!(
        modules.join("playwright-core/package.json").is_file(),
        "playwright-core is not installed in {}: run .ci/peers (it installs it from npm)",
        modules.display()
    );
    modules
}

/// Runs the driver on the dashboard at `dashboard`, sending its guest's request to `productpage` and its
/// screenshot to `shot`; returns what it reports the page showed.
fn drive(dashboard: &str, productpage: &str, shot: &Path) -> Value {
    let script = repo().join("cli/tests/dashboard/drive.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args([dashboard, productpage])
        .arg(shot)
        .env("NODE_PATH", playwright())
        .env("CHROMIUM", chromium())
        .output()
        .expect("run node (Node.js 20 or later, which playwright-core needs)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the Playwright driver failed ({}); screenshot at {}:\n{stderr}",
        out.status,
        shot.display()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the driver's report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The rows of `table` in the report whose cells contain every one of `texts`.
fn rows_with<'a>(table: &'a Value, texts: &[&str]) -> Vec<&'a Value> {
    table
        .as_array()
        .into_iter()
        .flatten()
        .filter(|row| {
            let cells: Vec<&str> = row["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            texts.iter().all(|t| cells.contains(t))
        })
        .collect()
}

/// An edge label's requests per second (`"1.23/s"`, or `"1.23/s · 5.0 % err"`).
fn rps(label: &str) -> f64 {
    label
        .split("/s")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_dashboard_shows_the_mesh_in_a_real_browser() {
    let dir = scratch("dashboard");
    let DevMesh {
        proc: mut dev,
        entry,
        admin,
        ..
    } = start_dev(&dir, &dir.join("config"), 20, 60, &[]);
    // The page is the hub's: the admin root leads to it.
    let root = get(admin, "/", &[]).expect("the admin answers");
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/dashboard/"));

    // A path the traffic generator never asks for: the trace the test opens is its own request's.
    let path = format!("/productpage/dashboard-test-{}", std::process::id());
    let shot = target_dir().join("dashboard.png");
    let page = drive(
        &format!("http://{admin}/dashboard/"),
        &format!("http://{entry}{path}"),
        &shot,
    );

    // The graph: every workload, requests per second on an edge into each, and its rate on each node.
    let nodes = page["graph"]["nodes"].as_array().expect("graph nodes");
    let edges = page["graph"]["edges"].as_array().expect("graph edges");
    for id in BOOKINFO_NODES {
        let node = nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no {id} node in {nodes:?}"));
        let version = id.rsplit('/').next().unwrap_or_default();
        let sub = node["text"][1].as_str().unwrap_or_default();
        assert!(
            sub.starts_with(&format!("{version} · bookinfo · ")) && sub.ends_with("/s"),
            "{id} is labelled with its version and rate: {node}"
        );
        assert!(
            edges
                .iter()
                .any(|e| e["destination"] == id
                    && rps(e["label"].as_str().unwrap_or_default()) > 0.0),
            "no edge with requests into {id}: {edges:?}"
        );
    }
    assert!(
        edges
            .iter()
            .any(|e| e["source"] == "unknown/unknown/unknown"
                && e["destination"] == "bookinfo/productpage/v1"),
        "productpage is called from outside the mesh: {edges:?}"
    );

    // The test's guest was refused reviews by the policy (productpage shows the page without them)...
    let guest = &page["guest"];
    assert_eq!(guest["status"], 200, "productpage answers the guest");
    assert!(
        guest["body"].as_str().is_some_and(
            |b| b.contains("reviews answered 403 Forbidden: guests may not read reviews")
        ),
        "the guest's reviews were denied: {guest}"
    );
    // ...and the decisions table names the rule. The sidecar of reviews asks the hub once per guest and caches
    // the answer for a minute (the decision counts are of Checks), so the count may or may not include the
    // test's request: the trace below is what shows the request is the test's own.
    let denials = rows_with(
        &page["decisions"],
        &["deny", "bookinfo/reviews-guard", "no-guests"],
    );
    assert!(
        denials
            .iter()
            .any(|r| r["cells"][3].as_str().and_then(|n| n.parse::<u64>().ok()) >= Some(1)),
        "the decisions table shows the guests' denial with its rule: {}",
        page["decisions"]
    );

    // The waterfall the test opened is its request's: the root span on its path, the denied call to reviews
    // on both sides of it, and details answering.
    let trace = guest["trace_id"].as_str().expect("the guest's trace id");
    let waterfall = &page["waterfall"];
    assert_eq!(
        waterfall["trace"], trace,
        "the waterfall opened: {waterfall}"
    );
    assert_eq!(waterfall["title"], format!("Trace {trace}"));
    let spans = waterfall["spans"].as_array().expect("waterfall spans");
    let span = |workload: &str, code: &str, name: &str| {
        spans.iter().any(|s| {
            s["workload"] == workload
                && s["code"] == code
                && s["text"].as_str().is_some_and(|t| t.starts_with(name))
        })
    };
    assert!(spans.len() >= 5, "several spans: {spans:?}");
    assert!(
        span("productpage", "200", &format!("GET {path} productpage")),
        "the root span: {spans:?}"
    );
    assert!(
        span("productpage", "403", "→ GET /reviews/0 productpage · 403")
            && span("reviews", "403", "GET /reviews/0 reviews · 403"),
        "the denied call to reviews, as the caller and as reviews saw it: {spans:?}"
    );
    assert!(
        span("details", "200", "GET /details/0 details"),
        "details answered: {spans:?}"
    );

    // The rest of the page.
    assert!(
        page["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r["service"] == "bookinfo/reviews")),
        "the services table: {}",
        page["services"]
    );
    assert!(
        !rows_with(&page["limits"], &["bookinfo/details-per-user"]).is_empty(),
        "the bot's rate limit: {}",
        page["limits"]
    );
    assert!(
        !rows_with(&page["adapters"], &["sextant-system/prometheus", "healthy"]).is_empty(),
        "the adapters' health: {}",
        page["adapters"]
    );
    assert!(
        page["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("updated ")),
        "no error state: {}",
        page["status"]
    );
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "the page logged no error"
    );
    assert!(
        shot.metadata().is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}",
        shot.display()
    );
    eprintln!(
        "dashboard screenshot: {} (Chromium {})",
        shot.display(),
        page["browser"]
    );
    let status = dev.stop_with("INT");
    assert!(status.success(), "sextant dev exited {status}");
}
