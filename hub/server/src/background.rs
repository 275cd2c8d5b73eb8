//! CPU-heavy background work (a reload's reading, parsing and CEL compilation) on a thread of its own at a
//! lower scheduling priority: never on a runtime worker, and on a busy machine it takes the CPU that serving
//! Checks leaves instead of delaying them. The work still gets its share (the kernel never starves a niced
//! thread), so reloads finish under any load, only later.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much lower than the serving threads' a background thread's priority is (Linux nice increment).
pub const NICE: i32 = 10;

/// Runs `work` on a new thread named `name` at lower priority and waits for its result without blocking
/// the runtime. A panic of `work` is resumed in the caller (so the caller's supervisor counts it).
pub async fn run<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        })
        .unwrap_or_else(|e| panic!("cannot start the {name} thread: {e}"));
    match rx.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the {name} thread ended without an answer"),
    }
}

/// How long [`drop_when_unshared`] waits for the other holders of a value before dropping its own share.
const UNSHARED_WITHIN: Duration = Duration::from_secs(10);

/// Drops `value` on a lower-priority thread named `name`, once nobody else holds it (or after
/// [`UNSHARED_WITHIN`]): a replaced configuration can take milliseconds to free, which should delay neither a
/// runtime worker nor the Check that happened to hold it last. No new clones may be made of `value`.
pub fn drop_when_unshared<T: Send + Sync + 'static>(name: &str, value: Arc<T>) {
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_priority();
            let since = Instant::now();
            while Arc::strong_count(&value) > 1 && since.elapsed() < UNSHARED_WITHIN {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(value);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the {name} thread; the value is dropped where it is");
    }
}

/// Lowers the calling thread's priority by [`NICE`] (on Linux the nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid))
            .and_then(|nice| rustix::process::setpriority_process(Some(tid), nice + NICE));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "cannot lower a background thread's priority; it runs at normal priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, from procfs.
    fn nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // Fields after the command name (which is in parentheses and may hold spaces); nice is field 19.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split(' ')
            .nth(16)
            .expect("nice")
            .parse()
            .expect("a number")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_at_lower_priority_and_returns_its_result() {
        let here = nice();
        let there = run("test-background", nice).await;
        assert_eq!(there, (here + NICE).min(19));
    }

    #[test]
    fn a_shared_value_is_dropped_elsewhere_once_its_last_holder_lets_go() {
        struct Noted(std::sync::mpsc::Sender<Option<String>>);
        impl Drop for Noted {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().name().map(String::from));
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let value = Arc::new(Noted(tx));
        let held = value.clone();
        drop_when_unshared("test-drop", value);
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "not dropped while held"
        );
        drop(held);
        let dropped_on = rx.recv_timeout(UNSHARED_WITHIN).expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some("test-drop"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_reaches_the_caller() {
        let caught = tokio::spawn(run("test-background", || panic!("injected")))
            .await
            .expect_err("panicked");
        assert!(caught.is_panic());
    }
}
