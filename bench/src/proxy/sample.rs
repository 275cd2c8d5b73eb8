//! What is sampled around a load phase: the proxy's CPU seconds (`/proc/PID/stat`, utime + stime), its peak
//! resident memory (VmRSS every 100 ms on a thread of its own, summed over a chain of proxies), and how busy each CPU of the machine was
//! (`/proc/stat`), which says whether the proxy or the load side (backend + load generator) was the limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sextant_bench::process;

/// How often the resident memory is read.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// Samples the summed VmRSS of some processes until finished.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl RssSampler {
    /// Starts sampling processes `pids`.
    pub fn start(pids: Vec<u32>) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peak = 0;
                while !flag.load(Ordering::Relaxed) {
                    let sum: Option<u64> = pids
                        .iter()
                        .map(|&pid| process::memory(pid).map(|m| m.rss))
                        .sum();
                    if let Some(rss) = sum {
                        peak = peak.max(rss);
                    }
                    std::thread::sleep(RSS_EVERY);
                }
                peak
            })
            .ok();
        RssSampler { stop, thread }
    }

    /// Stops sampling; the highest VmRSS seen, in bytes (`None` if nothing could be read).
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.take()?.join().ok()?;
        (peak > 0).then_some(peak)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Per-CPU jiffies from `/proc/stat`: (busy, total) for `cpu0`, `cpu1`, ….
#[derive(Clone, Debug, Default)]
pub struct CpuTimes(Vec<(u64, u64)>);

impl CpuTimes {
    /// Reads them now (empty off Linux).
    pub fn now() -> CpuTimes {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return CpuTimes::default();
        };
        CpuTimes(
            stat.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .map(|l| {
                    let v: Vec<u64> = l
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|f| f.parse().ok())
                        .collect();
                    let total: u64 = v.iter().take(8).sum();
                    // idle and iowait are the 4th and 5th columns.
                    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                    (total.saturating_sub(idle), total)
                })
                .collect(),
        )
    }

    /// The busy fraction of each CPU between `self` (earlier) and `later`.
    pub fn busy_until(&self, later: &CpuTimes) -> Vec<f64> {
        self.0
            .iter()
            .zip(&later.0)
            .map(|((b0, t0), (b1, t1))| {
                let total = t1.saturating_sub(*t0);
                if total == 0 {
                    0.0
                } else {
                    b1.saturating_sub(*b0) as f64 / total as f64
                }
            })
            .collect()
    }
}

/// Busy fractions as `cpu0 97%, cpu1 64%`.
pub fn describe_busy(busy: &[f64]) -> String {
    busy.iter()
        .enumerate()
        .map(|(i, b)| format!("cpu{i} {:.0}%", b * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}
