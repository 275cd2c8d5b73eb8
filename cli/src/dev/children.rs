//! The dev mesh's child processes: pilot and a sidecar per workload, each this same binary, logging to a
//! file of its own; with `--intercept`, each workload's application too, sidecar and application in the
//! workload's pod ([`Pods`]). Each is told to exit with this process (`SEXTANT_EXIT_WITH_PARENT`, see
//! [`crate::exit_with_parent`]), so none is left behind even when this process is killed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::mesh::{self, Planned};
use super::pods::Pods;

/// How long pilot and each sidecar get to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a child gets to exit after SIGTERM before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Pilot's addresses.
pub struct Pilot {
    /// Its ADS address.
    pub xds: SocketAddr,
    /// Its monitoring address.
    pub monitoring: SocketAddr,
}

/// The running children, stopped in reverse order, and the pods they run in.
pub struct Children {
    logs: PathBuf,
    running: Vec<(String, Child)>,
    pods: Option<Pods>,
}

impl Children {
    /// No children yet; their logs go to `logs`; with `pods`, workloads run in them (and they are removed
    /// when the children stop).
    pub fn new(logs: PathBuf, pods: Option<Pods>) -> Children {
        Children {
            logs,
            running: Vec::new(),
            pods,
        }
    }

    /// A child called `name` running this binary: on the host, or in `planned`'s pod when there are pods
    /// (as the sidecar's user when `as_proxy`).
    fn command(&self, name: &str, pod: Option<(&Planned, bool)>) -> anyhow::Result<Command> {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log")))
            .with_context(|| format!("creating {name}'s log"))?;
        let mut cmd = match (&self.pods, pod) {
            (Some(pods), Some((planned, as_proxy))) => pods.command(planned, as_proxy),
            _ => Command::new(std::env::current_exe().context("locating the sextant binary")?),
        };
        cmd.env(crate::EXIT_WITH_PARENT, std::process::id().to_string())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Starts pilot on `mesh` with its CA in `ca` and the hub as the mesh's policy service, its xDS ports
    /// on `host`, and waits for its addresses.
    pub async fn pilot(
        &mut self,
        mesh: &Path,
        ca: &Path,
        host: std::net::IpAddr,
        hub_host: &str,
        hub_port: u16,
    ) -> anyhow::Result<Pilot> {
        let mut cmd = self.command("pilot", None)?;
        cmd.arg("pilot")
            .arg("--config-dir")
            .arg(mesh)
            .arg("--ca-dir")
            .arg(ca)
            .args(["--xds-addr", &SocketAddr::new(host, 0).to_string()])
            .args(["--secure-xds-addr", &SocketAddr::new(host, 0).to_string()])
            .args(["--monitoring-addr", "127.0.0.1:0"])
            .args(["--hub-service", &format!("{hub_host}:{hub_port}")]);
        let line = self.start_until("pilot", cmd, "pilot: xDS on ").await?;
        let addrs: Vec<SocketAddr> = line
            .split_whitespace()
            .filter_map(|w| {
                let w = w.trim_end_matches(',');
                let w = w.strip_prefix("http://").unwrap_or(w);
                w.split('/').next()?.parse().ok()
            })
            .collect();
        match addrs[..] {
            [xds, monitoring, ..] => Ok(Pilot { xds, monitoring }),
            _ => anyhow::bail!("pilot's ready line names no addresses: {line}"),
        }
    }

    /// Starts the child `name` and waits for the line of its output that starts with `ready` (the rest
    /// goes to its log file): that line.
    async fn start_until(
        &mut self,
        name: &str,
        mut cmd: Command,
        ready: &'static str,
    ) -> anyhow::Result<String> {
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stderr = child.stderr.take().context("the child's output")?;
        self.running.push((name.to_string(), child));
        let log_path = self.logs.join(format!("{name}.log"));
        let mut log = tokio::fs::File::create(&log_path)
            .await
            .with_context(|| format!("creating {name}'s log"))?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with(ready)
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                let _ = log.write_all(format!("{line}\n").as_bytes()).await;
            }
        });
        tokio::time::timeout(READY_WITHIN, ready_rx)
            .await
            .map_err(|_| anyhow::anyhow!("{name} was not ready within {READY_WITHIN:?}"))?
            .map_err(|_| anyhow::anyhow!("{name} did not start; see {}", log_path.display()))
    }

    /// Starts `planned`'s application in its pod (`sextant dev app`), the dev configuration at `dir`, and
    /// waits until it listens.
    pub async fn app(
        &mut self,
        planned: &Planned,
        dev: &super::DevArgs,
        dir: &Path,
    ) -> anyhow::Result<()> {
        let name = format!("{}-app", planned.workload.name());
        let mut cmd = self.command(&name, Some((planned, false)))?;
        cmd.args([
            "dev",
            "--intercept",
            "--loopback",
            &dev.loopback,
            "--config-dir",
        ])
        .arg(dir)
        .args(["app", &planned.workload.name()]);
        self.start_until(&name, cmd, super::app::LISTENING).await?;
        Ok(())
    }

    /// Starts `planned`'s sidecar, fed by pilot at `xds`.
    pub async fn proxy(&mut self, planned: &Planned, xds: SocketAddr) -> anyhow::Result<()> {
        let w = &planned.workload;
        let pods = self.pods.is_some();
        let mut cmd = self.command(&w.name(), Some((planned, true)))?;
        cmd.arg("proxy")
            .args(["--xds-addr", &xds.to_string()])
            .args(["--node-id", &planned.node_id()])
            .args(["--admin-addr", &planned.admin().to_string()])
            .args([
                "--stats-addr",
                &SocketAddr::new(planned.pod, mesh::STATS_PORT).to_string(),
            ])
            .args(["--concurrency", "1"])
            .env("POD_NAMESPACE", sextant_bookinfo::NAMESPACE)
            .env("SERVICE_ACCOUNT", planned.service_account())
            .env("INSTANCE_IP", planned.pod.to_string())
            .env(
                "ISTIO_META_INTERCEPTION_MODE",
                if pods { "REDIRECT" } else { "NONE" },
            )
            .env(
                "ISTIO_METAJSON_LABELS",
                format!(
                    r#"{{"app": "{}", "version": "{}"}}"#,
                    w.service.name(),
                    w.version
                ),
            );
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}'s sidecar", w.name()))?;
        self.running.push((w.name(), child));
        Ok(())
    }

    /// Waits until `planned`'s sidecar answers `/ready` with 200.
    pub async fn wait_ready(&mut self, planned: &Planned) -> anyhow::Result<()> {
        let name = planned.workload.name();
        let log = self.logs.join(format!("{name}.log"));
        let end = Instant::now() + READY_WITHIN;
        loop {
            if ready(planned.admin()).await {
                return Ok(());
            }
            if let Some((_, child)) = self.running.iter_mut().find(|(n, _)| *n == name)
                && let Ok(Some(status)) = child.try_wait()
            {
                anyhow::bail!("{name}'s sidecar exited ({status}); see {}", log.display());
            }
            if Instant::now() > end {
                anyhow::bail!(
                    "{name}'s sidecar was not ready within {READY_WITHIN:?}; see {}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every child, the last started first: SIGTERM, then SIGKILL after [`EXIT_WITHIN`]; then
    /// removes the pods.
    pub async fn stop(&mut self) {
        for (_, child) in self.running.iter().rev() {
            if let Some(pid) = child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for (name, mut child) in self.running.drain(..).rev() {
            match tokio::time::timeout(EXIT_WITHIN, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "sextant dev: {name} did not exit within {EXIT_WITHIN:?}; killing it"
                    );
                    let _ = child.kill().await;
                }
            }
        }
        if let Some(mut pods) = self.pods.take() {
            let _ = tokio::task::spawn_blocking(move || pods.remove()).await;
        }
    }
}

/// Whether the admin at `admin` answers `/ready` with 200.
async fn ready(admin: SocketAddr) -> bool {
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(admin),
    )
    .await
    else {
        return false;
    };
    let request = format!("GET /ready HTTP/1.0\r\nHost: {admin}\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), conn.read_exact(&mut head)).await,
        Ok(Ok(_)) if head.ends_with(b" 200")
    )
}
