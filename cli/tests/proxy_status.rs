//! `sextant proxy --status-addr`: the sidecar's status port (Istio's 15020). The kubelet's probes of the
//! application, rewritten by the injector, are run by the proxy from inside the pod as `ISTIO_KUBE_APP_PROBERS`
//! describes them; `/healthz/ready` is the proxy's own readiness.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Backend, HeldPort, Proc, get, scratch, scratch_config, start_pilot, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Starts `sextant proxy` fed by `xds` with `--status-addr 127.0.0.1:0` and `ISTIO_KUBE_APP_PROBERS=probers`;
/// returns it and its status address, read from its ready line.
fn start_proxy(dir: &Path, xds: SocketAddr, probers: &str) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["proxy", "--xds-addr", &xds.to_string()])
        .args(["--node-id", common::PRODUCTPAGE_ID])
        .args(["--admin-addr", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0"])
        .args(["--status-addr", "127.0.0.1:0"])
        .env("ISTIO_KUBE_APP_PROBERS", probers)
        .env("INSTANCE_IP", "127.0.0.1")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (k, v) in common::PRODUCTPAGE_ENV {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn("sextant proxy", cmd, dir.join("proxy.log"));
    let line = proc.wait_for_line("proxy: admin on ", WAIT);
    let status = line
        .split_once(", status on http://")
        .and_then(|(_, rest)| rest.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("a status address in {line:?}"));
    (proc, status)
}

#[test]
fn the_status_port_runs_the_applications_probes() {
    let dir = scratch("proxy-status-probes");
    let app = Backend::start();
    let closed = HeldPort::hold();
    // Nothing answers at this xDS address: the proxy never gets its configuration.
    let no_pilot = HeldPort::hold();
    let probers = serde_json::json!({
        "/app-health/app/readyz": {"httpGet": {"path": "/healthz", "port": app.addr.port(), "scheme": "HTTP"}},
        "/app-health/app/livez": {"tcpSocket": {"port": closed.port()}, "timeoutSeconds": 2},
    })
    .to_string();
    let (_proxy, status) = start_proxy(&dir, no_pilot.addr, &probers);

    let ready = get(status, "/app-health/app/readyz", &[]).expect("an answer");
    assert_eq!((ready.status, ready.body.as_str()), (200, "OK\n"));
    let live = get(status, "/app-health/app/livez", &[]).expect("an answer");
    assert_eq!(live.status, 503, "{live:?}");
    assert!(
        live.body
            .starts_with(&format!("cannot connect to 127.0.0.1:{}: ", closed.port())),
        "{live:?}"
    );
    assert_eq!(live.body.lines().count(), 1, "one line: {live:?}");
    for unknown in ["/app-health/app/startupz", "/app-health/db/readyz"] {
        let answer = get(status, unknown, &[]).expect("an answer");
        assert_eq!(answer.status, 404, "{unknown}: {answer:?}");
    }

    let not_ready = get(status, "/healthz/ready", &[]).expect("an answer");
    assert_eq!(
        (not_ready.status, not_ready.body.trim()),
        (503, "PRE_INITIALIZING: waiting for clusters"),
        "no configuration from pilot yet"
    );
}

#[test]
fn healthz_ready_turns_200_once_the_proxy_has_its_configuration() {
    let (dir, config) = scratch_config("proxy-status-ready");
    let held = HeldPort::hold();
    std::fs::write(
        config.join("services.yaml"),
        common::reviews_entry(held.port(), 9),
    )
    .expect("write");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let (mut proxy, status) = start_proxy(&dir, xds, "{}");
    wait_until(WAIT, "/healthz/ready to answer 200", || {
        assert!(proxy.alive(), "sextant proxy exited:\n{}", proxy.log());
        get(status, "/healthz/ready", &[]).is_some_and(|r| r.status == 200 && r.body == "LIVE\n")
    });
}

#[test]
fn invalid_probes_keep_the_proxy_from_starting() {
    let dir = scratch("proxy-status-invalid");
    let no_pilot = HeldPort::hold();
    for (probers, message) in [
        (
            "{not json",
            "error: ISTIO_KUBE_APP_PROBERS: not a JSON object of probes: ",
        ),
        (
            r#"{"/app-health/app/readyz": {"tcpSocket": {"port": 0}}}"#,
            "error: ISTIO_KUBE_APP_PROBERS: /app-health/app/readyz: tcpSocket.port: 0 is not a port (1..65535)",
        ),
    ] {
        let log = dir.join("proxy.log");
        let out = std::fs::File::create(&log).expect("log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(["proxy", "--xds-addr", &no_pilot.addr.to_string()])
            .args(["--admin-addr", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0"])
            .args(["--status-addr", "127.0.0.1:0"])
            .env("ISTIO_KUBE_APP_PROBERS", probers)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start sextant proxy");
        let mut exit = None;
        wait_until(WAIT, "sextant proxy to exit", || {
            exit = child.try_wait().expect("wait");
            if exit.is_none()
                && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("proxy: admin on"))
            {
                let _ = child.kill();
                panic!("sextant proxy started with {probers}");
            }
            exit.is_some()
        });
        let stderr = std::fs::read_to_string(&log).expect("log");
        assert!(
            exit.is_some_and(|s| !s.success()),
            "{probers}: {exit:?}\n{stderr}"
        );
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(errors[0].starts_with(message), "{probers}: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
    }
}
