//! envoyproxy/ratelimit, the side-by-side peer of `check-bench --global`: built once with `go install` into
//! `target/bench-peers/` ([`crate::go_peer`]), started on free loopback ports against the
//! bench's Redis with a generated configuration directory, ready once its answers carry the configured
//! limit, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sextant_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use sextant_proto::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;

use crate::config::ConfigDir;
use crate::go_peer::{self, free_port};

/// The Go module.
pub const MODULE: &str = "github.com/envoyproxy/ratelimit";
/// The version built: the one the Go module proxy serves (it lists this pseudo-version only; `@latest`
/// answers 404).
pub const VERSION: &str = "v1.4.1-0.20260122083618-3fb702589d36";

/// The peer's binary: built by `go install` the first time, reused after (see [`go_peer::install`]).
pub fn build() -> Result<PathBuf, String> {
    go_peer::install(
        &format!("{MODULE}/src/service_cmd"),
        VERSION,
        &format!("ratelimit-{VERSION}"),
        "service_cmd",
    )
}

/// A running envoyproxy/ratelimit.
pub struct Peer {
    child: Child,
    /// Its gRPC address (Envoy's rate-limit service).
    pub grpc_addr: SocketAddr,
    log: PathBuf,
    _dir: ConfigDir,
}

impl Peer {
    /// Starts `bin` (on the CPUs of the calling thread; Go sizes GOMAXPROCS to them) with `config` as its
    /// only configuration file, counting in the Redis on `redis_port`.
    pub fn start(bin: &Path, redis_port: u16, config: &str) -> anyhow::Result<Peer> {
        let dir = ConfigDir::with_files("ratelimit", &[("ratelimit/config/bench.yaml", config)])?;
        let log = dir.path().join("ratelimit.log");
        let grpc_port = free_port()?;
        let grpc_addr: SocketAddr = ([127, 0, 0, 1], grpc_port).into();
        let child = Command::new(bin)
            .env_clear()
            .env("REDIS_SOCKET_TYPE", "tcp")
            .env("REDIS_URL", format!("127.0.0.1:{redis_port}"))
            .env("RUNTIME_ROOT", dir.path())
            .env("RUNTIME_SUBDIRECTORY", "ratelimit")
            .env("RUNTIME_WATCH_ROOT", "false")
            .env("USE_STATSD", "false")
            .env("LOG_LEVEL", "warn")
            .env("HOST", "127.0.0.1")
            .env("PORT", free_port()?.to_string())
            .env("GRPC_HOST", "127.0.0.1")
            .env("GRPC_PORT", grpc_port.to_string())
            .env("DEBUG_HOST", "127.0.0.1")
            .env("DEBUG_PORT", free_port()?.to_string())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("ratelimit.err"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Peer {
            child,
            grpc_addr,
            log,
            _dir: dir,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 30 s) until it answers `probe` with the configured limit.
    pub async fn ready(&mut self, probe: RateLimitRequest) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!("envoyproxy/ratelimit exited ({status}):\n{}", self.logs());
            }
            match RateLimitServiceClient::connect(format!("http://{}", self.grpc_addr)).await {
                Ok(mut c) => match c.should_rate_limit(probe.clone()).await {
                    Ok(r)
                        if r.get_ref()
                            .statuses
                            .iter()
                            .all(|s| s.current_limit.is_some()) =>
                    {
                        return Ok(());
                    }
                    Ok(r) => last = format!("answered without the limit: {:?}", r.get_ref()),
                    Err(e) => last = format!("ShouldRateLimit: {e}"),
                },
                Err(e) => last = format!("connecting: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "envoyproxy/ratelimit not ready within 30 s ({last}):\n{}",
            self.logs()
        )
    }

    /// The end of its output.
    fn logs(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text += &std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
