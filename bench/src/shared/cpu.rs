//! CPU time of this process's thread groups, told apart by thread name, from Linux
//! `/proc/self/task/*/schedstat` (nanoseconds on a CPU, and waiting in a run queue for one). The in-process
//! benchmarks name their server and client runtimes' threads [`SERVER_THREADS`] and [`CLIENT_THREADS`], so a
//! [`Sample`] tells whether the server or the client side was the bottleneck; [`threads_seconds`] reads any
//! other group (the hub's adapter workers). Unavailable elsewhere.
//!
//! A server in another process (check-bench --global's envoyproxy/ratelimit) stands in for the server
//! threads while [`measure_server_process`] names it: its user + system time from `/proc/PID/stat`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::process;

/// Thread name prefix of the server runtime (worker and blocking threads).
pub const SERVER_THREADS: &str = "sextant-srv";
/// Thread name prefix of the client runtime.
pub const CLIENT_THREADS: &str = "sextant-cli";

/// The process whose CPU time is the server side's, instead of the server runtime's threads; 0: none.
static SERVER_PROCESS: AtomicU32 = AtomicU32::new(0);

/// From now on, samples take the server side's CPU time from process `pid` (its user + system time; the
/// time it waited for a CPU is unknown and read as 0) instead of the server runtime's threads; `None`: back
/// to the threads.
pub fn measure_server_process(pid: Option<u32>) {
    SERVER_PROCESS.store(pid.unwrap_or(0), Ordering::Relaxed);
}

/// For each of `prefixes`, the nanoseconds on a CPU and waiting for one, summed over this process's live
/// threads whose name starts with it (a thread counts for the first prefix it matches), read in one pass;
/// and whether any thread matched. `None` when `/proc/self/task` cannot be read.
fn schedstat<const N: usize>(prefixes: [&str; N]) -> Option<([[u64; 2]; N], bool)> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut sums = [[0u64; 2]; N];
    let mut seen_any = false;
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim_end_matches('\n');
        let Some(slot) = prefixes.iter().position(|p| comm.starts_with(p)) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        // schedstat: time on CPU, time waiting on a run queue, timeslices.
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(on)), Some(Some(waiting))) = (fields.next(), fields.next()) {
            sums[slot][0] += on;
            sums[slot][1] += waiting;
            seen_any = true;
        }
    }
    Some((sums, seen_any))
}

/// CPU seconds used so far by this process's live threads whose name starts with `prefix`; `None` off Linux.
pub fn threads_seconds(prefix: &str) -> Option<f64> {
    let ([[on, _]], _) = schedstat([prefix])?;
    Some(on as f64 / 1e9)
}

/// Nanoseconds the threads of each runtime have been on a CPU, and waiting in a run queue for one, so far.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    server: Option<[u64; 2]>,
    client: Option<[u64; 2]>,
}

/// Reads the current totals.
pub fn sample() -> Sample {
    let at = Instant::now();
    let Some(([server, client], seen_any)) = schedstat([SERVER_THREADS, CLIENT_THREADS]) else {
        return Sample {
            at,
            server: None,
            client: None,
        };
    };
    let server = match SERVER_PROCESS.load(Ordering::Relaxed) {
        0 => seen_any.then_some(server),
        pid => process::cpu_seconds(pid).map(|s| [(s * 1e9) as u64, 0]),
    };
    Sample {
        at,
        server,
        client: seen_any.then_some(client),
    }
}

/// Busy fraction of one core (1.0 = one core fully busy) of the server and client threads between two
/// samples, and the fraction of that time they waited in a run queue (ready but not running).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Server runtime threads.
    pub server: Option<f64>,
    /// Client runtime threads.
    pub client: Option<f64>,
    /// Server runtime threads, waiting for a CPU.
    pub server_waiting: Option<f64>,
    /// Client runtime threads, waiting for a CPU.
    pub client_waiting: Option<f64>,
}

/// The usage between `before` and `after`.
pub fn usage(before: Sample, after: Sample) -> Usage {
    usage_over(&[(before, after)])
}

