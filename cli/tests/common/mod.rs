//! Shared harness of the integration tests: the real `sextant` binary, real peers (Envoy, grpcio from the
//! venv that `.ci/peers` installs), a plain HTTP backend, and waiting on conditions instead of sleeping.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `.ci/peers` installed the test peers.
pub fn peers() -> PathBuf {
    let dir =
        std::env::var_os("SEXTANT_PEERS").map_or_else(|| repo().join(".peers"), PathBuf::from);
    let envoy = dir.join("venv/bin/envoy");
    assert!(
        envoy.exists(),
        "test peers missing: {} not found. Run `.ci/peers` (or the README's test command) first.",
        envoy.display()
    );
    dir
}

/// The venv's python (grpcio, grpcio-tools).
pub fn python() -> PathBuf {
    peers().join("venv/bin/python")
}

/// A loopback port reserved for the whole test, for the ports a resource must name before anything binds
/// them: the port of a ServiceEntry or Gateway that pilot turns into an Envoy listener, or an address where
/// nobody must answer.
///
/// Probing a free port and releasing it races with every other process picking ports (a parallel test, an
/// outgoing connection): the port may be taken before Envoy binds it. This socket is bound with
/// SO_REUSEPORT and SO_REUSEADDR and never listens, so the kernel hands the port to no one else (no port-0
/// bind, no ephemeral port of a connection, no bind without SO_REUSEPORT), while Envoy, which binds its
/// listeners with SO_REUSEPORT as the same user, can still bind and listen on it. A connection to the port
/// while only this socket holds it is refused: the held port is also a dead address.
pub struct HeldPort {
    _socket: tokio::net::TcpSocket,
    /// The held address (127.0.0.1).
    pub addr: SocketAddr,
}

impl HeldPort {
    /// Holds a fresh port on 127.0.0.1.
    pub fn hold() -> HeldPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a port to hold");
        let addr = socket.local_addr().expect("held address");
        HeldPort {
            _socket: socket,
            addr,
        }
    }

    /// The held port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The socket addresses in `line`, in order: each word that is `IP:PORT`, or `http://IP:PORT/...`, or
