//! The reload scenario of `check-bench`: Check latency at a fixed rate while the hub reloads a large
//! configuration over and over, against the same rate with that configuration loaded and left alone.
//!
//! A reload reads, parses and validates every file and compiles the CEL expressions the serving
//! configuration has not compiled. Each rewrite changes every policy's deny message and one policy's
//! condition: everything is parsed and validated again, one expression is new. Before the hub moved that work
//! off the runtime it ran on a runtime worker, and every Check queued behind it waited for the whole reload.
//! Goal (reported, never asserted): p99 with reloads ≤ 1.2× p99 without.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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

/// A thread rewriting the large configuration every `every` until dropped.
pub struct Rewriter {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rewriter {
    /// Starts rewriting `dir`'s large file with `n` policies.
    pub fn start(dir: PathBuf, n: usize, every: Duration) -> Rewriter {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, writes) = (stop.clone(), writes.clone());
            std::thread::spawn(move || {
                // Rendered once per variant: the writer itself costs next to nothing.
                let texts = [large_yaml(n, 1), large_yaml(n, 2)];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if std::fs::write(dir.join(FILE), &texts[i % 2]).is_ok() {
                        writes.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                    std::thread::sleep(every);
                }
            })
        };
        Rewriter {
            stop,
            writes,
            thread: Some(thread),
        }
    }

    /// Rewrites so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl Drop for Rewriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
