//! Check and Report from `sextant proxy` sidecars, through pilot's hub filter, against the real hub, on
//! loopback: `front`'s sidecar calls `web`'s over mesh mTLS (both `sextant proxy`, interception NONE), and
//! `web`'s sidecar checks each request with the hub before its workload sees it.
//!
//! What a user notices: a hub Policy's DENY answers 403 at the client; a repeated request is decided from
//! the sidecar's check cache (the hub's Check count does not move); a rate limit is spent from leases the
//! sidecar prefetched (a hub call per ten requests) and holds exactly; the hub's Prometheus exposition shows
//! `istio_requests_total` reported by both sidecars with both workloads and principals; with the hub gone,
//! FAIL_OPEN requests keep flowing (bypassed, or decided by stale answers), FAIL_CLOSE ones get 503; and
//! when a hub is back, requests are checked again.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, DataPlane, HUB_HOST, HeldPort, Hub, Plane, get, scratch_config, start_pilot_with,
    wait_until, write_atomically,
};

const WAIT: Duration = Duration::from_secs(60);
const HOST: &str = "web.shop.svc.cluster.local";
const WEB_ID: &str = "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local";
const FRONT_ID: &str = "sidecar~127.0.0.1~front-1.shop~shop.svc.cluster.local";

/// The hub's policies: `/private` denied to `web` (FAIL_OPEN, the default), `/secure…` under FAIL_CLOSE,
/// `/limited` rate-limited (50 at once: leases of 10).
const POLICIES: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: web-paths, namespace: shop}
spec:
  selector: 'destination.workload.name == "web"'
  rules:
  - name: no-private
    when: 'request.url_path == "/private"'
    action: DENY
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: secure, namespace: shop}
spec:
  selector: 'request.url_path.startsWith("/secure")'
  failurePolicy: FAIL_CLOSE
---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {name: limited, namespace: shop}
spec:
  selector: 'request.url_path == "/limited"'
  limit: {requests: 100, per: 1h, burst: 49}
"#;

/// `web`'s service on `port` (its sidecar's ingress on `ingress`, on to `app`), mesh mTLS to it, and the
/// hub as a mesh service on `hub_port` whose one endpoint is the hub's gRPC address.
fn mesh(port: u16, ingress: u16, app: SocketAddr, hub_port: u16, hub: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ingress}}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: shop}}
spec:
  host: {HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
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
    ) + &common::hub_service(hub_port, hub)
}

/// `GET path` through `front`'s sidecar at `at`: the status (0 when the connection failed).
fn status(at: SocketAddr, path: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-w",
            "%{http_code}",
        ])
        .args(["-H", &format!("Host: {HOST}")])
        .arg(format!("http://{at}{path}"))
        .output()
        .expect("curl (installed by .ci/peers)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The value of a counter of `proxy`'s by its exact name (cluster names hold `|`, which the stats
/// filter would read as a regex).
fn counter(proxy: &dyn DataPlane, name: &str) -> u64 {
    get(proxy.admin(), "/stats", &[])
        .map(|r| r.body)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The hub's Check calls so far, over every outcome.
fn hub_checks(hub: &Hub) -> f64 {
    hub.metrics()
        .lines()
        .filter(|l| l.starts_with("sextant_hub_checks_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Series of `istio_requests_total` in the hub's adapter exposition holding every label of `labels`.
fn requests_series(hub: &Hub, labels: &[&str]) -> Vec<String> {
    get(hub.prometheus, "/metrics", &[])
        .map(|r| r.body)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(str::to_string)
        .collect()
}

/// A Telemetry logging each reported request's span (B3 form: this hop's span and its parent) to `log`.
fn spans(log: &Path) -> String {
    format!(
        r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: spans, namespace: shop}}
spec:
  module: builtin:logs
  config: {{name: spans}}
  stdout: {log}
  limits: {{flushInterval: 100ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: spans, namespace: shop}}
spec:
  selector: '"x-b3-parentspanid" in request.headers'
  adapters: [spans]
  logs:
  - name: span
    fields:
      reporter: context.reporter.kind
      trace: 'request.headers["x-b3-traceid"]'
      span: 'request.headers["x-b3-spanid"]'
      parent: 'request.headers["x-b3-parentspanid"]'
"#,
        log = log.display()
    )
}

/// The spans logged for `trace`: (reporter, span, parent).
fn logged_spans(log: &Path, trace: &str) -> Vec<(String, String, String)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let text = |k: &str| {
                v.pointer(&format!("/fields/{k}"))
                    .or_else(|| v.get(k))
                    .and_then(|f| f.as_str())
                    .map(str::to_string)
            };
            (text("trace")? == trace).then_some(())?;
            Some((text("reporter")?, text("span")?, text("parent")?))
        })
        .collect()
}