/// The usage over several windows (each a pair of samples) taken together: their CPU time over their wall time.
pub fn usage_over(windows: &[(Sample, Sample)]) -> Usage {
    let wall: f64 = windows
        .iter()
        .map(|(b, a)| a.at.saturating_duration_since(b.at).as_nanos() as f64)
        .sum();
    if wall <= 0.0 {
        return Usage::default();
    }
    let part = |side: fn(&Sample) -> Option<[u64; 2]>, i: usize| -> Option<f64> {
        let mut ns = 0u64;
        for (b, a) in windows {
            ns += side(a)?[i].saturating_sub(side(b)?[i]);
        }
        Some(ns as f64 / wall)
    };
    Usage {
        server: part(|s| s.server, 0),
        client: part(|s| s.client, 0),
        server_waiting: part(|s| s.server, 1),
        client_waiting: part(|s| s.client, 1),
    }
}

/// On-CPU nanoseconds of each live thread of one group, by thread id, and when they were read: to tell
/// whether one thread of a side was the bottleneck where the side's total would not (a side of several
/// threads on one CPU can be at 100% with each thread at 40%, or at 70% with one thread saturated).
#[derive(Clone, Debug, Default)]
pub struct Threads {
    at: Option<Instant>,
    on: Vec<(u32, u64)>,
}

/// Reads the on-CPU time of each live thread of this process whose name starts with `prefix`; empty off
/// Linux.
pub fn threads(prefix: &str) -> Threads {
    let at = Some(Instant::now());
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Threads { at, on: Vec::new() };
    };
    let mut on = Vec::new();
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = task.path();
        let named = std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.starts_with(prefix));
        if !named {
            continue;
        }
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            on.push((tid, ns));
        }
    }
    Threads { at, on }
}

/// The busiest thread's share of one core between `before` and `after` (a thread started in between counts
/// from zero); `None` when no thread was read or no time passed.
pub fn busiest(before: &Threads, after: &Threads) -> Option<f64> {
    let wall = after.at?.saturating_duration_since(before.at?).as_nanos() as f64;
    if wall <= 0.0 {
        return None;
    }
    after
        .on
        .iter()
        .map(|&(tid, ns)| {
            let from = before
                .on
                .iter()
                .find(|(t, _)| *t == tid)
                .map_or(0, |(_, b)| *b);
            ns.saturating_sub(from) as f64 / wall
        })
        .reduce(f64::max)
}

impl Sample {
    /// When it was taken.
    pub fn at(&self) -> Instant {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_named_thread_is_counted_and_others_are_not() {
        if !std::path::Path::new("/proc/self/task").exists() {
            return;
        }
        // Spins until its own group has 50 ms on a CPU (however busy the machine), or gives up after 30 s.
        let spin = std::thread::Builder::new()
            .name("bench-cpu-test".into())
            .spawn(|| {
                let until = Instant::now() + std::time::Duration::from_secs(30);
                let mut x = 0u64;
                while Instant::now() < until {
                    for _ in 0..100_000 {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                    if threads_seconds("bench-cpu-test").is_some_and(|s| s >= 0.05) {
                        return true;
                    }
                }
                false
            })
            .expect("spawning a test thread");
        assert!(
            spin.join().expect("the test thread"),
            "a thread spinning for 30 s was never counted 50 ms on a CPU"
        );
        assert_eq!(threads_seconds("no thread is named this"), Some(0.0));
    }

    #[test]
    fn the_busiest_thread_of_a_group_is_found() {
        if !std::path::Path::new("/proc/self/task").exists() {
            return;
        }
        let before = threads("bench-busy-test");
        let spin = std::thread::Builder::new()
            .name("bench-busy-test".into())
            .spawn(|| {
                let until = Instant::now() + std::time::Duration::from_millis(200);
                let mut x = 0u64;
                while Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                threads("bench-busy-test")
            })
            .expect("spawning a test thread");
        let after = spin.join().expect("the test thread");
        let share = busiest(&before, &after).expect("the spinning thread was read");
        assert!(share > 0.0 && share <= 1.05, "{share}");
        assert_eq!(busiest(&before, &threads("no thread is named this")), None);
    }
}
