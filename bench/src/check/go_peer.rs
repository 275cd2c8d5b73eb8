//! The peers check-bench compares the hub with that are Go programs (envoyproxy/ratelimit for `--global`,
//! OPA): each built once with `go install` from the Go module proxy into `target/bench-peers/` (module and
//! build caches there too, writable so that `cargo clean` can remove them) and reused after.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// `target/bench-peers`, next to the directory of this benchmark's executable.
fn peers_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating check-bench: {e}"))?;
    exe.parent()
        .and_then(Path::parent)
        .map(|target| target.join("bench-peers"))
        .ok_or_else(|| format!("{} has no target directory", exe.display()))
}

/// The binary `bin` of `package@version` (`package` the module path, or a command inside it), built by
/// `go install` into `target/bench-peers/DIR` the first time and reused after. The error says exactly why it
/// is unavailable (go missing, the module not served, the build failing: the last lines of go's output).
pub fn install(package: &str, version: &str, dir: &str, bin: &str) -> Result<PathBuf, String> {
    let peers = peers_dir()?;
    let bin_dir = peers.join(dir);
    let bin = bin_dir.join(bin);
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "building {package}@{version} with go install into {} (once)",
        bin_dir.display()
    );
    let started = Instant::now();
    let out = Command::new("go")
        .arg("install")
        .arg(format!("{package}@{version}"))
        .env("GOBIN", &bin_dir)
        .env("GOCACHE", peers.join("go-build"))
        .env("GOMODCACHE", peers.join("go-mod"))
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `go install`: {e} (is Go installed and on PATH?)"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("go: downloading"))
            .collect();
        let tail = tail[tail.len().saturating_sub(15)..].join("\n");
        return Err(format!(
            "`go install {package}@{version}` failed ({}):\n{tail}",
            out.status
        ));
    }
    if !bin.is_file() {
        return Err(format!(
            "go install succeeded but left no {}",
            bin.display()
        ));
    }
    eprintln!("built in {:.0?}", started.elapsed());
    Ok(bin)
}

/// A port nobody listened on a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
