//! Pins the two sides of a run to different CPUs, so the server side has one core to itself (shared only with
//! the hub's own reload thread), as it would if the client were another machine. Without it the kernel may wake
//! a hub worker onto the CPU where the client's dispatcher spins and leave it waiting there for milliseconds
//! while the other CPU is idle (seen with `perf sched timehist`), which the server is not to blame for.

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The CPU of each side, or none when fewer than two CPUs are allowed (then nothing is pinned).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Server runtime threads and every thread they start.
    pub server: usize,
    /// Client runtime threads, the main thread once the servers run, and the reload scenario's writer.
    pub client: usize,
}

impl Layout {
    /// The first two CPUs this process may run on, if it may run on two.
    pub fn detect() -> Option<Layout> {
        let allowed = sched_getaffinity(None).ok()?;
        let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
        Some(Layout {
            server: cpus.next()?,
            client: cpus.next()?,
        })
    }
}

/// Pins the calling thread (and the threads it starts from now on) to `cpu`.
pub fn current_thread(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    // Best effort: a failure leaves the thread where the kernel puts it, which only adds noise.
    if let Err(e) = sched_setaffinity(None, &set) {
        eprintln!("could not pin a thread to CPU {cpu}: {e}");
    }
}
