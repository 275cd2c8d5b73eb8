//! The reload scenario of `check-bench`: Check latency at a fixed rate while the hub reloads a large
//! configuration, against the same rate with that configuration loaded and left alone.
//!
//! A reload reads, parses and validates every file and compiles the CEL expressions the serving
//! configuration has not compiled. Each rewrite changes every policy's deny message and one policy's
//! condition: everything is parsed and validated again, one expression is new. Before the hub moved that work
//! off the runtime it ran on a runtime worker, and every Check queued behind it waited for the whole reload.
//!
//! One open-loop run alternates two kinds of window: a *reloading* window from a rewrite until the hub serves
//! it plus [`SETTLE`] (the replaced snapshot is freed then), and a *quiet* window of the same length with no
//! change. Each call counts in the window of its intended send time. Interleaving the two, rather than
//! measuring one run after the other, spreads whatever else the shared machine does over both alike.
//! Goal (reported, never asserted): p99 while reloading ≤ 1.2× p99 left alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sextant_bench::cpu;

/// The file the scenario writes next to the benchmark configuration.
const FILE: &str = "large.yaml";

/// `n` policies for services the traffic never calls (so decisions do not change), 5 rules each;
/// `variant` changes every message and the first policy's `banned` condition, so each write is a change the
/// hub must load in full.
pub fn large_yaml(n: usize, variant: u64) -> String {
    let mut y = String::new();
    for i in 0..n {
        let user = if i == 0 {
            format!("user-{i}-v{variant}")
        } else {
            format!("user-{i}")
        };
        let _ = write!(
            y,
            r#"---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: big-{i}, namespace: bench}}
spec:
  selector: 'destination.service.name == "big-{i}"'
  defaultAction: ALLOW
  rules:
  - name: banned
    when: 'request.headers["x-user"] in ["guest", "{user}"]'
    action: DENY
    status: {{code: PERMISSION_DENIED, httpStatus: 403, message: "banned from big-{i} (v{variant})"}}
  - name: admin
    when: 'request.path.startsWith("/admin") && !request.headers["x-user"].endsWith("@staff")'
    action: DENY
  - name: audit
    when: 'request.method in ["POST", "PUT", "DELETE"]'
    action: AUDIT
  - name: staff
    when: 'request.headers.exists(h, h.startsWith("x-staff-")) || request.headers["x-user"].endsWith("@staff")'
    action: ALLOW
  - name: reads
    when: 'request.method == "GET" && request.path.matches("^/api/v[0-9]+/big-{i}/")'
    action: ALLOW
"#
        );
    }
    y
}

/// Writes the large configuration once (variant 0).
pub fn write_large(dir: &Path, n: usize) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE), large_yaml(n, 0))
}

/// What follows a reload in its window: freeing the replaced snapshot (retried every millisecond until no Check
/// holds it) and the allocator giving pages back (after 10 ms) both happen within it.
const SETTLE: Duration = Duration::from_millis(250);

/// How long a reload may take before the scenario gives up.
const RELOAD_WITHIN: Duration = Duration::from_secs(60);

/// A window of the scenario: when it began and ended, with the CPU samples taken at both ends.
#[derive(Clone, Copy)]
pub struct Window {
    /// CPU sample at the start.
    pub from: cpu::Sample,
    /// CPU sample at the end.
    pub to: cpu::Sample,
}

impl Window {
    /// Start and end.
    pub fn span(&self) -> (Instant, Instant) {
        (self.from.at(), self.to.at())
    }
}

/// The windows an [`Alternator`] went through.
#[derive(Default)]
pub struct Windows {
    /// From each rewrite until its reload was served and settled.
    pub reloading: Vec<Window>,
    /// As long as the reloading window before it, with no change.
    pub quiet: Vec<Window>,
    /// For each reload, from the rewrite until the hub served it.
    pub reload_times: Vec<Duration>,
}

/// A thread alternating reloading and quiet windows until stopped.
pub struct Alternator {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<Windows>>,
}

impl Alternator {
    /// Starts alternating: rewrites `dir`'s large file with `n` policies, and reads the hub's serving revision
    /// with `revision` to tell when it was reloaded.
    pub fn start(
        dir: PathBuf,
        n: usize,
        revision: impl Fn() -> u64 + Send + 'static,
    ) -> Alternator {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || alternate(&dir, n, &revision, &stop))
        };
        Alternator { stop, thread }
    }

    /// Stops at the end of the current window and returns the windows completed.
    pub fn finish(self) -> anyhow::Result<Windows> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the rewriting thread panicked"))?
    }
}

fn alternate(
    dir: &Path,
    n: usize,
    revision: &dyn Fn() -> u64,
    stop: &AtomicBool,
) -> anyhow::Result<Windows> {
    // Rendered once per variant: the writer itself costs next to nothing.
    let texts = [large_yaml(n, 1), large_yaml(n, 2)];
    let (file, staged) = (dir.join(FILE), dir.join(".large.staged"));
    let mut windows = Windows::default();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let before = revision();
        let from = cpu::sample();
        // Renamed into place, as configuration tools do, so the hub never reads a half-written file.
        std::fs::write(&staged, &texts[i % 2])?;
        std::fs::rename(&staged, &file)?;
        while revision() == before {
            anyhow::ensure!(
                from.at().elapsed() < RELOAD_WITHIN,
                "the hub did not reload within {RELOAD_WITHIN:?} of a rewrite"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        windows.reload_times.push(from.at().elapsed());
        std::thread::sleep(SETTLE);
        let to = cpu::sample();
        windows.reloading.push(Window { from, to });
        let length = to.at() - from.at();
        std::thread::sleep(length);
        windows.quiet.push(Window {
            from: to,
            to: cpu::sample(),
        });
    }
    Ok(windows)
}
