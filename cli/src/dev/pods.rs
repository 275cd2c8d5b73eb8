//! The pods of `sextant dev --intercept` (root only): each workload in a network namespace of its own, as a
//! pod is, joined to the host by a veth pair on a bridge whose address is the pods' gateway, with the rules
//! `sextant proxy-init` writes (istio-init's) so its sidecar captures the application's traffic both ways.
//! The sidecar runs as uid/gid 1337, which the rules let through. Pilot and the hub stay on the host, at the
//! gateway address.
//!
//! Everything is named after this process (`sxd-PID-…` namespaces, the `sxdPID` bridge) and removed when the
//! mesh stops; what a killed run left behind is removed at the next start.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::mesh::{Plan, Planned};

/// The sidecar's user and group, as in Istio's injected pods (proxy-init lets its traffic through).
const PROXY_UID: &str = "1337";
/// Inbound ports proxy-init leaves uncaptured: Istio's (Prometheus, health, agent) and the sidecar's admin,
/// which `sextant dev` reads from the host to know it is ready.
const UNCAPTURED_INBOUND: &str = "15090,15021,15020,15000";

/// The pods' network, removed on [`Pods::remove`] (and on drop).
pub struct Pods {
    pid: u32,
    bridge: String,
    namespaces: Vec<(String, String)>,
    /// The sextant binary where uid 1337 can run it.
    exe: PathBuf,
    removed: bool,
}

impl Pods {
    /// Makes a pod of every workload of `plan`: namespace, link, address, route, and proxy-init's rules.
    /// Blocking (it runs `ip` and `proxy-init`): call it off the async workers.
    pub fn create(plan: &Plan, bin_dir: &Path) -> anyhow::Result<Pods> {
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "--intercept needs root (it makes network namespaces and iptables rules): run it with sudo, or leave out --intercept"
        );
        for tool in ["ip", "setpriv", "iptables-restore"] {
            anyhow::ensure!(
                which(tool),
                "--intercept needs `{tool}` on PATH (Debian: apt install iproute2 iptables util-linux)"
            );
        }
        let gateway = plan
            .gateway()
            .context("an --intercept plan has a gateway")?;
        sweep_stale();
        let in_use = run("ip", &["-o", "-4", "addr", "show"])?;
        anyhow::ensure!(
            !in_use.contains(&format!(" {gateway}/")),
            "the pods' network {gateway}/24 is in use (another `sextant dev --intercept`?): pick another with --loopback"
        );
        let pid = std::process::id();
        let mut pods = Pods {
            pid,
            bridge: format!("sxd{pid}"),
            namespaces: Vec::new(),
            exe: publish(bin_dir)?,
            removed: false,
        };
        pods.build(plan, gateway)?;
        Ok(pods)
    }

    fn build(&mut self, plan: &Plan, gateway: IpAddr) -> anyhow::Result<()> {
        let bridge = self.bridge.clone();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &bridge],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for (i, planned) in plan.workloads().iter().enumerate() {
            let ns = self.namespace(planned);
            run("ip", &["netns", "add", &ns])?;
            self.namespaces.push((planned.workload.name(), ns.clone()));
            let host_side = format!("sxd{}v{i}", self.pid);
            run(
                "ip",
                &[
                    "link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &host_side, "master", &bridge, "up"])?;
            let pod = planned.pod.to_string();
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{pod}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    &gateway.to_string(),
                ],
            )?;
            let exe = self.exe.to_string_lossy().into_owned();
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    &exe,
                    "proxy-init",
                    "-d",
                    UNCAPTURED_INBOUND,
                ],
            )
            .with_context(|| format!("proxy-init in {}'s pod", planned.workload.name()))?;
        }
        Ok(())
    }

    /// The namespace of `planned`'s pod.
    fn namespace(&self, planned: &Planned) -> String {
        format!("sxd-{}-{}", self.pid, planned.workload.name())
    }

    /// A command running this sextant binary in `planned`'s pod, as the sidecar's user when `as_proxy`.
    pub fn command(&self, planned: &Planned, as_proxy: bool) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(planned)]);
        if as_proxy {
            cmd.args([
                "setpriv",
                "--reuid",
                PROXY_UID,
                "--regid",
                PROXY_UID,
                "--clear-groups",
            ]);
        }
        cmd.arg(&self.exe);
        cmd
    }

    /// Removes the namespaces (killing what still runs in them), the bridge and the published binary.
    /// Blocking: call it off the async workers.
    pub fn remove(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        for (_, ns) in self.namespaces.drain(..) {
            remove_namespace(&ns);
        }
        let _ = quiet("ip", &["link", "delete", &self.bridge]);
        if let Some(dir) = self.exe.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The sextant binary copied where uid 1337 can run it (the checkout or home it was built in may be private
/// to root): `bin_dir/sextant`, the directory and the file readable and executable by all.
fn publish(bin_dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().context("locating the sextant binary")?;
    std::fs::create_dir_all(bin_dir)
        .with_context(|| format!("cannot create {}", bin_dir.display()))?;
    let public = bin_dir.join("sextant");
    std::fs::copy(&exe, &public).with_context(|| format!("cannot copy {}", exe.display()))?;
    for (path, mode) in [(bin_dir, 0o755), (public.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    Ok(public)
}

/// Removes what runs of `sextant dev --intercept` processes that are gone: their namespaces and bridges.
fn sweep_stale() {
    let dead = |pid: &str| pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists();
    let namespaces = quiet("ip", &["netns", "list"]).unwrap_or_default();
    for name in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if let Some(pid) = name.strip_prefix("sxd-").and_then(|r| r.split('-').next())
            && dead(pid)
        {
            remove_namespace(name);
        }
    }
    let links = quiet("ip", &["-o", "link", "show", "type", "bridge"]).unwrap_or_default();
    for name in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
    {
        if let Some(pid) = name.strip_prefix("sxd")
            && dead(pid)
        {
            let _ = quiet("ip", &["link", "delete", name]);
        }
    }
}

/// Kills what runs in namespace `name`, then deletes it.
fn remove_namespace(name: &str) {
    let pids = quiet("ip", &["netns", "pids", name]).unwrap_or_default();
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter_map(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = quiet("ip", &["netns", "delete", name]);
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// Runs `program args`; its output, or an error with what it printed.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run`] for clean-up, where a failure only means there was nothing to remove.
fn quiet(program: &str, args: &[&str]) -> Option<String> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}
