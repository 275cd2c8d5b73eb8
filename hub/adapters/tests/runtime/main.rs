//! Integration tests of the adapter runtime against the real adapter components of `hub-builtin-adapters`.

mod cache;
mod faults;
mod http;
mod load;
mod metrics;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_adapters::{AdapterConfig, Limits, ModuleSource, Runtime, RuntimeOptions};
use sextant_batch::{BatchKind, BatchWriter, Family, MetricKind};

/// A runtime that resolves the shipped builtin adapters. Without `cache_dir` it uses a cache shared by all
/// tests (and runs): compiling a component with a debug build of cranelift takes seconds.
pub fn runtime(cache_dir: Option<PathBuf>) -> Runtime {
    let cache_dir = cache_dir.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hub-adapters-shared-cache")
    });
    assert!(
        hub_builtin_adapters::embedded(),
        "hub-builtin-adapters was built without components (SEXTANT_SKIP_ADAPTERS?)"
    );
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache_dir),
        builtins: Some(hub_builtin_adapters::get),
        ..RuntimeOptions::default()
    })
    .expect("runtime")
}

/// The test-only `faulty` adapter with its config.
pub fn faulty(name: &str, mode: &str, after: u64) -> AdapterConfig {
    let bytes = hub_builtin_adapters::test_module("faulty").expect("faulty component");
    let mut cfg = AdapterConfig::new(
        name,
        ModuleSource::Bytes {
            label: "faulty.wasm".into(),
            bytes: Arc::from(bytes),
        },
        serde_json::json!({"mode": mode, "after": after}),
    );
    cfg.limits = fast_limits();
    cfg
}

/// Limits that keep fault tests short: one record per batch, short deadline and backoff.
pub fn fast_limits() -> Limits {
    Limits {
        time_per_batch: Duration::from_millis(300),
        batch_size: 1,
        flush_interval: Duration::from_millis(10),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Limits::default()
    }
}

/// One metrics segment of `n` records of `istio_requests_total`.
pub fn metrics_segment(n: usize, code: &str) -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&Family {
        name: "istio_requests_total",
        kind: MetricKind::Counter,
        help: "Requests handled by the mesh",
        label_names: &["response_code", "destination_workload"],
        buckets: &[],
    });
    for _ in 0..n {
        w.metric(f, 1.0, 0, [code, "reviews-v1"]);
    }
    w.finish()
}

/// Polls `cond` every 5 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Like [`wait_for`] for an async condition.
pub async fn wait_for_async<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> F,
) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fresh scratch directory under cargo's per-target temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hub-adapters-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
