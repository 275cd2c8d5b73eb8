//! CPU time of the whole process and of the adapter worker threads (complements `cpu.rs`, which covers the
//! server and client runtimes). Linux only: `/proc/self/stat` (user + system, in clock ticks) for the process,
//! `/proc/self/task/*/schedstat` (ns on CPU) per thread.

/// Thread name prefix of the hub's adapter workers (`adapter <ns/name>`, cut to 15 bytes by the kernel).
pub const ADAPTER_THREADS: &str = "adapter ";

/// Kernel clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux architecture we run).
const USER_HZ: f64 = 100.0;

/// Process user + system CPU seconds so far; `None` off Linux.
pub fn process_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
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
