//! CPU time of the whole process and of the adapter worker threads (complements `cpu.rs`, which covers the
//! server and client runtimes). Linux only: `/proc/self/stat` (user + system, in clock ticks) for the process,
//! `/proc/self/task/*/schedstat` (ns on CPU) per thread.

/// Thread name prefix of the hub's adapter workers (`adapter <ns/name>`, cut to 15 bytes by the kernel).
pub const ADAPTER_THREADS: &str = "adapter ";

/// Process user + system CPU seconds so far; `None` off Linux.
pub fn process_seconds() -> Option<f64> {
    crate::cpu::stat_seconds("self")
}

/// CPU seconds used so far by the live threads whose name starts with `prefix`; `None` off Linux.
pub fn threads_seconds(prefix: &str) -> Option<f64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if !comm.starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        if let Some(v) = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            ns += v;
        }
    }
    Some(ns as f64 / 1e9)
}