/// `address=IP:PORT`, after trailing commas are dropped.
pub fn addrs_in(line: &str) -> Vec<SocketAddr> {
    line.split_whitespace()
        .filter_map(|w| {
            let w = w.trim_end_matches(',');
            let w = w.strip_prefix("address=").unwrap_or(w);
            let w = w.strip_prefix("http://").unwrap_or(w);
            w.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Waits for `sextant pilot`'s ready line and returns (xDS, monitoring) as it bound them.
pub fn pilot_addrs(pilot: &mut Proc) -> (SocketAddr, SocketAddr) {
    let line = pilot.wait_for_line("pilot: xDS on ", Duration::from_secs(60));
    match addrs_in(&line)[..] {
        [xds, monitoring] => (xds, monitoring),
        _ => panic!("pilot's ready line names two addresses: {line}"),
    }
}

/// Starts `sextant pilot` on `config` with its xDS port at `xds_addr` (`127.0.0.1:0`: one the kernel picks)
/// and waits until it is ready; returns it with its (xDS, monitoring) addresses.
pub fn start_pilot(config: &Path, xds_addr: &str) -> (Proc, SocketAddr, SocketAddr) {
    start_pilot_with(config, xds_addr, &[])
}

/// [`start_pilot`] with more flags.
pub fn start_pilot_with(
    config: &Path,
    xds_addr: &str,
    args: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    start_pilot_env(config, xds_addr, args, &[])
}

/// [`start_pilot_with`] with environment variables too (`OTEL_*`, say).
pub fn start_pilot_env(
    config: &Path,
    xds_addr: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--config-dir"])
        .arg(config)
        .args(["--xds-addr", xds_addr])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    let mut proc = Proc::spawn("pilot", cmd, scratch("pilot-log").join("pilot.log"));
    let (xds, monitoring) = pilot_addrs(&mut proc);
    wait_until(Duration::from_secs(60), "pilot to be ready", || {
        assert!(proc.alive(), "pilot exited:\n{}", proc.log());
        get(monitoring, "/ready", &[]).is_some_and(|r| r.status == 200)
    });
    (proc, xds, monitoring)
}

/// GET `path` from `addr` as JSON; `Null` when it cannot be fetched or is not JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    get(addr, path, &[])
        .and_then(|r| serde_json::from_str(&r.body).ok())
        .unwrap_or_default()
}

/// A fresh scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sextant-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A fresh scratch directory (see [`scratch`]) and an empty `config` directory in it: what a hub or pilot
/// watches, apart from the other files a test writes.
pub fn scratch_config(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("create the config dir");
    (dir, config)
}

/// The cargo target directory of this test binary (`target/`), for state shared by a test run.
pub fn target_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_sextant"));
    // target/debug/sextant → target
    exe.parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Polls `cond` until it holds, failing with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Whether `cond` holds within `timeout` (polled), for callers that say themselves what went wrong.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// A running `sextant dev` and the addresses it printed.
pub struct DevMesh {
    /// The process (its output: `log()`, `wait_for_line`).
    pub proc: Proc,
    /// Its loopback network (`127.X`).
    pub net: String,
    /// productpage's sidecar: the entry of the demo.
    pub entry: SocketAddr,
    /// The hub's admin (query API, dashboard, `/metrics`).
    pub admin: SocketAddr,
    /// The hub's adapter exposition (Istio's metrics).
    pub metrics: SocketAddr,
}

/// The workloads of `sextant dev`'s bookinfo as the hub's graph names them.
pub const BOOKINFO_NODES: [&str; 6] = [
    "bookinfo/productpage/v1",
    "bookinfo/details/v1",
    "bookinfo/ratings/v1",
    "bookinfo/reviews/v1",
    "bookinfo/reviews/v2",
    "bookinfo/reviews/v3",
];

/// Starts `sextant dev` with `config` as its directory on loopback network `127.{first + pid % span}` (so that
/// the tests using it, in one run or across runs, keep apart), the hub on ports the kernel picks, and `args`
/// more; returns once the mesh is up.
pub fn start_dev(dir: &Path, config: &Path, first: u32, span: u32, args: &[&str]) -> DevMesh {
    let net = format!("127.{}", first + std::process::id() % span);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["dev", "--loopback", &net, "--config-dir"])
        .arg(config)
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .args(["--prometheus-addr", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    DevMesh::up(Proc::spawn("sextant dev", cmd, dir.join("dev.log")), net)
}

impl DevMesh {
    /// The dev mesh `proc` on loopback network `net`, once it says it is up: its addresses from what it
    /// printed.
    pub fn up(mut proc: Proc, net: String) -> DevMesh {
        let wait = Duration::from_secs(120);
        proc.wait_for_line("the bookinfo mesh is up", wait);
        let line = proc.wait_for_line("productpage  http://", wait);
        let entry = addrs_in(&line)[0];
        // `hub  gRPC ADDR, admin http://ADDR/metrics, adapter metrics http://ADDR/metrics`
        let line = proc.wait_for_line("adapter metrics http://", wait);
        let [_, admin, metrics] = addrs_in(&line)[..] else {
            panic!("the hub's line names its gRPC, admin and adapter metrics addresses: {line}");
        };
        DevMesh {
            proc,
            net,
            entry,
            admin,
            metrics,
        }
    }
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl HttpResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A one-shot HTTP/1.1 request (Connection: close); None when the connection fails.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: test.local\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("content-length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The payload of a chunked body (Envoy's admin sends some answers chunked); None when it is cut short.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// GET `path` through `addr` for the service `host`: (status, body). Reads exactly the response (by its
/// content-length) instead of waiting for the close: Envoy delays closing after a local reply.
pub fn call(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len || n == 0 {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                return Some((status, body.to_string()));
            }
        }
        if n == 0 {
            return None;
        }
    }
}

/// GET on 127.0.0.1.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<HttpResponse> {
    http(addr, "GET", path, headers)
}

/// A child process killed on drop, its output in a log file shown on failure.
pub struct Proc {
    child: Child,
    log: PathBuf,
    name: &'static str,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, log, name }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the process has written a whole line containing `what` (the log keeps receiving the
    /// rest of its output) and returns that line; fails when the process exits or `timeout` passes first.
    pub fn wait_for_line(&mut self, what: &str, timeout: Duration) -> String {
        let mut found = None;
        wait_until(timeout, &format!("{} to print {what:?}", self.name), || {
            let log = self.log();
            // Only whole lines: the last piece may still be being written.
            let whole = log.rsplit_once('\n').map_or("", |(lines, _)| lines);
            found = whole.lines().find(|l| l.contains(what)).map(str::to_string);
            if found.is_none() {
                assert!(self.alive(), "{} exited:\n{}", self.name, self.log());
            }
            found.is_some()
        });
        found.unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident memory now, in KiB (`VmRSS`).
    #[allow(dead_code)]
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Sends SIGTERM and waits (60 s at most: a process that ignores it fails the test instead of hanging
    /// it) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends `signal` (`INT`, `TERM`…) and waits for the exit status as [`Proc::terminate`] does.
    pub fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        self.exited(signal)
    }

    /// Sends SIG`signal` to the process group the process leads (spawned with `process_group(0)`), as a
    /// terminal's Ctrl-C does, and waits for the process to exit: its status.
    pub fn stop_group_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .status();
        self.exited(signal)
    }

    fn exited(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut status = None;
        let name = self.name;
        wait_until(
            Duration::from_secs(60),
            &format!("{name} to exit after SIG{signal}"),
            || {
                status = self.child.try_wait().expect("wait for child");
                status.is_some()
            },
        );
        status.expect("exit status")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}

/// A running `sextant hub`.
pub struct Hub {
    /// The process.
    pub proc: Proc,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// Admin address.
    pub admin: SocketAddr,
    /// Address of the adapters' Prometheus exposition.
    pub prometheus: SocketAddr,
    /// Its config directory.
    pub config_dir: PathBuf,
}

impl Hub {
    /// Starts a hub on `config_dir` (reloading every 100 ms) on ports the kernel picks, reads them from its
    /// ready line and waits until it is ready.
    pub fn start(config_dir: &Path) -> Hub {
        Hub::start_with(config_dir, &[])
    }

    /// [`Hub::start`] with more flags (e.g. `--no-default-telemetry`).
    pub fn start_with(config_dir: &Path, args: &[&str]) -> Hub {
        Hub::start_env(config_dir, args, &[])
    }

    /// [`Hub::start_with`] with environment variables too (`OTEL_*`, say).
    pub fn start_env(config_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Hub {
        Hub::up(Hub::spawn_with_env(config_dir, args, env), config_dir)
    }

    /// A hub reading its resources from the Kubernetes API server `kubeconfig` names (`--kubernetes`),
    /// with more flags; waits until it is ready (it has listed them).
    pub fn start_kubernetes(kubeconfig: &Path, args: &[&str]) -> Hub {
        let mut all = vec![
            "--kubernetes",
            "--kubeconfig",
            kubeconfig.to_str().expect("a UTF-8 path"),
        ];
        all.extend_from_slice(args);
        Hub::launch(Path::new(""), &all)
    }

    fn launch(config_dir: &Path, args: &[&str]) -> Hub {
        Hub::up(Hub::spawn(args, &[]), config_dir)
    }

    /// Starts `sextant hub` with `args` and `env`, every port one the kernel picks, without waiting for it.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
        cmd.arg("hub").args(args).args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--prometheus-addr",
            "127.0.0.1:0",
            "--reload-interval",
            "100ms",
        ]);
        // One component cache for every hub of the test run: the first compiles, the others load.
        cmd.arg("--adapter-cache")
            .arg(target_dir().join("sextant-test-component-cache"));
        // SEXTANT_TEST_HUB_LOG=info,hub_kube=debug,kube_client=debug (say) shows more of a failing test's hubs.
        let log = std::env::var("SEXTANT_TEST_HUB_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("RUST_LOG", log).env("NO_COLOR", "1");
        cmd.envs(env.iter().copied());
        Proc::spawn("hub", cmd, scratch("hub").join("hub.log"))
    }

    /// The serving revision, from /readyz.
    pub fn revision(&self) -> u64 {
        get(self.admin, "/readyz", &[])
            .and_then(|r| {
                // The first line; a second one may say what the revision was built around.
                r.body
                    .lines()
                    .next()?
                    .strip_prefix("ready: revision ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// The Prometheus exposition.
    pub fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[])
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// The value of one series (exact name with labels) in /metrics.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Reloads that found something invalid: refused whole, or gone on without the resources at fault.
    fn rejections(&self) -> f64 {
        ["failure", "partial"]
            .iter()
            .map(|r| {
                self.metric(&format!(
                    "sextant_hub_config_reloads_total{{result=\"{r}\"}}"
                ))
                .unwrap_or(0.0)
            })
            .sum()
    }

    /// Writes a config file and waits until the hub has acted on it: a new revision, or a new rejection (the
    /// whole change refused, or the resource at fault kept at its last good version or left out).
    pub fn write_config(&self, file: &str, text: &str, expect_valid: bool) {
        let failures = self.rejections();
        let revision = self.revision();
        write_atomically(&self.config_dir.join(file), text);
        if expect_valid {
            wait_until(
                Duration::from_secs(30),
                "the hub to load the new configuration",
                || self.revision() > revision,
            );
        } else {
            wait_until(
                Duration::from_secs(30),
                "the hub to reject the configuration",
                || self.rejections() > failures,
            );
        }
    }
}

impl Hub {
    /// Starts `sextant hub` on `config_dir` with `args` as [`Hub::start_with`] does, without waiting for it:
    /// for a test that acts while the hub is still starting (waiting for its first certificate, say);
    /// [`Hub::up`] then waits for it.
    pub fn spawn_with(config_dir: &Path, args: &[&str]) -> Proc {
        Hub::spawn_with_env(config_dir, args, &[])
    }

    fn spawn_with_env(config_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut all = vec!["--config-dir", config_dir.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        Hub::spawn(&all, env)
    }

    /// Waits until a hub from [`Hub::spawn_with`] has printed its ready line and is ready.
    pub fn up(mut proc: Proc, config_dir: &Path) -> Hub {
        let line = proc.wait_for_line("hub: gRPC on ", Duration::from_secs(120));
        let [grpc, admin, prometheus] = addrs_in(&line)[..] else {
            panic!("the hub's ready line names three addresses: {line}");
        };
        let mut hub = Hub {
            proc,
            grpc,
            admin,
            prometheus,
            config_dir: config_dir.to_path_buf(),
        };
        wait_until(Duration::from_secs(60), "the hub to be ready", || {
            assert!(hub.proc.alive(), "hub exited:\n{}", hub.proc.log());
            get(admin, "/readyz", &[]).is_some_and(|r| r.status == 200)
        });
        hub
    }
}

/// `sextant pilot` on `config` with the mesh CA in `ca_dir` (an empty directory gets a self-signed root,
/// `root-cert.pem`) and its secure port (ADS and the certificate API over TLS), every port one the kernel
/// picks, and `args`; waits until it is ready. Returns it with its monitoring and secure addresses.
pub fn start_pilot_ca(
    config: &Path,
    ca_dir: &Path,
    args: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--config-dir"])
        .arg(config)
        .arg("--ca-dir")
        .arg(ca_dir)
        .args(["--xds-addr", "127.0.0.1:0"])
        .args(["--secure-xds-addr", "127.0.0.1:0"])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("pilot", cmd, scratch("pilot-log").join("pilot.log"));
    let line = proc.wait_for_line("pilot: xDS on ", Duration::from_secs(60));
    let [_, monitoring] = addrs_in(&line)[..] else {
        panic!("pilot's ready line names two plain addresses: {line}");
    };
    let secure = https_addr_in(&line).unwrap_or_else(|| panic!("no secure address in {line}"));
    wait_until(Duration::from_secs(60), "pilot to be ready", || {
        assert!(proc.alive(), "pilot exited:\n{}", proc.log());
        get(monitoring, "/ready", &[]).is_some_and(|r| r.status == 200)
    });
    (proc, monitoring, secure)
}

/// Replaces `path` with `text` in one step (a temporary file in the same directory, renamed over it), so a
/// watcher reading the directory never sees a half-written file. The temporary name starts with a dot: the
/// watchers skip hidden files.
pub fn write_atomically(path: &Path, text: &str) {
    let name = path.file_name().expect("a file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write the temporary file");
    std::fs::rename(&tmp, path).expect("rename over the file");
}

/// A plain HTTP backend: answers 200 "backend ok", echoing `x-sextant-staff` as `x-echo-staff`.
pub struct Backend {
    /// Its address.
    pub addr: SocketAddr,
}

impl Backend {
    /// Starts the backend on a free port (a thread per connection).
    pub fn start() -> Backend {
        Backend::answering("backend ok")
    }

    /// Starts a backend whose responses' body is `body` (to tell backends apart).
    pub fn answering(body: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve_one(stream, body));
            }
        });
        Backend { addr }
    }
}

fn serve_one(mut s: TcpStream, body: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let staff = head
            .lines()
            .find_map(|l| l.strip_prefix("x-sextant-staff:"))
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        let traceparent = head
            .lines()
            .find_map(|l| l.strip_prefix("traceparent:"))
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-echo-staff: {staff}\r\nx-echo-traceparent: {traceparent}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(resp.as_bytes()).is_err() || head.contains("connection: close") {
            return;
        }
    }
}

/// A running Envoy.
pub struct Envoy {
    /// The process.
    pub proc: Proc,
    /// Admin address.
    pub admin: SocketAddr,
}

impl Envoy {
    /// Starts Envoy with `config` (YAML, its admin on port 0) and waits until its admin says LIVE. The admin
    /// address Envoy bound is read from `--admin-address-path`; a dynamic base id keeps parallel Envoys
    /// apart.
    pub fn start(dir: &Path, config: &str) -> Envoy {
        let path = dir.join("envoy.yaml");
        std::fs::write(&path, config).expect("write envoy config");
        let admin_file = dir.join("envoy-admin-address");
        let _ = std::fs::remove_file(&admin_file);
        let mut cmd = Command::new(peers().join("venv/bin/envoy"));
        cmd.arg("-c")
            .arg(&path)
            .args([
                "--disable-hot-restart",
                "--use-dynamic-base-id",
                "-l",
                "warning",
            ])
            .arg("--admin-address-path")
            .arg(&admin_file);
        let mut proc = Proc::spawn("envoy", cmd, dir.join("envoy.log"));
        let mut admin = None;
        wait_until(Duration::from_secs(60), "Envoy's admin address", || {
            assert!(proc.alive(), "envoy exited:\n{}", proc.log());
            admin = std::fs::read_to_string(&admin_file)
                .ok()
                .and_then(|a| a.trim().parse::<SocketAddr>().ok());
            admin.is_some()
        });
        let admin = admin.expect("admin address");
        let mut envoy = Envoy { proc, admin };
        wait_until(Duration::from_secs(60), "Envoy to be LIVE", || {
            assert!(envoy.proc.alive(), "envoy exited:\n{}", envoy.proc.log());
            get(admin, "/ready", &[]).is_some_and(|r| r.status == 200)
        });
        envoy
    }

    /// The address Envoy bound for its listener `name` (a static listener on port 0 gets its port here).
    pub fn listener(&self, name: &str) -> SocketAddr {
        let body = get(self.admin, "/listeners?format=json", &[])
            .expect("envoy /listeners")
            .body;
        let v: serde_json::Value = serde_json::from_str(&body).expect("/listeners is JSON");
        let a = v["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .map(|l| l["local_address"]["socket_address"].clone())
            .unwrap_or_else(|| panic!("no listener {name} in {body}"));
        let ip: std::net::IpAddr = a["address"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("ip");
        let port = a["port_value"].as_u64().and_then(|p| u16::try_from(p).ok());
        SocketAddr::new(ip, port.expect("port"))
    }
}

impl DataPlane for Envoy {
    fn admin(&self) -> SocketAddr {
        self.admin
    }
}

/// A proxy under test, Envoy or `sextant proxy`, read through its admin endpoints (the same paths on both).
pub trait DataPlane {
    /// The admin address.
    fn admin(&self) -> SocketAddr;

    /// One of the proxy's counters, from its admin /stats (Envoy's names on both).
    fn stat(&self, name: &str) -> Option<u64> {
        let body = get(self.admin(), &format!("/stats?filter=^{name}$"), &[])?.body;
        body.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Every `update_rejected` counter of the proxy's xDS subscriptions, summed: pushes it refused.
    fn rejected_updates(&self) -> u64 {
        get(self.admin(), "/stats?filter=update_rejected", &[])
            .expect("proxy stats")
            .body
            .lines()
            .filter_map(|l| l.split_once(": ")?.1.trim().parse::<u64>().ok())
            .sum()
    }
}

/// Which proxy runs a behaviour table: the same expectations hold for both.
#[derive(Clone, Copy, Debug)]
pub enum Plane {
    /// Envoy 1.40.
    Envoy,
    /// `sextant proxy`.
    Sextant,
}

impl Plane {
    /// Starts this proxy in `dir`, fed by the ADS server at `ads` over `api_type` (`GRPC` or `DELTA_GRPC`), as
    /// the node Envoy's bootstrap declares in `node_yaml` and `sextant proxy` takes from `node_id` and `env`
    /// (the pod's environment: `POD_NAMESPACE`, `ISTIO_META_*`, …).
    pub fn start(
        self,
        dir: &Path,
        ads: SocketAddr,
        api_type: &str,
        node_yaml: &str,
        node_id: &str,
        env: &[(&str, &str)],
    ) -> Box<dyn DataPlane> {
        std::fs::create_dir_all(dir).expect("proxy dir");
        match self {
            Plane::Envoy => Box::new(Envoy::start(dir, &ads_bootstrap(ads, api_type, node_yaml))),
            Plane::Sextant => {
                let protocol = if api_type == "GRPC" { "sotw" } else { "delta" };
                Box::new(SextantProxy::start(
                    dir,
                    ads,
                    node_id,
                    env,
                    &["--xds-protocol", protocol],
                ))
            }
        }
    }
}

/// `sextant proxy`, started as a process with its admin on a port the kernel picks.
pub struct SextantProxy {
    /// The process.
    pub proc: Proc,
    /// Admin address.
    pub admin: SocketAddr,
}

impl SextantProxy {
    /// Starts `sextant proxy` fed by the ADS server at `xds` as node `node_id`, with `env` (the pod's
    /// environment: `ISTIO_META_*` and the like) and `args`, and waits until its admin says LIVE.
    pub fn start(
        dir: &Path,
        xds: SocketAddr,
        node_id: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> SextantProxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
        cmd.args([
            "proxy",
            "--xds-addr",
            &xds.to_string(),
            "--node-id",
            node_id,
        ])
        .args(["--admin-addr", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn("sextant proxy", cmd, dir.join("proxy.log"));
        let line = proc.wait_for_line("proxy: admin on ", Duration::from_secs(60));
        let admin = *addrs_in(&line)
            .first()
            .unwrap_or_else(|| panic!("an admin address in {line}"));
        let mut proxy = SextantProxy { proc, admin };
        wait_until(Duration::from_secs(60), "sextant proxy to be LIVE", || {
            assert!(
                proxy.proc.alive(),
                "sextant proxy exited:\n{}",
                proxy.proc.log()
            );
            get(admin, "/ready", &[]).is_some_and(|r| r.status == 200)
        });
        proxy
    }
}

impl DataPlane for SextantProxy {
    fn admin(&self) -> SocketAddr {
        self.admin
    }
}

/// A backend answering every request `slow` after `delay` (HTTP/1.1, keep-alive).
#[allow(dead_code)]
pub fn slow_backend(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while s.read(&mut buf).is_ok_and(|n| n > 0) {
                    std::thread::sleep(delay);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
                }
            });
        }
    });
    addr
}

/// The Prometheus server binary (Debian's `prometheus` package, installed by `.ci/peers`).
pub fn prometheus_bin() -> PathBuf {
    let bin = std::env::var_os("SEXTANT_PROMETHEUS")
        .map_or_else(|| PathBuf::from("/usr/bin/prometheus"), PathBuf::from);
    assert!(
        bin.exists(),
        "test peer missing: {} not found. Run `.ci/peers` (it installs Debian's prometheus) first.",
        bin.display()
    );
    bin
}

/// A static target group of a [`ScrapeJob`]: addresses, and the labels Prometheus adds to their series.
pub type TargetGroup = (Vec<SocketAddr>, Vec<(String, String)>);

/// The series of an instant query's answer: (labels, value) each.
pub type Series = Vec<(std::collections::HashMap<String, String>, f64)>;

/// One scrape job of [`Prometheus::start_jobs`].
pub struct ScrapeJob {
    /// `job_name` (the `job` label of its series).
    pub name: String,
    /// `metrics_path`.
    pub path: String,
    /// Static target groups: addresses, and the labels Prometheus adds to their series.
    pub groups: Vec<TargetGroup>,
}

/// A real Prometheus scraping some targets every second.
pub struct Prometheus {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (path /metrics) every second and waits until it is ready.
    pub fn start(targets: &[SocketAddr]) -> Prometheus {
        Prometheus::start_scraping(targets, "/metrics")
    }

    /// Starts Prometheus scraping `path` of `targets` every second and waits until it is ready.
    pub fn start_scraping(targets: &[SocketAddr], path: &str) -> Prometheus {
        let dir = scratch("prometheus");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: hub\n  metrics_path: {path}\n  static_configs:\n  - targets: [{}]\n",
            list.join(", ")
        );
        Prometheus::launch(dir, &config)
    }

    /// Starts Prometheus scraping every job of `jobs` every second and waits until it is ready: for
    /// expositions on several paths (the hub's, pilot's, and sidecars' `/stats/prometheus`) in one server,
    /// with the target labels (`app`, `version`…) a Kubernetes scrape configuration would add.
    pub fn start_jobs(jobs: &[ScrapeJob]) -> Prometheus {
        let dir = scratch("prometheus");
        // JSON strings are YAML strings: any job name, path or label value is quoted safely.
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let mut config = String::from(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n",
        );
        for job in jobs {
            config += &format!(
                "- job_name: {}\n  metrics_path: {}\n  static_configs:\n",
                quote(&job.name),
                quote(&job.path)
            );
            for (targets, labels) in &job.groups {
                let targets: Vec<String> = targets.iter().map(|t| quote(&t.to_string())).collect();
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{}: {}", quote(k), quote(v)))
                    .collect();
                config += &format!(
                    "  - {{targets: [{}], labels: {{{}}}}}\n",
                    targets.join(", "),
                    labels.join(", ")
                );
            }
        }
        Prometheus::launch(dir, &config)
    }

    /// Writes `config` into `dir`, starts Prometheus on it and waits until it is ready.
    fn launch(dir: PathBuf, config: &str) -> Prometheus {
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus config");
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.level=info");
        let mut proc = Proc::spawn("prometheus", cmd, dir.join("prometheus.log"));
        // `Listening on` names the address bound (`Start listening` names the one asked for).
        let line = proc.wait_for_line("msg=\"Listening on\"", Duration::from_secs(60));
        let [addr] = addrs_in(&line)[..] else {
            panic!("Prometheus's listening line names one address: {line}");
        };
        let mut p = Prometheus { proc, addr };
        wait_until(Duration::from_secs(30), "Prometheus to be ready", || {
            assert!(p.proc.alive(), "prometheus exited:\n{}", p.proc.log());
            get(addr, "/-/ready", &[]).is_some_and(|r| r.status == 200)
        });
        p
    }

    /// Runs an instant PromQL query through the HTTP API: (labels, value) per series, or Prometheus's
    /// error (a query it cannot parse or evaluate, or no answer) as text.
    pub fn try_query(&self, promql: &str) -> Result<Series, String> {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        let r = get(self.addr, &path, &[]).ok_or("Prometheus did not answer")?;
        let v: serde_json::Value =
            serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        let series = v["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("no result vector: {}", r.body))?;
        Ok(series
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = s["value"][1]
                    .as_str()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect())
    }

    /// The values of `label` on the series `matcher` selects (what Grafana's `label_values(matcher, label)`
    /// lists).
    pub fn label_values(&self, matcher: &str, label: &str) -> Vec<String> {
        let path = format!(
            "/api/v1/label/{}/values?match[]={}",
            urlencode(label),
            urlencode(matcher)
        );
        let v: serde_json::Value = get(self.addr, &path, &[])
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or_default();
        v["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs an instant PromQL query: (labels, value) per series; none when Prometheus refused it or did
    /// not answer ([`Prometheus::try_query`] says why).
    pub fn query(&self, promql: &str) -> Series {
        self.try_query(promql).unwrap_or_default()
    }
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request an [`HttpSink`] received.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies are de-chunked).
    pub body: Vec<u8>,
}

/// A local HTTP/1.1 server that records every request and answers `200` with an empty body: the collector
/// side of the zipkin and otlp adapters (no Zipkin, Jaeger or OTel collector server is obtainable here).
pub struct HttpSink {
    /// Its address.
    pub addr: SocketAddr,
    /// What it received.
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Captured>>>,
}

impl HttpSink {
    /// Starts the sink on a free port.
    pub fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || serve_sink(conn, &store));
            }
        });
        HttpSink { addr, got }
    }

    /// Requests received on `path`.
    pub fn on(&self, path: &str) -> Vec<Captured> {
        self.got
            .lock()
            .expect("sink lock")
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }
}

