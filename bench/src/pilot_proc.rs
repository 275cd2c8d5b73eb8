//! `sextant pilot` as a child process: found next to the benchmark's executable (or given with
//! `--sextant`), started on loopback ports the kernel picks (read back from its ready line) with its log
//! in a file, ready when `/ready` answers 200,
//! measured through `/proc/PID/status` (VmRSS, VmHWM) and `/proc/PID/stat` (CPU time), killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;

/// Kernel clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on every Linux architecture we run).
const USER_HZ: f64 = 100.0;

/// The `sextant` binary: `explicit`, else the one built into the same target directory as this benchmark.
pub fn find_sextant(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(
            p.is_file(),
            "--sextant {}: no such file (build it with `cargo build --release -p sextant-cli --bin sextant`)",
            p.display()
        );
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating the benchmark executable")?;
    let dir = exe
        .parent()
        .context("the benchmark executable has no directory")?;
    let candidate = dir.join("sextant");
    anyhow::ensure!(
        candidate.is_file(),
        "no sextant binary at {} (build it with `cargo build --release -p sextant-cli --bin sextant`, or pass --sextant PATH)",
        candidate.display()
    );
    Ok(candidate)
}

/// pilot's ready line, `pilot: xDS on A, monitoring on http://B/debug/syncz`, in its log: (A, B). `None`
/// until the whole line is written.
fn ready_line(log: &Path) -> Option<(SocketAddr, SocketAddr)> {
    let text = std::fs::read_to_string(log).ok()?;
    // Only whole lines: the last piece may still be being written.
    let (whole, _) = text.rsplit_once('\n')?;
    let line = whole.lines().find(|l| l.starts_with("pilot: xDS on "))?;
    let mut addrs = line.split_whitespace().filter_map(|w| {
        let w = w.trim_end_matches(',');
        let w = w.strip_prefix("http://").unwrap_or(w);
        w.split('/').next()?.parse::<SocketAddr>().ok()
    });
    Some((addrs.next()?, addrs.next()?))
}

/// Memory of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident set size now (VmRSS).
    pub rss: u64,
    /// Peak resident set size (VmHWM).
    pub hwm: u64,
}

/// The running pilot.
pub struct Pilot {
    child: Child,
    /// Its ADS address.
    pub xds: SocketAddr,
    /// Its monitoring address.
    pub monitoring: SocketAddr,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Pilot {
    /// Starts `sextant pilot --config-dir config` on ports the kernel picks and waits (up to `timeout`)
    /// until it is ready.
    pub fn start(
        sextant: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Pilot> {
        Pilot::start_with(sextant, config, log, timeout, &[])
    }

    /// [`Pilot::start`] with more flags (e.g. `--hub-service HOST:PORT`).
    pub fn start_with(
        sextant: &Path,
        config: &Path,
        log: PathBuf,
        timeout: Duration,
        extra: &[&str],
    ) -> anyhow::Result<Pilot> {
        let out = std::fs::File::create(&log)
            .with_context(|| format!("creating the pilot log {}", log.display()))?;
        let err = out.try_clone().context("opening the pilot log")?;
        let child = Command::new(sextant)
            .arg("pilot")
            .arg("--config-dir")
            .arg(config)
            .args(["--xds-addr", "127.0.0.1:0"])
            .args(["--monitoring-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {} pilot", sextant.display()))?;
        // Until its ready line names them, the addresses are unknown (the Pilot kills the child on an error).
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut pilot = Pilot {
            child,
            xds: unknown,
            monitoring: unknown,
            log,
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = pilot.child.try_wait().context("waiting for pilot")? {
                anyhow::bail!(
                    "pilot exited with {status} before it was ready; its log: {}",
                    pilot.log.display()
                );
            }
            if pilot.monitoring == unknown
                && let Some((xds, monitoring)) = ready_line(&pilot.log)
            {
                (pilot.xds, pilot.monitoring) = (xds, monitoring);
            }
            if pilot.monitoring != unknown && http_status(pilot.monitoring, "/ready") == Some(200) {
                return Ok(pilot);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "pilot was not ready within {timeout:?}; its log: {}",
                pilot.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now; `None` off Linux or once it exited.
    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid())
    }

    /// Its user + system CPU seconds so far; `None` off Linux.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for Pilot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When pilot's log (at `log`) says it loaded the configuration directory at or after `since`: the
/// timestamp of the first `networking configuration loaded` line from then on.
pub fn reloaded_at(log: &Path, since: SystemTime) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains("networking configuration loaded"))
        .filter_map(|l| {
            let stamp = chrono::DateTime::parse_from_rfc3339(l.split_whitespace().next()?).ok()?;
            Some(SystemTime::from(stamp))
        })
        .find(|t| *t >= since)
}

/// The benchmark process's own user + system CPU seconds so far; `None` off Linux.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("/proc/self/stat")
}

/// The memory of process `pid` now, from `/proc/PID/status`; `None` off Linux or once it exited.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some(Memory {
        rss: kb("VmRSS:")? * 1024,
        hwm: kb("VmHWM:")? * 1024,
    })
}

/// User + system CPU seconds from a `/proc/*/stat` file.
pub fn cpu_seconds_of(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// The status code of a minimal HTTP/1.1 GET of `path` on `addr` (the server closes after answering).
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1)?.parse().ok()
}
