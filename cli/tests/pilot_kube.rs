//! `sextant pilot --registry kubernetes`: services come from a Kubernetes API server, here a replay of
//! API-server responses (`pilot/kube/tests/fixtures`, served by `pilot/kube/tests/replay`) because no API
//! server can run on the build machines. The reviews EndpointSlices are templated to point at local
//! backends; a real Envoy routes through pilot to the pod the DestinationRule subset selects by the Pod's
//! `version` label, and a replayed watch event removing a pod reaches Envoy.

mod common;
#[path = "../../pilot/kube/tests/replay/mod.rs"]
mod replay;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, Envoy, HeldPort, Proc, call, get, get_json, scratch, scratch_config, wait_until,
    write_atomically,
};
use replay::{ENDPOINT_SLICES, PODS, Replay, SERVICES, events, fixture};

/// The recorded list `name` with only the items `keep` accepts: the sidecar here binds every service port
/// on 127.0.0.1, so only the reviews Service (its port templated to one held for the test) is kept.
fn only(name: &str, vars: &[(&str, String)], keep: impl Fn(&serde_json::Value) -> bool) -> String {
    let mut list: serde_json::Value =
        serde_json::from_str(&fixture(name, vars)).expect("fixture is JSON");
    let items: Vec<serde_json::Value> = list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|i| keep(i))
        .cloned()
        .collect();
    assert!(!items.is_empty(), "{name}: nothing kept");
    list["items"] = items.into();
    list.to_string()
}

fn routes(subset: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"#
    )
}

/// A ServiceEntry next to the Kubernetes Services: both sources are served.
fn service_entry(port: u16) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments}}
spec:
  hosts: [payments.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: tcp, protocol: TCP}}]
  endpoints: [{{address: 127.0.0.1}}]
"#
    )
}

fn pilot(config: &Path, kubeconfig: &Path) -> (Proc, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--registry", "kubernetes", "--config-dir"])
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--xds-addr", "127.0.0.1:0"])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("pilot", cmd, scratch("pilot-kube-log").join("pilot.log"));
    let (xds, monitoring) = common::pilot_addrs(&mut proc);
    (proc, xds, monitoring)
}