fn serve_sink(conn: std::net::TcpStream, store: &std::sync::Mutex<Vec<Captured>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                if r.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                if r.read_exact(&mut chunk).is_err() {
                    return;
                }
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; n];
            if r.read_exact(&mut body).is_err() {
                return;
            }
        }
        store.lock().expect("sink lock").push(Captured {
            path,
            headers,
            body,
        });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// An Envoy bootstrap that holds only the ADS cluster (pilot at `pilot`, over HTTP/2) and the admin, on a
/// port the kernel picks (see [`Envoy::start`]): everything else comes from pilot. `api_type` is `GRPC`
/// (state of the world) or `DELTA_GRPC`; `node` is the YAML flow mapping of the node (id, cluster, metadata).
pub fn ads_bootstrap(pilot: SocketAddr, api_type: &str, node: &str) -> String {
    ads_bootstrap_with_admin(pilot, 0, api_type, node)
}

/// [`ads_bootstrap`] with the admin on port `admin` (in a network namespace of its own, where nothing else
/// can take it).
pub fn ads_bootstrap_with_admin(
    pilot: SocketAddr,
    admin: u16,
    api_type: &str,
    node: &str,
) -> String {
    let address = format!(
        "socket_address: {{address: {}, port_value: {}}}",
        pilot.ip(),
        pilot.port()
    );
    ads_head(node, admin, api_type, "pilot") + &grpc_cluster("pilot", &address)
}

