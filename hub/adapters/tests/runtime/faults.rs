//! Traps, endless loops, memory exhaustion, errors and back-pressure: the instance is restarted, everything
//! is counted, the worker and the hub go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hub_adapters::{BatchKind, Limits};

use crate::{faulty, metrics_segment, runtime, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn submit_one(h: &hub_adapters::AdapterHandle) {
    assert!(h.submit(BatchKind::Metrics, metrics_segment(1, "200"), 1));
}

fn exposition(rt: &hub_adapters::Runtime) -> String {
    let mut prom = prometheus_client::registry::Registry::default();
    rt.register_metrics(&mut prom);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &prom).expect("encode");
    out
}

#[tokio::test]
async fn a_trapping_instance_is_restarted_and_the_batch_retried() {
    let rt = runtime(None);
    // Traps on every batch after the first one of each instance: each retry on a fresh instance succeeds.
    let h = rt.start(faulty("ns/trap", "trap", 1)).await.expect("start");
    for _ in 0..3 {
        submit_one(&h);
    }
    wait_for("3 delivered", WAIT, || h.stats().delivered == 3).await;
    let s = h.stats();
    assert_eq!(s.restarts, 2, "{s:?}");
    assert_eq!(s.retried, 2, "{s:?}");
    assert_eq!(s.dropped.total(), 0, "{s:?}");
    assert!(
        exposition(&rt)
            .contains("sextant_hub_adapter_restarts_total{adapter=\"ns/trap\",reason=\"trap\"} 2"),
        "{}",
        exposition(&rt)
    );
}

#[tokio::test]
async fn a_batch_that_always_traps_is_dropped_and_other_adapters_go_on() {
    let rt = runtime(None);
    let bad = rt
        .start(faulty("ns/always-trap", "trap", 0))
        .await
        .expect("start");
    let good = rt.start(faulty("ns/ok", "ok", 0)).await.expect("start");
    submit_one(&bad);
    submit_one(&good);
    wait_for("bad batch dropped", WAIT, || {
        bad.stats().dropped.retries_exhausted == 1
    })
    .await;
    let s = bad.stats();
    // First attempt and two retries, each on a new instance.
    assert_eq!((s.batches, s.retried, s.restarts), (3, 2, 3), "{s:?}");
    assert_eq!(s.queued, 0);
    wait_for("good delivered", WAIT, || good.stats().delivered == 1).await;
    assert_eq!(good.stats().restarts, 0);
    // The crashed adapter keeps its worker: later batches are attempted again (and fail again).
    submit_one(&bad);
    wait_for("second drop", WAIT, || {
        bad.stats().dropped.retries_exhausted == 2
    })
    .await;
}

