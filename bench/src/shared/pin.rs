//! Pins threads to CPUs, so the side under test has a core to itself, as it would if the load came from
//! another machine: check-bench's server runtime against its client runtime, proxy-bench's proxy against
//! everything else. Without it the kernel may wake a hub worker onto the CPU where the client's dispatcher
//! spins and leave it waiting there for milliseconds while the other CPU is idle (seen with
//! `perf sched timehist`), which the server is not to blame for.

use rustix::thread::{CpuSet, Pid, sched_getaffinity, sched_setaffinity};

/// The CPU of each side, or none when fewer than two CPUs are allowed (then nothing is pinned).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The side under test: the server runtime's threads and every thread they start (check-bench), the
    /// proxy (proxy-bench).
    pub server: usize,
    /// The load side: the client runtime's threads, the main thread once the servers run and the reload
    /// scenario's writer (check-bench); this process, its children and the load generators (proxy-bench).
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

/// The set of the one CPU `cpu`.
fn only(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

/// Pins the calling thread (and the threads it starts from now on) to `cpu`.
pub fn current_thread(cpu: usize) {
    // Best effort: a failure leaves the thread where the kernel puts it, which only adds noise.
    if let Err(e) = sched_setaffinity(None, &only(cpu)) {
        eprintln!("could not pin a thread to CPU {cpu}: {e}");
    }
}

/// Pins every thread process `pid` has now to `cpu` (threads it starts later inherit it from their creator);
/// returns how many were pinned. An error only when its threads cannot be listed (`/proc/PID/task`).
pub fn process(pid: u32, cpu: usize) -> std::io::Result<usize> {
    let set = only(cpu);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    let mut pinned = 0;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        // A thread that ended since the listing is not an error.
        if sched_setaffinity(Some(tid), &set).is_ok() {
            pinned += 1;
        }
    }
    Ok(pinned)
}