/// An Envoy bootstrap for a sidecar keeping its own key, as Istio's pilot-agent writes it: ADS over TLS to
/// pilot's secure port `secure` (the mesh root at `root` the only trust anchor, istiod's name checked),
/// secrets from the agent's Unix socket `sds_socket` (cluster `sds-grpc`), the admin on port `admin`. `node`
/// is the YAML flow mapping of the node; its metadata should carry `SEXTANT_LOCAL_CERT: "true"`.
pub fn agent_bootstrap(
    secure: SocketAddr,
    admin: u16,
    node: &str,
    root: &Path,
    sds_socket: &Path,
) -> String {
    let address = format!(
        "socket_address: {{address: {}, port_value: {}}}",
        secure.ip(),
        secure.port()
    );
    let tls = format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: istiod.istio-system.svc
        common_tls_context:
          alpn_protocols: [h2]
          validation_context:
            trusted_ca: {{filename: "{}"}}
            match_typed_subject_alt_names: [{{san_type: DNS, matcher: {{exact: istiod.istio-system.svc}}}}]
"#,
        root.display()
    );
    let pipe = format!("pipe: {{path: \"{}\"}}", sds_socket.display());
    ads_head(node, admin, "GRPC", "xds-grpc")
        + &grpc_cluster("xds-grpc", &address)
        + &tls
        + &grpc_cluster("sds-grpc", &pipe)
}

