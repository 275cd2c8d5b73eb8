//! CPU time of the server and client runtime threads, from Linux `/proc/self/task/*/schedstat` (nanoseconds
//! on CPU). Tells whether the server or the client side was the bottleneck. Unavailable elsewhere.

use std::time::Instant;

/// Thread name prefix of the server runtime (worker and blocking threads).
pub const SERVER_THREADS: &str = "sextant-srv";
/// Thread name prefix of the client runtime.
pub const CLIENT_THREADS: &str = "sextant-cli";

/// CPU nanoseconds used so far by the threads of each runtime.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    server_ns: Option<u64>,
    client_ns: Option<u64>,
}

/// Reads the current totals.
pub fn sample() -> Sample {
    let at = Instant::now();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Sample {
            at,
            server_ns: None,
            client_ns: None,
        };
    };
    let (mut server, mut client) = (0u64, 0u64);
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
        if let Some(ns) = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            *slot += ns;
            seen_any = true;
        }
    }
    if seen_any {
        Sample {
            at,
            server_ns: Some(server),
            client_ns: Some(client),
        }
    } else {
        Sample {
            at,
            server_ns: None,
            client_ns: None,
        }
    }
}

/// Busy fraction of one core (1.0 = one core fully busy) of the server and client threads between two samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Server runtime threads.
    pub server: Option<f64>,
    /// Client runtime threads.
    pub client: Option<f64>,
}

/// The usage between `before` and `after`.
pub fn usage(before: Sample, after: Sample) -> Usage {
    let wall = after.at.saturating_duration_since(before.at).as_nanos() as f64;
    if wall <= 0.0 {
        return Usage::default();
    }
    let frac = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?) as f64 / wall);
    Usage {
        server: frac(before.server_ns, after.server_ns),
        client: frac(before.client_ns, after.client_ns),
    }
}
