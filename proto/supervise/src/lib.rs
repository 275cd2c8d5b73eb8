//! Long-lived tasks, supervised. Neutral: the hub and pilot both run their watchers and background loops
//! through it.
//!
//! A panic is logged, counted in [`TaskHealth::panics`] (each role registers it under its own metric name)
//! and shown by [`TaskHealth::down`] (the roles' readiness endpoints answer 503 naming the task) until the
//! task runs again. A task that can safely start over is restarted with backoff ([`restarting`]); one that
//! panics [`GIVE_UP_AFTER`] times in a row, each within [`STEADY`] of its start, is left down, and the
//! process stays unready. A task that cannot start over is awaited by the process, which exits non-zero
//! ([`ended`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Consecutive quick panics after which a task is no longer restarted.
pub const GIVE_UP_AFTER: u32 = 5;
/// A task that ran this long before panicking starts its count of consecutive panics over.
pub const STEADY: Duration = Duration::from_secs(60);

/// The label of [`TaskHealth::panics`]: the task's name (chosen by the code, never by a client).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// The supervised task.
    pub task: &'static str,
}

/// Which supervised tasks are down, and why; and how often each panicked.
#[derive(Debug, Default)]
pub struct TaskHealth {
    down: Mutex<BTreeMap<&'static str, String>>,
    panics: Family<TaskLabels, Counter>,
}

impl TaskHealth {
    fn set(&self, task: &'static str, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(w) => down.insert(task, w),
            None => down.remove(task),
        };
    }

    /// Panics by task, to register in the role's metrics.
    pub fn panics(&self) -> Family<TaskLabels, Counter> {
        self.panics.clone()
    }

    /// Marks `task` down for good, with `why` (a task that cannot be restarted ended).
    pub fn failed(&self, task: &'static str, why: String) {
        self.set(task, Some(why));
    }

    /// One line per task that is down: `task: why`.
    pub fn down(&self) -> Vec<String> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(t, w)| format!("{t}: {w}"))
            .collect()
    }
}

/// Runs `make()` as task `name`, restarting it after a panic (backoff from 100 ms, doubling, at most 30 s)
/// until it ends normally or was cancelled, or it panicked [`GIVE_UP_AFTER`] times in a row. Only for
/// tasks that hold nothing a panic can leave half-changed: each start must begin from a clean state.
pub fn restarting<F, Fut>(
    name: &'static str,
    health: Arc<TaskHealth>,
    make: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut quick_panics = 0;
        loop {
            let started = Instant::now();
            let task = tokio::spawn(make());
            // Aborting the supervisor (the hub stopping) aborts the task too.
            let _abort = AbortOnDrop(task.abort_handle());
            let result = task.await;
            let Err(e) = result else { return };
            if !e.is_panic() {
                return;
            }
            let why = panic_message(e.into_panic());
            health
                .panics
                .get_or_create(&TaskLabels { task: name })
                .inc();
            if started.elapsed() >= STEADY {
                quick_panics = 0;
                backoff = Duration::from_millis(100);
            }
            quick_panics += 1;
            if quick_panics >= GIVE_UP_AFTER {
                tracing::error!(task = name, panic = %why, "task panicked {quick_panics} times in a row; not restarted; not ready");
                health.set(
                    name,
                    Some(format!(
                        "panicked {quick_panics} times in a row, last: {why}"
                    )),
                );
                return;
            }
            tracing::error!(task = name, panic = %why, restart_in = ?backoff, "task panicked; restarting it");
            health.set(name, Some(format!("panicked ({why}); restarting")));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            health.set(name, None);
        }
    })
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a task that cannot be restarted ended, from its join result: `None` when it returned, else the
/// panic's message (or the cancellation), after logging it and counting it as task `name`'s panic.
pub fn ended<T>(
    name: &'static str,
    health: &TaskHealth,
    joined: Result<T, tokio::task::JoinError>,
) -> Result<T, String> {
    let e = match joined {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let why = if e.is_panic() {
        health
            .panics
            .get_or_create(&TaskLabels { task: name })
            .inc();
        panic_message(e.into_panic())
    } else {
        e.to_string()
    };
    tracing::error!(task = name, panic = %why, "task ended abnormally");
    health.failed(name, format!("ended: {why}"));
    Err(why)
}

/// The text of a panic payload.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn metrics(health: &TaskHealth) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("task_panics", "panics", health.panics());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    /// Waits (bounded) until `cond` holds.
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The defect of 41954b2: the hub's reload watcher and pilot's loops were detached, so a panic stopped
    /// them for good while readiness kept answering 200.
    #[tokio::test]
    async fn a_panicking_task_is_counted_shown_and_restarted() {
        let health = Arc::new(TaskHealth::default());
        let runs = Arc::new(AtomicU32::new(0));
        let finish = Arc::new(tokio::sync::Notify::new());
        let supervisor = {
            let (runs, finish) = (runs.clone(), finish.clone());
            restarting("watcher", health.clone(), move || {
                let (runs, finish) = (runs.clone(), finish.clone());
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("injected");
                    }
                    finish.notified().await;
                }
            })
        };
        until("the panic to show", || !health.down().is_empty()).await;
        assert_eq!(health.down(), ["watcher: panicked (injected); restarting"]);
        until("the restart", || runs.load(Ordering::SeqCst) == 2).await;
        assert!(health.down().is_empty(), "{:?}", health.down());
        assert!(
            metrics(&health).contains("task_panics_total{task=\"watcher\"} 1"),
            "{}",
            metrics(&health)
        );
        finish.notify_one();
        supervisor
            .await
            .expect("supervisor ends when its task does");
    }

    #[tokio::test]
    async fn a_task_that_keeps_panicking_is_left_down() {
        let health = Arc::new(TaskHealth::default());
        restarting("renewal", health.clone(), || async {
            panic!("always");
        })
        .await
        .expect("supervisor");
        let down = health.down();
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(
            down[0].starts_with("renewal: panicked 5 times in a row, last: always"),
            "{down:?}"
        );
        assert!(metrics(&health).contains("task_panics_total{task=\"renewal\"} 5"));
    }

    #[tokio::test]
    async fn a_task_that_cannot_restart_is_reported_down() {
        let health = TaskHealth::default();
        let joined = tokio::spawn(async { panic!("boom") }).await;
        assert_eq!(
            ended("server", &health, joined),
            Err::<(), _>("boom".to_string())
        );
        assert_eq!(health.down(), ["server: ended: boom"]);
        assert!(metrics(&health).contains("task_panics_total{task=\"server\"} 1"));
        let fine = tokio::spawn(async { 7 }).await;
        assert_eq!(ended("other", &health, fine), Ok(7));
        assert_eq!(health.down().len(), 1);
    }
}
