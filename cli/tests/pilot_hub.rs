//! `sextant pilot --hub-service`: a real Envoy 1.40, `web`'s sidecar serving the workload on a Sidecar
//! ingress port, calls the real hub as pilot tells it. Until the registry has the hub's service, pilot says
//! so once and the sidecar does not call it; once a ServiceEntry names it, the hub's ext_authz answers for
//! web's requests (a Policy selecting web by the attributes pilot sends denies /private with 403, the
//! hub's message as body), and Envoy's access logs reach the hub as `istio_requests_total` reported by the
//! destination, `web`. Envoy takes every push (no NACK).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{
    Backend, DataPlane, Envoy, HUB_HOST, HeldPort, Hub, WEB_NODE, ads_bootstrap, call, get,
    scratch_config, start_pilot_with, wait_until, web_mesh, write_atomically,
};

const WAIT: Duration = Duration::from_secs(60);

/// Denies /private, for web only: its selector reads the attributes only pilot's configuration gives the
/// hub (the route's context extensions).
const POLICY: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: web-private, namespace: shop}
spec:
  selector: 'destination.workload.name == "web" && destination.service.name == "web" && destination.principal == "spiffe://cluster.local/ns/shop/sa/web"'
  rules:
  - name: no-private
    when: 'request.url_path == "/private"'
    action: DENY
    status: {code: PERMISSION_DENIED, httpStatus: 403, message: "web keeps /private to itself"}
"#;

/// The sum of the hub's `istio_requests_total` series (from its adapters' exposition) carrying every one
/// of `labels`.
fn requests(hub: &Hub, labels: &[&str]) -> f64 {
    let body = get(hub.prometheus, "/metrics", &[])
        .map(|r| r.body)
        .unwrap_or_default();
    (body.lines())
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<f64>().ok())
        .sum()
}

#[test]
fn envoy_sidecars_call_the_hub_pilot_names() {
    let (hub_dir, hub_config) = scratch_config("pilot-hub-hub");
    std::fs::write(hub_config.join("policy.yaml"), POLICY).expect("policy");
    let hub = Hub::start(&hub_config);
    let (dir, config) = scratch_config("pilot-hub");
    let app = Backend::answering("the workload");
    let ingress = HeldPort::hold();
    std::fs::write(config.join("mesh.yaml"), web_mesh(ingress.port(), app.addr)).expect("mesh");
    let flag = format!("{HUB_HOST}:{}", hub.grpc.port());
    let (pilot, xds, _monitoring) =
        start_pilot_with(&config, "127.0.0.1:0", &["--hub-service", &flag]);
    let web_dir = dir.join("web");
    std::fs::create_dir_all(&web_dir).expect("dir");
    let web = Envoy::start(&web_dir, &ads_bootstrap(xds, "GRPC", WEB_NODE));
    let at = SocketAddr::from(([127, 0, 0, 1], ingress.port()));
    let host = "web.shop.svc.cluster.local";
    let status = |path: &str| call(at, host, path).map_or(0, |(s, _)| s);

    // No hub service yet: pilot says so, and web serves everything.
    wait_until(WAIT, "web to serve", || status("/public") == 200);
    assert_eq!(status("/private"), 200, "no hub, no check");
    assert!(
        pilot.log().contains("--hub-service names no service port"),
        "{}",
        pilot.log()
    );

    // The hub's service appears: web's requests are checked and reported from now on.
    write_atomically(
        &config.join("hub.yaml"),
        &common::hub_service(hub.grpc.port(), hub.grpc),
    );
    wait_until(WAIT, "the hub to deny /private", || {
        status("/private") == 403
    });
    let (code, body) = call(at, host, "/private").expect("an answer");
    assert_eq!(
        (code, body.as_str()),
        (403, "web keeps /private to itself"),
        "the hub's decision"
    );
    let mut served = 0;
    for _ in 0..5 {
        let (code, body) = call(at, host, "/public").expect("an answer");
        assert_eq!((code, body.as_str()), (200, "the workload"));
        served += 1;
    }
    assert_eq!(
        pilot.log().matches("names no service port").count(),
        1,
        "warned once: {}",
        pilot.log()
    );
    assert!(pilot.log().contains("hub service found"), "{}", pilot.log());

    // Envoy's access logs, as the hub's default telemetry counts them.
    let destination = [
        "reporter=\"destination\"",
        "destination_workload=\"web\"",
        "destination_workload_namespace=\"shop\"",
    ];
    let with = |code: &str| {
        let mut labels = destination.to_vec();
        labels.push(code);
        requests(&hub, &labels)
    };
    wait_until(WAIT, "web's requests in istio_requests_total", || {
        with("response_code=\"200\"") >= f64::from(served) && with("response_code=\"403\"") >= 2.0
    });
    assert_eq!(web.rejected_updates(), 0, "Envoy refused a push");
    drop((web, pilot, hub, ingress, dir, hub_dir));
}

#[test]
fn a_malformed_hub_service_is_refused_in_one_line() {
    let (_dir, config) = scratch_config("pilot-hub-flag");
    for (flag, why) in [
        ("sextant-hub", "is not HOST:PORT"),
        ("sextant-hub:0", "the port must be a number from 1 to 65535"),
        ("*.svc:9091", "the host must be a DNS name"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(["pilot", "--config-dir"])
            .arg(&config)
            .args([
                "--xds-addr",
                "127.0.0.1:0",
                "--monitoring-addr",
                "127.0.0.1:0",
            ])
            .args(["--hub-service", flag])
            .output()
            .expect("run sextant");
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains("--hub-service") && first.contains(flag) && first.contains(why),
            "{flag}: {stderr}"
        );
    }
}
