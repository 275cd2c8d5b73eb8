//! What starting a `sextant` child process (pilot, hub, proxy) or Envoy takes: finding the `sextant` binary,
//! a log file for the child's stdout and stderr, and the addresses its ready line names once it bound its
//! ports (they are all started on port 0).

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The `sextant` binary: `explicit` (`--sextant PATH`), else the one built into the same target directory as
/// this benchmark.
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

/// `log` created afresh, opened twice: for a child's stdout and its stderr. `what` names the child in errors.
pub fn log_files(log: &Path, what: &str) -> anyhow::Result<(File, File)> {
    let out =
        File::create(log).with_context(|| format!("creating the {what} log {}", log.display()))?;
    let err = out
        .try_clone()
        .with_context(|| format!("opening the {what} log"))?;
    Ok((out, err))
}

/// The addresses on the first line of the log `log` that starts with `prefix`, in order: each word that is
/// an address, or a URL whose host is one (`pilot: xDS on A, monitoring on http://B/debug/syncz` → [A, B]).
/// `None` until that whole line is written.
pub fn ready_addrs(log: &Path, prefix: &str) -> Option<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(log).ok()?;
    // Only whole lines: the last piece may still be being written.
    let (whole, _) = text.rsplit_once('\n')?;
    let line = whole.lines().find(|l| l.starts_with(prefix))?;
    Some(words_addrs(line))
}

/// The addresses among the words of `line`.
fn words_addrs(line: &str) -> Vec<SocketAddr> {
    line.split_whitespace()
        .filter_map(|w| {
            let w = w.trim_end_matches(',');
            let w = w.strip_prefix("http://").unwrap_or(w);
            w.split('/').next()?.parse::<SocketAddr>().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_give_their_addresses_in_order() {
        let a: SocketAddr = "127.0.0.1:4001".parse().expect("address");
        let b: SocketAddr = "127.0.0.1:4002".parse().expect("address");
        assert_eq!(
            words_addrs(
                "pilot: xDS on 127.0.0.1:4001, monitoring on http://127.0.0.1:4002/debug/syncz"
            ),
            [a, b]
        );
        assert_eq!(
            words_addrs(
                "hub: gRPC on 127.0.0.1:4001, admin on http://127.0.0.1:4002/readyz, prometheus on x"
            ),
            [a, b]
        );
        assert_eq!(
            words_addrs("proxy: admin on http://127.0.0.1:4001/ready, …"),
            [a]
        );
    }

    #[test]
    fn a_line_still_being_written_is_not_read() {
        let log =
            std::env::temp_dir().join(format!("sextant-bench-child-test-{}", std::process::id()));
        std::fs::write(
            &log,
            "starting\npilot: xDS on 127.0.0.1:4001, monitoring on http://127.0.0.1:40",
        )
        .expect("writing the test log");
        assert_eq!(ready_addrs(&log, "pilot: xDS on "), None);
        std::fs::write(
            &log,
            "pilot: xDS on 127.0.0.1:4001, monitoring on http://127.0.0.1:4002/\n",
        )
        .expect("writing the test log");
        assert_eq!(
            ready_addrs(&log, "pilot: xDS on ").map(|a| a.len()),
            Some(2)
        );
        assert_eq!(ready_addrs(&log, "hub: gRPC on "), None);
        let _ = std::fs::remove_file(&log);
    }
}
