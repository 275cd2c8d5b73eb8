//! CPU time of the server and client runtime threads, from Linux `/proc/self/task/*/schedstat` (nanoseconds
//! on CPU). Tells whether the server or the client side was the bottleneck. Unavailable elsewhere.
//!
//! A server in another process (check-bench --global's envoyproxy/ratelimit) stands in for the server
//! threads while [`measure_server_process`] names it: its user + system time from `/proc/PID/stat`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Thread name prefix of the server runtime (worker and blocking threads).
pub const SERVER_THREADS: &str = "sextant-srv";
/// Thread name prefix of the client runtime.
pub const CLIENT_THREADS: &str = "sextant-cli";

/// The process whose CPU time is the server side's, instead of the server runtime's threads; 0: none.
static SERVER_PROCESS: AtomicU32 = AtomicU32::new(0);

/// Kernel clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux architecture we run).
const USER_HZ: f64 = 100.0;

/// From now on, samples take the server side's CPU time from process `pid` (its user + system time; the
/// time it waited for a CPU is unknown and read as 0) instead of the server runtime's threads; `None`: back
/// to the threads.
pub fn measure_server_process(pid: Option<u32>) {
    SERVER_PROCESS.store(pid.unwrap_or(0), Ordering::Relaxed);
}

/// User + system CPU seconds of process `pid` (`"self"` for this one) so far, from `/proc/PID/stat`; `None`
/// off Linux or when the process is gone.
pub fn stat_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
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
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Sample {
            at,
            server: None,
            client: None,
        };
    };
    let (mut server, mut client) = ([0u64; 2], [0u64; 2]);
    let mut seen_any = false;
    for task in tasks.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        let slot = if comm.starts_with(SERVER_THREADS) {
            &mut server
        } else if comm.starts_with(CLIENT_THREADS) {
            &mut client
        } else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        // schedstat: time on CPU, time waiting on a run queue, timeslices.
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        if let (Some(Some(on)), Some(Some(waiting))) = (fields.next(), fields.next()) {
            slot[0] += on;
            slot[1] += waiting;
            seen_any = true;
        }
    }
    let server = match SERVER_PROCESS.load(Ordering::Relaxed) {
        0 => seen_any.then_some(server),
        pid => stat_seconds(&pid.to_string()).map(|s| [(s * 1e9) as u64, 0]),
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

impl Sample {
    /// When it was taken.
    pub fn at(&self) -> Instant {
        self.at
    }
}