/// A bootstrap's node, admin on 127.0.0.1:`admin`, ADS (`api_type`) over static cluster `cluster`, and the
/// start of its static clusters.
fn ads_head(node: &str, admin: u16, api_type: &str, cluster: &str) -> String {
    format!(
        r#"
node: {node}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: {cluster}}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
"#
    )
}

/// A static HTTP/2 cluster `name` of one endpoint at `address` (the YAML of an Envoy `Address`'s one field).
fn grpc_cluster(name: &str, address: &str) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: {name}
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{{address}}}}}}}]}}]
"#
    )
}

/// The secure (TLS) address in `sextant pilot`'s ready line: the one written `https://ADDR`.
pub fn https_addr_in(line: &str) -> Option<SocketAddr> {
    line.split_whitespace().find_map(|w| {
        w.strip_prefix("https://")?
            .trim_end_matches(',')
            .parse()
            .ok()
    })
}

/// The node of a productpage sidecar without interception (its listeners bind 127.0.0.1:PORT).
pub const PRODUCTPAGE_NODE: &str = "{id: \"sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local\", cluster: productpage.default, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: default, LABELS: {app: productpage, version: v1}}}";

/// A ServiceEntry for `reviews.default.svc.cluster.local` on `port` (HTTP), its one endpoint 127.0.0.1 on
/// `endpoint_port`.
#[allow(dead_code)]
pub fn reviews_entry(port: u16, endpoint_port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: reviews}}\nspec:\n  \
         hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: http}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {endpoint_port}}}}}]\n"
    )
}

