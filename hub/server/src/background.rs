//! CPU-heavy background work (a reload's reading, parsing, CEL compilation and snapshot build, and freeing
//! the snapshot it replaced) on one long-lived thread under Linux's `SCHED_IDLE` policy: never on a runtime
//! worker, and on a busy machine it takes only the CPU that serving Checks leaves, since a runtime thread that
//! wakes up preempts it at once. (A niced thread of the normal policy keeps the CPU for the rest of its time
//! slice, and a thread started per job runs its first slice at normal priority: milliseconds that a Check then
//! waits.) It still gets a small share of a saturated CPU, so a reload finishes under any load, only later.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The background thread's name.
const THREAD: &str = "hub-background";

/// What the background thread is handed.
enum Job {
    /// Work to run now.
    Run(Box<dyn FnOnce() + Send>),
    /// A value to drop once it is unshared: called until it returns true (dropped).
    Drop(Box<dyn FnMut() -> bool + Send>),
}

/// The background thread's queue, started on first use. Its callers bound it: a hub reloads one at a time
/// (one job queued), and the snapshots replaced wait at most [`UNSHARED_WITHIN`] each.
fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(THREAD.to_string())
            .spawn(move || serve(&rx))
            .unwrap_or_else(|e| panic!("cannot start the {THREAD} thread: {e}"));
        tx
    })
}

/// The background thread: runs jobs in order and retries the pending drops every millisecond. A panic in a
/// job is caught where the job is made, so the thread outlives it.
fn serve(rx: &Receiver<Job>) {
    lower_priority();
    let mut pending: Vec<Box<dyn FnMut() -> bool + Send>> = Vec::new();
    loop {
        let job = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(Duration::from_millis(1))
        };
        match job {
            Ok(Job::Run(work)) => work(),
            Ok(Job::Drop(attempt)) => pending.push(attempt),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pending.retain_mut(|attempt| !attempt());
    }
}

/// Runs `work` on the background thread and waits for its result without blocking the runtime. A panic of
/// `work` is resumed in the caller (so the caller's supervisor counts it).
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job::Run(Box::new(move || {
        let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
    }));
    if queue().send(job).is_err() {
        panic!("the {THREAD} thread has stopped");
    }
    match rx.await {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the {THREAD} thread dropped a job without an answer"),
    }
}

/// How long [`drop_when_unshared`] waits for the other holders of a value before dropping its own share.
const UNSHARED_WITHIN: Duration = Duration::from_secs(10);

/// Drops `value` on the background thread once nobody else holds it (or after [`UNSHARED_WITHIN`]): a
/// replaced configuration can take milliseconds to free, which should delay neither a runtime worker nor the
/// Check that happened to hold it last. No new clones may be made of `value`.
pub fn drop_when_unshared<T: Send + Sync + 'static>(value: Arc<T>) {
    let since = Instant::now();
    let mut value = Some(value);
    send_drop(Box::new(move || {
        let shared = value
            .as_ref()
            .is_some_and(|v| Arc::strong_count(v) > 1 && since.elapsed() < UNSHARED_WITHIN);
        if !shared {
            drop_caught(value.take());
        }
        !shared
    }));
}

/// Drops `value` on the background thread: freeing a large value (a whole parsed configuration) takes
/// milliseconds.
pub fn drop_elsewhere<T: Send + 'static>(value: T) {
    let mut value = Some(value);
    send_drop(Box::new(move || {
        drop_caught(value.take());
        true
    }));
}

fn send_drop(attempt: Box<dyn FnMut() -> bool + Send>) {
    if let Err(unsent) = queue().send(Job::Drop(attempt)) {
        tracing::warn!("the {THREAD} thread has stopped; the value is dropped where it is");
        drop(unsent);
    }
}

fn drop_caught<T>(value: T) {
    if std::panic::catch_unwind(AssertUnwindSafe(move || drop(value))).is_err() {
        tracing::error!("a replaced value panicked while being dropped");
    }
}

/// Moves the calling thread to the `SCHED_IDLE` policy (unprivileged: it only lowers the priority).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::debug!(error = ?e, "cannot move the background thread to SCHED_IDLE; it runs at normal priority");
        }
        // The change takes effect at the next scheduling decision: make it now, not at the next tick.
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy, from procfs (`SCHED_IDLE` is 5).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
        // Fields after the command name (which is in parentheses and may hold spaces) start at field 3;
        // policy is field 41.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split(' ')
            .nth(41 - 3)
            .expect("policy")
            .parse()
            .expect("a number")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_at_idle_priority_and_returns_its_result() {
        assert_eq!(policy(), 0, "the test runs under SCHED_OTHER");
        assert_eq!(run(policy).await, 5);
    }

    /// Sends the name of the thread that drops it.
    struct Noted(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for Noted {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(String::from));
        }
    }

    #[test]
    fn a_shared_value_is_dropped_elsewhere_once_its_last_holder_lets_go() {
        let (tx, rx) = std::sync::mpsc::channel();
        let value = Arc::new(Noted(tx));
        let held = value.clone();
        drop_when_unshared(value);
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "not dropped while held"
        );
        drop(held);
        let dropped_on = rx.recv_timeout(UNSHARED_WITHIN).expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some(THREAD));
    }

    #[test]
    fn a_value_handed_over_is_dropped_on_the_background_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        drop_elsewhere(Noted(tx));
        let dropped_on = rx.recv_timeout(UNSHARED_WITHIN).expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some(THREAD));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_reaches_the_caller_and_the_thread_serves_on() {
        let caught = tokio::spawn(run(|| panic!("injected")))
            .await
            .expect_err("panicked");
        assert!(caught.is_panic());
        assert_eq!(run(|| 7).await, 7);
    }
}
