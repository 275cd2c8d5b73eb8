//! A whole process's resources from Linux `/proc`: user + system CPU time (`/proc/PID/stat`) and resident
//! memory (`/proc/PID/status`). Every reading is `None` off Linux or once the process is gone.

/// Kernel clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux architecture we run).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of process `pid` so far (10 ms resolution).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&pid.to_string())
}

/// This process's own user + system CPU seconds so far (10 ms resolution).
pub fn own_cpu_seconds() -> Option<f64> {
    stat_seconds("self")
}

/// User + system CPU seconds from `/proc/PID/stat` (`pid` may be `self`).
fn stat_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Memory of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss: u64,
    /// Peak resident set size (VmHWM).
    pub hwm: u64,
}

/// The memory of process `pid` now.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = status(pid)?;
    Some(Memory {
        rss: field_bytes(&status, "VmRSS:")?,
        hwm: field_bytes(&status, "VmHWM:")?,
    })
}

/// One field of process `pid`'s `/proc/PID/status` that is given in kB (`field` with its colon, e.g.
/// `RssAnon:`), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    field_bytes(&status(pid)?, field)
}

/// The text of `/proc/PID/status`.
fn status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The value of the kB line `field` of a `/proc/PID/status` text, in bytes.
fn field_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let me = std::process::id();
        let m = memory(me).expect("VmRSS and VmHWM of this process");
        assert!(m.rss > 0 && m.hwm >= m.rss, "{m:?}");
        assert!(status_bytes(me, "RssAnon:").is_some_and(|b| b > 0 && b <= m.hwm));
        assert!(cpu_seconds(me).is_some() && own_cpu_seconds().is_some());
        assert_eq!(status_bytes(me, "NoSuchField:"), None);
    }
}