/// [`PRODUCTPAGE_NODE`] as `sextant proxy` takes it: from the pod's environment (with `--node-id`
/// `sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local`).
#[allow(dead_code)]
pub const PRODUCTPAGE_ENV: &[(&str, &str)] = &[
    ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
    (
        "ISTIO_METAJSON_LABELS",
        r#"{"app": "productpage", "version": "v1"}"#,
    ),
];

/// The node id of [`PRODUCTPAGE_NODE`].
#[allow(dead_code)]
pub const PRODUCTPAGE_ID: &str =
    "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local";

/// pilot's ADS server in this process, on a port the kernel picks, serving whatever the test publishes.
pub struct Ads {
    /// What the server serves; publish to push.
    pub snapshots: std::sync::Arc<pilot_xds::SharedSnapshot>,
    /// The open streams: what each proxy was sent and acknowledged.
    pub connections: std::sync::Arc<pilot_xds::Connections>,
    /// The bound address.
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

impl Ads {
    /// Starts the server with an empty snapshot.
    pub fn start() -> Ads {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let snapshots = std::sync::Arc::new(pilot_xds::SharedSnapshot::default());
        let server = pilot_xds::AdsServer::new(snapshots.clone(), 100);
        let connections = server.connections();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        Ads {
            snapshots,
            connections,
            addr,
            _rt: rt,
        }
    }
}

/// A network namespace of its own (`ip netns`), deleted on drop. Its name starts `sxt-PID-`; creating one
/// first removes what a crashed earlier run left: namespaces of that shape whose PID is no longer alive
/// (their processes killed), and one of the same name (a reused PID).
pub struct Netns {
    /// Its name (`ip netns exec NAME ...`).
    pub name: String,
}

impl Netns {
    /// Creates the namespace `sxt-PID-SUFFIX` with its loopback up.
    pub fn create(suffix: &str) -> Netns {
        Netns::sweep_stale();
        let name = format!("sxt-{}-{suffix}", std::process::id());
        Netns::remove(&name);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command running `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args...` inside the namespace; it must succeed.
    pub fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name));
        assert!(
            out.status.success(),
            "{program} {args:?} in {} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `curl` inside the namespace (5 s at most): (status, body), or None when no response came.
    pub fn curl(&self, args: &[&str]) -> Option<(u16, String)> {
        let out = self
            .command("curl")
            .args(["-s", "-m", "5", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (code != 0).then(|| (code, body.to_string()))
    }

    /// Deletes `name` after killing what runs in it.
    fn remove(name: &str) {
        let pids = Command::new("ip")
            .args(["netns", "pids", name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status();
    }

    /// Removes the namespaces of test processes that are gone.
    fn sweep_stale() {
        let list = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(pid) = name.strip_prefix("sxt-").and_then(|r| r.split('-').next()) else {
                continue;
            };
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                Netns::remove(name);
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Netns::remove(&self.name);
    }
}

/// Runs `ip ARGS...`; it must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2; `.ci/peers` installs it): {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The hub's name as a mesh service (what `sextant pilot --hub-service` names).
pub const HUB_HOST: &str = "sextant-hub.sextant-system.svc.cluster.local";

/// The hub as a mesh service: [`HUB_HOST`] on `port` (gRPC), its one endpoint the hub's gRPC address `hub`,
/// reached in plain text (a DestinationRule DISABLE). Starts with a document separator, so it can follow
/// other documents.
pub fn hub_service(port: u16, hub: SocketAddr) -> String {
    hubs_service(port, &[hub])
}

/// [`hub_service`] with one endpoint per hub of a fleet: sidecars spread their calls over them.
pub fn hubs_service(port: u16, hubs: &[SocketAddr]) -> String {
    let endpoints: Vec<String> = hubs
        .iter()
        .map(|h| format!("{{address: {}, ports: {{grpc: {}}}}}", h.ip(), h.port()))
        .collect();
    format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sextant-hub, namespace: sextant-system}}
spec:
  hosts: [{HUB_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: grpc, protocol: GRPC}}]
  endpoints: [{endpoints}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: sextant-hub, namespace: sextant-system}}
spec:
  host: {HUB_HOST}
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
"#,
        endpoints = endpoints.join(", "),
    )
}