#[test]
fn envoy_routes_to_the_kubernetes_pod_the_subset_selects() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let v1 = Backend::answering("reviews-v1");
    let v2 = Backend::answering("reviews-v2");
    // The ports of reviews and payments: Envoy binds them on 127.0.0.1 (no interception).
    let (held, payments) = (HeldPort::hold(), HeldPort::hold());
    let port = held.port();
    let vars = vec![
        ("REVIEWS_PORT", port.to_string()),
        ("REVIEWS_V1_IP", v1.addr.ip().to_string()),
        ("REVIEWS_V1_PORT", v1.addr.port().to_string()),
        ("REVIEWS_V2_IP", v2.addr.ip().to_string()),
        ("REVIEWS_V2_PORT", v2.addr.port().to_string()),
    ];
    let reviews = |i: &serde_json::Value| {
        i["metadata"]["name"] == "reviews"
            || i["metadata"]["labels"]["kubernetes.io/service-name"] == "reviews"
            || i["metadata"]["labels"]["app"] == "reviews"
    };
    let replay = rt.block_on(Replay::start(vec![
        (SERVICES, vec![only("services.json", &vars, reviews)]),
        (
            ENDPOINT_SLICES,
            vec![only("endpointslices.json", &vars, reviews)],
        ),
        (PODS, vec![only("pods.json", &vars, reviews)]),
    ]));

    let (dir, config) = scratch_config("pilot-kube");
    std::fs::write(config.join("routes.yaml"), routes("v1")).expect("write");
    std::fs::write(config.join("payments.yaml"), service_entry(payments.port())).expect("write");
    let (mut pilot, xds, monitoring) = pilot(&config, &replay.kubeconfig(&dir));
    wait_until(Duration::from_secs(60), "pilot to be ready", || {
        assert!(pilot.alive(), "pilot exited:\n{}", pilot.log());
        get(monitoring, "/ready", &[]).is_some_and(|r| r.status == 200)
    });
    let services = get_json(monitoring, "/debug/config")["services"].clone();
    assert_eq!(
        services,
        serde_json::json!(["payments.example.com", "reviews.default.svc.cluster.local"]),
        "both the ServiceEntry and the Kubernetes Service are served"
    );

    let _envoy = Envoy::start(
        &dir,
        &common::ads_bootstrap(xds, "GRPC", common::PRODUCTPAGE_NODE),
    );
    let listener = held.addr;
    wait_until(Duration::from_secs(60), "Envoy to route reviews", || {
        call(listener, "reviews", "/").is_some_and(|(s, _)| s == 200)
    });
    // Subset v1 is the pod labelled version: v1 (its terminating sibling in the recorded slice is not
    // ready and gets nothing).
    for _ in 0..10 {
        assert_eq!(
            call(listener, "reviews", "/"),
            Some((200, "reviews-v1".to_string()))
        );
    }

    write_atomically(&config.join("routes.yaml"), &routes("v2"));
    wait_until(Duration::from_secs(30), "Envoy to route to v2", || {
        call(listener, "reviews", "/").is_some_and(|(s, b)| s == 200 && b == "reviews-v2")
    });
    for _ in 0..10 {
        assert_eq!(
            call(listener, "reviews", "/"),
            Some((200, "reviews-v2".to_string())),
            "subset v2 is the pod labelled version: v2"
        );
    }

    // The recorded watch event that empties reviews-v2's slice (its pod went away): Envoy is pushed the
    // change and subset v2 has no endpoint left.
    let removal = &events("watch-endpointslices.jsonl", &vars)[1];
    assert!(removal.contains(r#""name":"reviews-m2vtn""#) && removal.contains(r#""endpoints":[]"#));
    replay.release(ENDPOINT_SLICES, removal);
    wait_until(
        Duration::from_secs(30),
        "subset v2 to lose its endpoint",
        || call(listener, "reviews", "/").is_some_and(|(s, _)| s == 503),
    );
    let metrics = get(monitoring, "/metrics", &[]).expect("metrics").body;
    assert!(
        metrics.contains(r#"pilot_kube_events_total{kind="EndpointSlice",event="list"} 2"#),
        "{metrics}"
    );
}

#[test]
fn an_unreachable_api_server_keeps_pilot_not_ready_and_says_why() {
    let (dir, config) = scratch_config("pilot-kube-down");
    std::fs::write(config.join("routes.yaml"), routes("v1")).expect("write");
    // A kubeconfig naming a port held for the test, where nobody listens.
    let dead = HeldPort::hold();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'http://127.0.0.1:{}'}}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            dead.port()
        ),
    )
    .expect("write");
    let (mut pilot, _xds, monitoring) = pilot(&config, &kubeconfig);
    wait_until(
        Duration::from_secs(60),
        "pilot to log the failing watch",
        || {
            assert!(pilot.alive(), "pilot exited:\n{}", pilot.log());
            pilot.log().contains("Kubernetes watch failed")
        },
    );
    let ready = get(monitoring, "/ready", &[]).expect("monitoring answers");
    assert_eq!(ready.status, 503);
    assert!(
        ready
            .body
            .contains("waiting for the first full list of Kubernetes"),
        "{}",
        ready.body
    );
    assert!(pilot.alive(), "pilot keeps retrying");
}

#[test]
fn a_broken_kubeconfig_is_one_clear_error() {
    let dir = scratch("pilot-kube-bad");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nclusters: [\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["pilot", "--registry", "kubernetes", "--config-dir"])
        .arg(&dir)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--xds-addr",
            "127.0.0.1:0",
            "--monitoring-addr",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run sextant");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    assert!(
        error.contains(&format!("kubeconfig {}", kubeconfig.display()))
            && error.contains("line 2 column 11"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        2,
        "one error line and one hint:\n{stderr}"
    );
    assert!(stderr.contains("hint: check --kubeconfig"), "{stderr}");
}
