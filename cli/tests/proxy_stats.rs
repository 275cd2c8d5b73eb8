//! `sextant proxy`'s latency histograms as an Envoy dashboard reads them: a real Prometheus scrapes the
//! proxy's `/stats/prometheus` and `histogram_quantile` over `envoy_cluster_upstream_rq_time_bucket` and
//! `envoy_http_downstream_rq_time_bucket` lands in the bucket of the backend's latency (30 ms: Envoy's
//! (25, 50] ms bucket); `/stats` shows the same histograms as Envoy's quantile lines.

mod common;

use std::time::Duration;

use common::{
    DataPlane, HeldPort, Prometheus, SextantProxy, call, get, scratch_config, slow_backend,
    start_pilot, wait_until,
};

/// The backend's latency.
const BACKEND_DELAY: Duration = Duration::from_millis(30);
/// Requests sent through the proxy.
const REQUESTS: u64 = 20;

#[test]
fn latency_histograms_reach_prometheus_in_envoys_buckets() {
    let (dir, config) = scratch_config("proxy-stats");
    let backend = slow_backend(BACKEND_DELAY);
    let held = HeldPort::hold();
    std::fs::write(
        config.join("services.yaml"),
        common::reviews_entry(held.port(), backend.port()),
    )
    .expect("write");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        &[],
    );
    wait_until(
        Duration::from_secs(30),
        "the proxy to route reviews",
        || call(held.addr, "reviews", "/").is_some_and(|(s, _)| s == 200),
    );
    for _ in 1..REQUESTS {
        assert_eq!(call(held.addr, "reviews", "/").map(|(s, _)| s), Some(200));
    }

    let cluster = format!(
        "outbound|{}||reviews.default.svc.cluster.local",
        held.port()
    );
    let manager = format!("127.0.0.1_{}", held.port());
    let text = get(proxy.admin(), "/stats", &[]).expect("/stats").body;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("cluster.{cluster}.upstream_rq_time: ")))
        .unwrap_or_else(|| panic!("no upstream_rq_time line in /stats:\n{text}"));
    assert!(
        line.contains(" P50(nan,") && line.contains(" P99(nan,"),
        "{line}"
    );

    let prometheus = Prometheus::start_scraping(&[proxy.admin()], "/stats/prometheus");
    let count =
        format!(r#"envoy_cluster_upstream_rq_time_count{{envoy_cluster_name="{cluster}"}}"#);
    wait_until(
        Duration::from_secs(30),
        "Prometheus to scrape every request's upstream time",
        || {
            prometheus
                .query(&count)
                .first()
                .is_some_and(|(_, v)| *v as u64 == REQUESTS)
        },
    );
    for (what, query) in [
        (
            "upstream",
            format!(
                r#"histogram_quantile(0.5, envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name="{cluster}"}})"#
            ),
        ),
        (
            "downstream",
            format!(
                r#"histogram_quantile(0.5, envoy_http_downstream_rq_time_bucket{{envoy_http_conn_manager_prefix="{manager}"}})"#
            ),
        ),
    ] {
        let series = prometheus.query(&query);
        let p50 = series.first().map(|(_, v)| *v);
        assert!(
            p50.is_some_and(|ms| ms > 25.0 && ms <= 50.0),
            "{what} p50 {p50:?} ms is not in the (25, 50] ms bucket of a {BACKEND_DELAY:?} backend; {query} → {series:?}"
        );
    }
}
