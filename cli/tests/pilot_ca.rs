//! `sextant pilot` as the mesh CA, with a real Envoy 1.40: an empty `--ca-dir` gets a root that Envoy is
//! then given as `ROOTCA`; the workload certificate Envoy holds names its SPIFFE identity and is renewed and
//! pushed at half its lifetime without Envoy rejecting anything; pilot's config dump never shows the key.
//! SIGTERM with Envoy connected stops pilot cleanly.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{HeldPort, Plane, Proc, get, scratch, wait_until};

const NODE: &str = "{id: \"sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local\", cluster: productpage.default, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: default, SERVICE_ACCOUNT: bookinfo-productpage, LABELS: {app: productpage, version: v1}}}";
const NODE_ID: &str = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local";
const IDENTITY: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";

/// The mesh: reviews on `port` (Envoy binds it on 127.0.0.1: no interception) over ISTIO_MUTUAL, its
/// endpoint at `endpoint` (never called: only the certificates matter here).
fn mesh(port: u16, endpoint: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {endpoint}}}, labels: {{version: v1}}, serviceAccount: bookinfo-reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL}}
"#
    )
}

/// What Envoy's `/certs` says about its workload certificate: (its serial, its SAN URIs, the serial of the
/// CA certificate it trusts).
fn envoy_certificate(admin: SocketAddr) -> Option<(String, Vec<String>, String)> {
    // curl, because Envoy sends /certs chunked.
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("http://{admin}/certs")])
        .output()
        .expect("curl (installed by .ci/peers)");
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let first = certs["certificates"].as_array()?.first()?.clone();
    let leaf = first["cert_chain"].as_array()?.first()?.clone();
    let sans = leaf["subject_alt_names"]
        .as_array()?
        .iter()
        .filter_map(|s| s["uri"].as_str().map(str::to_string))
        .collect();
    let ca = first["ca_cert"].as_array()?.first()?["serial_number"]
        .as_str()?
        .to_string();
    Some((leaf["serial_number"].as_str()?.to_string(), sans, ca))
}

/// The serial of a PEM certificate file, as Envoy prints serials (lowercase hex), read by openssl.
fn serial_of(pem: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .expect("openssl (installed by .ci/peers)");
    assert!(out.status.success(), "openssl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

#[test]
fn pilot_issues_renews_and_pushes_workload_certificates_to_envoy() {
    run(Plane::Envoy);
}

#[test]
fn pilot_issues_renews_and_pushes_workload_certificates_to_sextant_proxy() {
    run(Plane::Sextant);
}

fn run(plane: Plane) {
    let dir = scratch(&format!("pilot-ca-{plane:?}"));
    let config = dir.join("config");
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&config).expect("mkdir");
    let (port, endpoint) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(config.join("mesh.yaml"), mesh(port.port(), endpoint.port())).expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--config-dir"])
        .arg(&config)
        .arg("--ca-dir")
        .arg(&ca_dir)
        .args(["--workload-cert-ttl", "10s"])
        .args(["--xds-addr", "127.0.0.1:0"])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut pilot = Proc::spawn("pilot", cmd, dir.join("pilot.log"));
    let (xds, monitoring) = common::pilot_addrs(&mut pilot);
    wait_until(Duration::from_secs(60), "pilot to be ready", || {
        assert!(pilot.alive(), "pilot exited:\n{}", pilot.log());
        get(monitoring, "/ready", &[]).is_some_and(|r| r.status == 200)
    });
    // The empty directory now holds the root pilot signs with.
    let root = ca_dir.join("ca-cert.pem");
    assert!(root.exists() && ca_dir.join("ca-key.pem").exists());

    let envoy = plane.start(
        &dir.join("proxy"),
        xds,
        "GRPC",
        NODE,
        NODE_ID,
        &[
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("SERVICE_ACCOUNT", "bookinfo-productpage"),
            (
                "ISTIO_METAJSON_LABELS",
                r#"{"app": "productpage", "version": "v1"}"#,
            ),
        ],
    );
    let mut first = None;
    wait_until(
        Duration::from_secs(60),
        "Envoy to hold its workload certificate",
        || {
            first = envoy_certificate(envoy.admin());
            first.is_some()
        },
    );
    let (serial, sans, ca) = first.expect("certificate");
    assert_eq!(
        sans,
        [IDENTITY],
        "the certificate names the proxy's identity"
    );
    assert_eq!(ca, serial_of(&root), "Envoy trusts the root of --ca-dir");

    // Half of the 10 s lifetime later, pilot issues a fresh certificate and pushes it.
    wait_until(
        Duration::from_secs(60),
        "the renewed certificate to reach Envoy",
        || envoy_certificate(envoy.admin()).is_some_and(|(s, _, _)| s != serial),
    );
    let (_, sans, ca) = envoy_certificate(envoy.admin()).expect("certificate");
    assert_eq!(sans, [IDENTITY]);
    assert_eq!(ca, serial_of(&root));
    assert_eq!(envoy.rejected_updates(), 0, "Envoy rejected a push");
    assert!(
        envoy.stat("sds.default.update_success").unwrap_or(0) >= 2,
        "the renewal came as an SDS update"
    );

    // What pilot shows of what it sent: the certificate, never the key.
    let dump = get(
        monitoring,
        &format!("/debug/config_dump?proxy={NODE_ID}"),
        &[],
    )
    .expect("config dump")
    .body;
    assert!(
        dump.contains("\"tlsCertificate\"") && dump.contains("[redacted]"),
        "{dump}"
    );
    let key = std::fs::read_to_string(ca_dir.join("ca-key.pem")).expect("key");
    assert!(!dump.contains("PRIVATE KEY") && !dump.contains(key.lines().nth(1).unwrap_or("-")));
    // SIGTERM with Envoy still connected: pilot closes the stream after its grace period and exits cleanly
    // (terminate() fails the test if it does not exit).
    let started = std::time::Instant::now();
    assert!(pilot.terminate().success(), "{}", pilot.log());
    eprintln!("pilot exited {:?} after SIGTERM", started.elapsed());
    drop(envoy);
}

#[test]
fn a_bad_ca_directory_stops_pilot_with_one_line_naming_the_file() {
    let dir = scratch("pilot-ca-bad");
    std::fs::write(dir.join("ca-cert.pem"), "not a certificate").expect("write");
    std::fs::write(dir.join("ca-key.pem"), "not a key").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["pilot", "--config-dir"])
        .arg(&dir)
        .arg("--ca-dir")
        .arg(&dir)
        .args([
            "--xds-addr",
            "127.0.0.1:0",
            "--monitoring-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run sextant");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: not a PEM private key",
            dir.join("ca-key.pem").display()
        )) && stderr.contains("--ca-dir"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}
