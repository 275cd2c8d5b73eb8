//! Long-lived tasks of the hub, supervised: a panic is logged, counted in `sextant_hub_task_panics_total{task}`
//! and shown by `/readyz` (503 naming the task) until the task runs again. A task that can safely start over
//! (the config watcher) is restarted with backoff; one that panics [`GIVE_UP_AFTER`] times in a row, each
//! within [`STEADY`] of its start, is left down, and the hub stays unready.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consecutive quick panics after which a task is no longer restarted.
pub const GIVE_UP_AFTER: u32 = 5;
/// A task that ran this long before panicking starts its count of consecutive panics over.
pub const STEADY: Duration = Duration::from_secs(60);

/// Which supervised tasks are down, and why.
#[derive(Debug, Default)]
pub struct TaskHealth {
    down: Mutex<BTreeMap<&'static str, String>>,
}

impl TaskHealth {
    fn set(&self, task: &'static str, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match why {
            Some(w) => down.insert(task, w),
            None => down.remove(task),
        };
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
/// until it ends normally or was cancelled, or it panicked [`GIVE_UP_AFTER`] times in a row.
/// `on_panic` counts each panic.
pub fn restarting<F, Fut>(
    name: &'static str,
    health: Arc<TaskHealth>,
    on_panic: impl Fn(&'static str) + Send + 'static,
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
            on_panic(name);
            if started.elapsed() >= STEADY {
                quick_panics = 0;
                backoff = Duration::from_millis(100);
            }
            quick_panics += 1;
            if quick_panics >= GIVE_UP_AFTER {
                tracing::error!(task = name, panic = %why, "task panicked {quick_panics} times in a row; not restarted, the hub is not ready");
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
    use crate::metrics::Metrics;

    fn counted(metrics: &Arc<Metrics>) -> impl Fn(&'static str) + Send + 'static {
        let metrics = metrics.clone();
        move |task| metrics.task_panic(task)
    }

    /// Waits (bounded) until `cond` holds.
    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The defect of 41954b2: the reload watcher was detached, so its panic stopped reloads for good while
    /// `/readyz` kept answering 200.
    #[tokio::test]
    async fn a_panicking_task_is_counted_shown_and_restarted() {
        let health = Arc::new(TaskHealth::default());
        let metrics = Arc::new(Metrics::with_extra(|_| {}));
        let runs = Arc::new(AtomicU32::new(0));
        let finish = Arc::new(tokio::sync::Notify::new());
        let supervisor = {
            let (runs, finish) = (runs.clone(), finish.clone());
            restarting("watcher", health.clone(), counted(&metrics), move || {
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
            metrics
                .encode()
                .contains("sextant_hub_task_panics_total{task=\"watcher\"} 1"),
            "{}",
            metrics.encode()
        );
        finish.notify_one();
        supervisor
            .await
            .expect("supervisor ends when its task does");
    }

    #[tokio::test]
    async fn a_task_that_keeps_panicking_is_left_down() {
        let health = Arc::new(TaskHealth::default());
        let metrics = Arc::new(Metrics::with_extra(|_| {}));
        restarting("renewal", health.clone(), counted(&metrics), || async {
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
        assert!(
            metrics
                .encode()
                .contains("sextant_hub_task_panics_total{task=\"renewal\"} 5")
        );
    }
}