/// A loop is interrupted at the deadline while the test's own single-threaded tokio runtime keeps running.
#[tokio::test(flavor = "current_thread")]
async fn an_endless_loop_is_interrupted_and_the_runtime_stays_responsive() {
    let rt = runtime(None);
    let h = rt.start(faulty("ns/loop", "loop", 1)).await.expect("start");
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            loop {
                interval.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    submit_one(&h);
    submit_one(&h);
    let start = Instant::now();
    let ticks_before = ticks.load(Ordering::Relaxed);
    wait_for("restart after the deadline", WAIT, || {
        h.stats().restarts == 1
    })
    .await;
    let looped = start.elapsed();
    let ticked = ticks.load(Ordering::Relaxed) - ticks_before;
    // The loop ran for about time_per_batch (300 ms); the runtime's timer fired throughout.
    assert!(
        looped >= Duration::from_millis(250),
        "interrupted too early: {looped:?}"
    );
    assert!(
        ticked >= 10,
        "only {ticked} ticks in {looped:?}: the runtime was blocked"
    );
    wait_for("both delivered after the restart", WAIT, || {
        h.stats().delivered == 2
    })
    .await;
    assert!(
        exposition(&rt).contains(
            "sextant_hub_adapter_restarts_total{adapter=\"ns/loop\",reason=\"deadline\"} 1"
        )
    );
    ticker.abort();
}

#[tokio::test]
async fn memory_exhaustion_is_stopped_by_the_limit() {
    let rt = runtime(None);
    let mut cfg = faulty("ns/oom", "oom", 1);
    cfg.limits.memory = 32 << 20;
    let h = rt.start(cfg).await.expect("start");
    submit_one(&h);
    submit_one(&h);
    wait_for("restart after oom", WAIT, || h.stats().restarts == 1).await;
    wait_for("both delivered", WAIT, || h.stats().delivered == 2).await;
    assert!(
        exposition(&rt)
            .contains("sextant_hub_adapter_restarts_total{adapter=\"ns/oom\",reason=\"memory\"} 1")
    );
}

#[tokio::test]
async fn retryable_errors_are_retried_then_dropped() {
    let rt = runtime(None);
    let h = rt.start(faulty("ns/err", "error", 0)).await.expect("start");
    submit_one(&h);
    wait_for("dropped", WAIT, || h.stats().dropped.retries_exhausted == 1).await;
    let s = h.stats();
    assert_eq!(
        (s.batches, s.retried, s.restarts, s.delivered),
        (3, 2, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_drain_delivers_the_rest() {
    let rt = runtime(None);
    let mut cfg = faulty("ns/queue", "ok", 0);
    cfg.limits = Limits {
        queue_records: 5,
        batch_size: 100,
        flush_interval: Duration::from_secs(3600),
        ..Limits::default()
    };
    let h = rt.start(cfg).await.expect("start");
    let other = h.clone();
    for _ in 0..5 {
        submit_one(&h);
    }
    // A full queue refuses at once instead of waiting for room (which an hour-long flush would never make):
    // the submit must come back, however slow the machine.
    let full = h.clone();
    let refused = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            !full.submit(BatchKind::Metrics, metrics_segment(1, "200"), 1)
        }),
    )
    .await
    .expect("submit to a full queue returns instead of waiting for room")
    .expect("submit");
    assert!(refused);
    assert!(!h.submit(BatchKind::Metrics, metrics_segment(3, "200"), 3));
    let s = h.stats();
    assert_eq!(
        (s.accepted, s.queued, s.dropped.queue_full, s.delivered),
        (5, 5, 4, 0),
        "{s:?}"
    );

    // Nothing was delivered yet (batch not full, flush interval an hour away): drain delivers it all.
    let drained = h.drain(Duration::from_secs(10)).await;
    assert_eq!(drained.delivered, 5, "{drained:?}");
    assert_eq!(drained.queued, 0);
    // Every clone stops taking batches after a drain.
    assert!(!other.submit(BatchKind::Metrics, metrics_segment(1, "200"), 1));
    assert_eq!(other.stats().dropped.adapter_down, 1);
}

/// The defect of 41954b2: a `check` waited in the same queue as the batches, behind a failing batch's retry
/// backoff, and its caller timed out. Checks have a lane of their own, served during backoffs.
#[tokio::test]
async fn a_check_is_answered_while_a_failing_batch_waits_for_its_retries() {
    let rt = runtime(None);
    let bytes = hub_builtin_adapters::test_module("faulty").expect("faulty component");
    let mut cfg = hub_adapters::AdapterConfig::new(
        "ns/lane",
        hub_adapters::ModuleSource::Bytes {
            label: "faulty.wasm".into(),
            bytes: Arc::from(bytes),
        },
        serde_json::json!({"mode": "error", "checksBehave": true}),
    );
    cfg.limits = Limits {
        // Retried for 1 + 2 + 4 + 4 + 4 s: far longer than a check's caller waits (2 x 300 ms + 100 ms).
        retries: 5,
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
        ..crate::fast_limits()
    };
    let h = rt.start(cfg).await.expect("start");
    submit_one(&h);
    wait_for("the first attempt to fail", WAIT, || h.stats().batches >= 1).await;
    let answer = h.check(Vec::new()).await;
    let s = h.stats();
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(s.queued, 1, "the batch is still being retried: {s:?}");
    assert_eq!(
        (s.checks, s.checks_expired, s.checks_refused),
        (1, 0, 0),
        "{s:?}"
    );
    assert!(
        exposition(&rt).contains(
            "sextant_hub_adapter_checks_total{adapter=\"ns/lane\",reason=\"answered\"} 1"
        ),
        "{}",
        exposition(&rt)
    );
}