fn start_hub(config: &Path) -> Hub {
    // Decisions that expire within the test (a FAIL_CLOSE answer must), yet outlive a burst of requests.
    Hub::start_with(config, &["--decision-ttl", "15s"])
}

/// `web`'s and `front`'s `sextant proxy` sidecars (interception NONE, service accounts `web` and `front` of
/// `shop`), fed by pilot at `xds`.
fn sidecars(dir: &Path, xds: SocketAddr) -> (Box<dyn DataPlane>, Box<dyn DataPlane>) {
    let env = |sa: &'static str, app: &'static str| {
        [
            ("POD_NAMESPACE", "shop"),
            ("SERVICE_ACCOUNT", sa),
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("ISTIO_METAJSON_LABELS", app),
        ]
    };
    let start = |name: &str, id: &str, sa: &'static str, labels: &'static str| {
        Plane::Sextant.start(&dir.join(name), xds, "GRPC", "", id, &env(sa, labels))
    };
    (
        start("web", WEB_ID, "web", r#"{"app": "web"}"#),
        start("front", FRONT_ID, "front", r#"{"app": "front"}"#),
    )
}

#[test]
fn sidecars_check_and_report_through_the_hub() {
    let (dir, config) = scratch_config("proxy-hub");
    let hub_config = dir.join("hub-config");
    std::fs::create_dir_all(&hub_config).expect("hub config");
    std::fs::write(hub_config.join("policies.yaml"), POLICIES).expect("policies");
    let span_log = dir.join("spans.jsonl");
    std::fs::write(hub_config.join("spans.yaml"), spans(&span_log)).expect("spans");
    let mut hub = start_hub(&hub_config);

    let app = Backend::answering("the workload");
    let (port, ingress, hub_port) = (HeldPort::hold(), HeldPort::hold(), HeldPort::hold());
    let mesh_file = config.join("mesh.yaml");
    let write_mesh = |hub: &Hub| {
        write_atomically(
            &mesh_file,
            &mesh(
                port.port(),
                ingress.port(),
                app.addr,
                hub_port.port(),
                hub.grpc,
            ),
        )
    };
    write_mesh(&hub);
    let hub_service = format!("{HUB_HOST}:{}", hub_port.port());
    let (pilot, xds, _monitoring) =
        start_pilot_with(&config, "127.0.0.1:0", &["--hub-service", &hub_service]);
    let (web, front) = sidecars(&dir, xds);
    let via_front = SocketAddr::from(([127, 0, 0, 1], port.port()));
    let hub_cluster = format!("cluster.outbound|{}||{HUB_HOST}.", hub_port.port());
    let web_stat = |name: &str| counter(web.as_ref(), &format!("{hub_cluster}hub.check.{name}"));

    // The hub decides: /private is denied at the client, /public goes through.
    wait_until(WAIT, "the hub to deny /private", || {
        status(via_front, "/private") == 403
    });
    assert_eq!(status(via_front, "/public"), 200);
    assert!(web_stat("calls") > 0, "web's sidecar called the hub");

    // A repeated request is answered by web's check cache: no Check reaches the hub.
    let (calls, checks, hits) = (web_stat("calls"), hub_checks(&hub), web_stat("cache_hit"));
    assert_eq!(status(via_front, "/public"), 200);
    assert_eq!(status(via_front, "/private"), 403);
    assert_eq!(web_stat("calls"), calls, "a cached decision called the hub");
    assert_eq!(hub_checks(&hub), checks, "the hub was asked again");
    assert_eq!(web_stat("cache_hit"), hits + 2);

    // A rate limit is spent from leases in web's cache: 50 requests (the bucket's burst and one) in five
    // hub calls, the 51st refused, and the refusal answered from the cache too.
    let calls = web_stat("calls");
    for i in 0..50 {
        assert_eq!(
            status(via_front, "/limited"),
            200,
            "request {i} within the limit"
        );
    }
    let leased = web_stat("calls") - calls;
    assert!(leased <= 6, "50 requests took {leased} hub calls");
    assert_eq!(status(via_front, "/limited"), 429);
    let calls = web_stat("calls");
    assert_eq!(status(via_front, "/limited"), 429);
    assert_eq!(
        web_stat("calls"),
        calls,
        "a refusal is cached until retry_after"
    );

    // Both sidecars report: Istio's standard metric, with both workloads and principals.
    let inbound = [
        "reporter=\"destination\"",
        "source_workload=\"front\"",
        "source_workload_namespace=\"shop\"",
        "source_principal=\"spiffe://cluster.local/ns/shop/sa/front\"",
        "destination_workload=\"web\"",
        "destination_workload_namespace=\"shop\"",
        "response_code=\"200\"",
        "connection_security_policy=\"mutual_tls\"",
    ];
    wait_until(WAIT, "web's report of front's requests", || {
        !requests_series(&hub, &inbound).is_empty()
    });
    wait_until(WAIT, "web's report of the denied request", || {
        !requests_series(&hub, &["reporter=\"destination\"", "response_code=\"403\""]).is_empty()
    });
    let outbound = [
        "reporter=\"source\"",
        "source_workload=\"front\"",
        "destination_service_name=\"web\"",
        // Who answered came back with the response from web's sidecar.
        "destination_workload=\"web\"",
        "destination_workload_namespace=\"shop\"",
        "response_code=\"200\"",
    ];
    wait_until(WAIT, "front's report of its requests", || {
        !requests_series(&hub, &outbound).is_empty()
    });

    // Traces: each sidecar is a span, the caller's span its parent, and the workload sees the last.
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "5"])
        .args(["-H", &format!("Host: {HOST}")])
        .args(["-H", &format!("traceparent: 00-{trace}-{caller}-01")])
        .arg(format!("http://{via_front}/traced"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let seen = head
        .lines()
        .find_map(|l| l.strip_prefix("x-echo-traceparent:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    assert!(
        seen.starts_with(&format!("00-{trace}-")),
        "the workload saw {seen:?}"
    );
    wait_until(WAIT, "both sidecars' spans", || {
        logged_spans(&span_log, trace).len() == 2
    });
    let logged = logged_spans(&span_log, trace);
    let outbound = logged
        .iter()
        .find(|s| s.0 == "outbound")
        .expect("front's span");
    let inbound = logged
        .iter()
        .find(|s| s.0 == "inbound")
        .expect("web's span");
    assert_eq!(outbound.2, caller, "front's span is the caller's child");
    assert_eq!(inbound.2, outbound.1, "web's span is front's child");
    assert!(
        seen.contains(&inbound.1),
        "the workload's parent is web's span: {seen}"
    );

    // The hub goes away. /secure was decided (allowed) before; its policy is FAIL_CLOSE.
    assert_eq!(status(via_front, "/secure/doc"), 200);
    hub.proc.terminate();
    // Cached and stale answers of FAIL_OPEN policies keep deciding; a request never decided is let through.
    assert_eq!(status(via_front, "/public"), 200);
    assert_eq!(
        status(via_front, "/private"),
        403,
        "a stale DENY still denies"
    );
    assert_eq!(
        status(via_front, "/never-seen"),
        200,
        "FAIL_OPEN by default"
    );
    assert!(web_stat("bypassed") > 0);
    // Once its answer expires, the FAIL_CLOSE request is refused rather than let through unchecked.
    wait_until(WAIT, "/secure to fail closed", || {
        status(via_front, "/secure/doc") == 503
    });
    assert!(web_stat("failed_closed") > 0);
    wait_until(WAIT, "stale answers to stand in", || {
        status(via_front, "/public") == 200 && web_stat("stale") > 0
    });

    // A hub is back (on a new address, told to pilot): requests are checked again.
    let hub = start_hub(&hub_config);
    write_mesh(&hub);
    wait_until(WAIT, "the new hub to decide /secure", || {
        status(via_front, "/secure/doc") == 200
    });
    assert!(hub_checks(&hub) > 0.0, "the new hub was asked");
    assert_eq!(web.rejected_updates(), 0, "web's sidecar refused an update");
    assert_eq!(
        front.rejected_updates(),
        0,
        "front's sidecar refused an update"
    );
    drop((web, front, pilot, hub, port, ingress, hub_port));
}

/// Who may call `web`: decided on `destination.principal`, which a hub requiring client certificates takes
/// from the calling sidecar's certificate.
const WEB_ONLY: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: web-itself, namespace: shop}
spec:
  rules:
  - name: not-web
    when: 'destination.principal != "spiffe://cluster.local/ns/shop/sa/web"'
    action: DENY
"#;

#[test]
fn sidecars_call_a_hub_serving_mutual_tls_with_their_workload_certificates() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let (dir, config) = scratch_config("proxy-hub-mtls");
    // The mesh CA pilot signs the workloads' certificates with, and the hub's certificate from it.
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).expect("ca dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca_pem = ca.self_signed(&ca_key).expect("the CA").pem();
    std::fs::write(ca_dir.join("ca-cert.pem"), &ca_pem).expect("write");
    std::fs::write(ca_dir.join("ca-key.pem"), ca_key.serialize_pem()).expect("write");
    let issuer = Issuer::new(ca, ca_key);
    let mut hub_params = CertificateParams::new(vec![HUB_HOST.to_string()]).expect("parameters");
    hub_params.subject_alt_names.push(SanType::URI(
        "spiffe://cluster.local/ns/sextant-system/sa/sextant-hub"
            .try_into()
            .expect("a URI"),
    ));
    let hub_key = KeyPair::generate().expect("a key");
    let hub_cert = hub_params
        .signed_by(&hub_key, &issuer)
        .expect("the hub's certificate");
    let tls = dir.join("hub-tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    std::fs::write(tls.join("cert.pem"), hub_cert.pem()).expect("write");
    std::fs::write(tls.join("key.pem"), hub_key.serialize_pem()).expect("write");
    std::fs::write(tls.join("root.pem"), &ca_pem).expect("write");

    let hub_config = dir.join("hub-config");
    std::fs::create_dir_all(&hub_config).expect("hub config");
    std::fs::write(
        hub_config.join("policies.yaml"),
        format!("{POLICIES}---\n{WEB_ONLY}"),
    )
    .expect("write");
    let path = |f: &str| tls.join(f).to_string_lossy().into_owned();
    let (cert, key, root) = (path("cert.pem"), path("key.pem"), path("root.pem"));
    let hub = Hub::start_with(
        &hub_config,
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-client-ca-file",
            &root,
            "--caller-identity",
            "reject",
        ],
    );

    let app = Backend::answering("the workload");
    let (port, ingress, hub_port) = (HeldPort::hold(), HeldPort::hold(), HeldPort::hold());
    // The hub's DestinationRule: mesh mTLS, as to any workload.
    let mesh_yaml = mesh(
        port.port(),
        ingress.port(),
        app.addr,
        hub_port.port(),
        hub.grpc,
    );
    let at = mesh_yaml
        .rfind("mode: DISABLE")
        .expect("the hub's DestinationRule");
    let mesh_yaml = format!(
        "{}mode: ISTIO_MUTUAL{}",
        &mesh_yaml[..at],
        &mesh_yaml[at + 13..]
    );
    write_atomically(&config.join("mesh.yaml"), &mesh_yaml);
    let hub_service = format!("{HUB_HOST}:{}", hub_port.port());
    let ca_arg = ca_dir.to_string_lossy().into_owned();
    let (_pilot, xds, _monitoring) = start_pilot_with(
        &config,
        "127.0.0.1:0",
        &["--hub-service", &hub_service, "--ca-dir", &ca_arg],
    );
    let (_web, _front) = sidecars(&dir, xds);
    let via_front = SocketAddr::from(([127, 0, 0, 1], port.port()));

    // web's sidecar reaches the hub over mTLS with its own certificate: the hub decides, as web.
    wait_until(WAIT, "the hub to deny /private", || {
        status(via_front, "/private") == 403
    });
    assert_eq!(status(via_front, "/public"), 200);
    assert!(hub_checks(&hub) > 0.0);
    assert_eq!(
        hub.metric(r#"sextant_hub_caller_mismatches_total{door="mixer_check",action="rejected"}"#),
        None,
        "web's sidecar named itself as its certificate does"
    );
}