/// `web`'s Envoy sidecar: no interception, its workload named by its `app` label; the node's `cluster` is
/// what the hub's access-log service reports as the workload.
pub const WEB_NODE: &str = "{id: \"sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local\", cluster: web, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: shop, SERVICE_ACCOUNT: web, LABELS: {app: web}}}";

/// `web`'s service (its endpoint, labelled `app: web`, the sidecar's ingress port) and its Sidecar: the
/// ingress port forwarding to the workload at `app`, importing nothing (not even the hub's service).
pub fn web_mesh(ingress: u16, app: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {ingress}, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ingress}}}, labels: {{app: web}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - {{port: {{number: {ingress}, protocol: HTTP, name: http}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: "{app}"}}
  egress: [{{hosts: ["~/*"]}}]
"#
    )
}

/// A Kubernetes control plane (etcd and kube-apiserver, with `controller_manager` the controller-manager too)
/// with its files under `dir/cluster`.
pub fn control_plane(dir: &Path, controller_manager: bool) -> sextant_kube_harness::ControlPlane {
    let binaries =
        sextant_kube_harness::Binaries::from_peers(&peers()).unwrap_or_else(|e| panic!("{e}"));
    let options = sextant_kube_harness::Options { controller_manager };
    sextant_kube_harness::ControlPlane::start(&binaries, &dir.join("cluster"), &options)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The CRDs `sextant crds` prints, applied to `plane`, and established.
pub fn sextant_crds(plane: &sextant_kube_harness::ControlPlane) {
    let crds = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("crds")
        .output()
        .expect("sextant crds");
    assert!(crds.status.success(), "sextant crds failed");
    plane
        .apply(&String::from_utf8_lossy(&crds.stdout))
        .unwrap_or_else(|e| panic!("{e}"));
    plane.crds_established().unwrap_or_else(|e| panic!("{e}"));
}

/// Istio's own CRDs (istio.io/api's, fetched by `.ci/peers`) created in `plane`, and established.
pub fn istio_crds(plane: &sextant_kube_harness::ControlPlane) {
    let crds = std::fs::read_to_string(peers().join("istio/crds.yaml"))
        .expect("Istio's CRDs at $SEXTANT_PEERS/istio/crds.yaml (run .ci/peers)");
    // Too large for a client-side apply's annotation: created.
    plane
        .kubectl_with(&["create", "-f", "-"], &crds)
        .unwrap_or_else(|e| panic!("Istio's CRDs: {e}"));
    plane.crds_established().unwrap_or_else(|e| panic!("{e}"));
}

/// Pilot in Kubernetes mode against `plane` (as its admin; its status Lease in `default`), with an empty
/// configuration directory under `dir`, ready: (process, xDS address, monitoring address).
pub fn start_kube_pilot(
    dir: &Path,
    plane: &sextant_kube_harness::ControlPlane,
) -> (Proc, SocketAddr, SocketAddr) {
    let config = dir.join("mesh");
    std::fs::create_dir_all(&config).expect("mesh dir");
    let kubeconfig = plane
        .kubeconfig()
        .to_str()
        .expect("a UTF-8 path")
        .to_string();
    start_pilot_with(
        &config,
        "127.0.0.1:0",
        &[
            "--registry",
            "kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--lease-namespace",
            "default",
        ],
    )
}

/// Pilot with its mesh CA in `dir/ca` (a root made at start), an empty directory, and its admission webhook
/// (certificate for `localhost`), with more flags `args`: the process, the webhook's port, and the root
/// (PEM) a webhook configuration's caBundle must carry.
pub fn start_webhook_pilot(dir: &Path, args: &[&str]) -> (Proc, u16, Vec<u8>) {
    let (config, ca) = (dir.join("mesh"), dir.join("ca"));
    std::fs::create_dir_all(&config).expect("mesh dir");
    std::fs::create_dir_all(&ca).expect("ca dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--config-dir"])
        .arg(&config)
        .arg("--ca-dir")
        .arg(&ca)
        .args([
            "--xds-addr",
            "127.0.0.1:0",
            "--secure-xds-addr",
            "127.0.0.1:0",
        ])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .args([
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-dns-names",
            "localhost",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut pilot = Proc::spawn("pilot", cmd, dir.join("pilot.log"));
    let line = pilot.wait_for_line("admission webhook on https://", Duration::from_secs(90));
    let port = line
        .split("admission webhook on https://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("the webhook's address in {line:?}"));
    let root = std::fs::read(ca.join("root-cert.pem")).expect("pilot's root");
    (pilot, port, root)
}

/// The weights Envoy's routes give the clusters whose names end with `host` (`outbound|PORT|SUBSET|HOST`),
/// sorted.
pub fn route_weights(envoy: &Envoy, host: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![get_json(
        envoy.admin,
        "/config_dump?resource=dynamic_route_configs",
    )];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let (Some(serde_json::Value::String(name)), Some(w)) =
                    (map.get("name"), map.get("weight"))
                    && name.ends_with(host)
                {
                    out.push((name.clone(), w.as_u64().unwrap_or(0)));
                }
                stack.extend(map.into_values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out.sort();
    out
}

/// A real Jaeger v1.75 all-in-one (built by `.ci/peers`): OTLP over gRPC and HTTP in, memory storage, its
/// query API; every port one free when it starts. Stopped when dropped.
pub struct Jaeger {
    /// The process.
    pub proc: Proc,
    /// The query API (and UI): `/api/services`, `/api/traces/ID`.
    pub api: SocketAddr,
    /// OTLP/gRPC receiver.
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP receiver.
    pub otlp_http: SocketAddr,
}

impl Jaeger {
    /// Starts Jaeger in `dir` and waits until its query API answers.
    pub fn start(dir: &Path) -> Jaeger {
        // Jaeger (Go) binds without SO_REUSEPORT, so a held port would refuse it: probe, release.
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let (otlp_grpc, otlp_http, api, api_grpc) = (free(), free(), free(), free());
        let config = dir.join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                r#"
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage: {{traces: memory}}
    http: {{endpoint: "{api}"}}
    grpc: {{endpoint: "{api_grpc}"}}
  jaeger_storage:
    backends:
      memory:
        memory: {{max_traces: 10000}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "{otlp_grpc}"}}
      http: {{endpoint: "{otlp_http}"}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
"#
            ),
        )
        .expect("jaeger config");
        let mut cmd = Command::new(peers().join("jaeger/jaeger"));
        cmd.arg("--config").arg(&config);
        let mut proc = Proc::spawn("jaeger", cmd, dir.join("jaeger.log"));
        wait_until(Duration::from_secs(120), "Jaeger's query API", || {
            assert!(proc.alive(), "jaeger exited:\n{}", proc.log());
            get(api, "/api/services", &[]).is_some_and(|r| r.status == 200)
        });
        Jaeger {
            proc,
            api,
            otlp_grpc,
            otlp_http,
        }
    }

    /// The OTLP/HTTP endpoint as a URL.
    pub fn otlp_http(&self) -> String {
        format!("http://{}", self.otlp_http)
    }

    /// The OTLP/gRPC endpoint as a URL.
    pub fn otlp_grpc(&self) -> String {
        format!("http://{}", self.otlp_grpc)
    }

    /// The services Jaeger has spans of.
    pub fn services(&self) -> Vec<String> {
        get_json(self.api, "/api/services")["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The spans of trace `id` (32 hex digits) Jaeger has, with their service names.
    pub fn trace(&self, id: &str) -> Vec<JaegerSpan> {
        let t = get_json(self.api, &format!("/api/traces/{id}"));
        let Some(trace) = t["data"].as_array().and_then(|d| d.first()) else {
            return Vec::new();
        };
        trace["spans"]
            .as_array()
            .map(|spans| {
                spans
                    .iter()
                    .map(|s| JaegerSpan {
                        service: s["processID"]
                            .as_str()
                            .and_then(|p| trace["processes"][p]["serviceName"].as_str())
                            .unwrap_or_default()
                            .to_string(),
                        json: s.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The traces of `service` with operation `operation` in the last hour.
    pub fn traces(&self, service: &str, operation: &str) -> Vec<serde_json::Value> {
        get_json(
            self.api,
            &format!(
                "/api/traces?service={service}&operation={}&limit=100&lookback=1h",
                urlencode(operation)
            ),
        )["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// One span as Jaeger's query API gives it.
#[derive(Clone, Debug)]
pub struct JaegerSpan {
    /// Its process's service name.
    pub service: String,
    /// The span.
    pub json: serde_json::Value,
}

impl JaegerSpan {
    /// The operation (span) name.
    pub fn name(&self) -> &str {
        self.json["operationName"].as_str().unwrap_or_default()
    }

    /// The span id (16 hex digits).
    pub fn id(&self) -> &str {
        self.json["spanID"].as_str().unwrap_or_default()
    }

    /// The span it is a CHILD_OF, if any.
    pub fn parent(&self) -> Option<&str> {
        self.json["references"].as_array()?.iter().find_map(|r| {
            (r["refType"] == "CHILD_OF")
                .then(|| r["spanID"].as_str())
                .flatten()
        })
    }

    /// The value of tag `key`, as text.
    pub fn tag(&self, key: &str) -> Option<String> {
        self.json["tags"].as_array()?.iter().find_map(|t| {
            (t["key"] == key).then(|| match &t["value"] {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            })
        })
    }
}
