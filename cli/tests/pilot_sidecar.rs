//! The Sidecar resource through a real Envoy 1.40 (and `sextant proxy` where the proxy matters): a mesh of
//! 1000 HTTP services, a namespace whose Sidecar imports 10 of them. Its proxy holds those 10 services'
//! clusters and routes, answers for them and not for the rest, and a change to a service it does not import
//! pushes it nothing; pilot's bytes pushed and Envoy's RSS are printed for both proxies (the closing note
//! quotes them). And a Sidecar `ingress` port: the proxy binds it and forwards to the workload's
//! `defaultEndpoint`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{
    Backend, DataPlane, Envoy, HeldPort, Plane, ads_bootstrap, call, get, get_json, scratch_config,
    start_pilot, wait_until, write_atomically,
};

const WAIT: Duration = Duration::from_secs(120);
const SERVICES: usize = 1000;
const IMPORTED: usize = 10;

/// `count` HTTP services `svc-N.default.svc.cluster.local` on `port`, each with one endpoint at `backend`
/// (svc-0's on `first_endpoint` instead, so a test can move it).
fn services(count: usize, port: u16, backend: SocketAddr, first_endpoint: u16) -> String {
    let mut out = String::new();
    for i in 0..count {
        let endpoint = if i == 0 {
            first_endpoint
        } else {
            backend.port()
        };
        out.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc-{i}, namespace: default}}\n\
             spec:\n  hosts: [svc-{i}.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
             ports: [{{number: {port}, name: http}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {endpoint}}}}}]\n---\n"
        ));
    }
    out
}

/// The `shop` namespace's Sidecar: svc-0 … svc-9 of `default`.
fn shop_sidecar() -> String {
    let hosts: Vec<String> = (0..IMPORTED)
        .map(|i| format!("\"default/svc-{i}.default.svc.cluster.local\""))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: shop}}\nspec:\n  \
         egress: [{{hosts: [{}]}}]\n",
        hosts.join(", ")
    )
}

/// A sidecar without interception in `namespace` (node id and YAML node for Envoy).
fn node(namespace: &str) -> (String, String) {
    let id = format!("sidecar~127.0.0.1~web.{namespace}~{namespace}.svc.cluster.local");
    let yaml = format!(
        "{{id: \"{id}\", cluster: web.{namespace}, metadata: {{INTERCEPTION_MODE: NONE, NAMESPACE: {namespace}, LABELS: {{app: web}}}}}}"
    );
    (id, yaml)
}

/// The service clusters (`outbound|…`) in Envoy's config dump.
fn service_clusters(envoy: &Envoy) -> usize {
    let dump = get(
        envoy.admin,
        "/config_dump?resource=dynamic_active_clusters",
        &[],
    )
    .map(|r| r.body)
    .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap_or_default();
    (v["configs"].as_array().into_iter().flatten())
        .filter(|c| {
            c["cluster"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("outbound|"))
        })
        .count()
}

/// `node`'s entry in pilot's `/debug/syncz`, per type: (pushes, bytes).
fn pushed(monitoring: SocketAddr, node: &str) -> Vec<(String, u64, u64)> {
    let sync = get_json(monitoring, "/debug/syncz");
    let Some(p) = (sync.as_array().into_iter().flatten()).find(|p| p["node"] == node) else {
        return Vec::new();
    };
    let types = p["types"].as_object().cloned().unwrap_or_default();
    types
        .iter()
        .map(|(t, s)| {
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            (t.clone(), n("pushes"), n("bytes"))
        })
        .collect()
}

fn pushes_of(monitoring: SocketAddr, node: &str, type_name: &str) -> u64 {
    (pushed(monitoring, node).into_iter())
        .find(|(t, _, _)| t == type_name)
        .map_or(0, |(_, n, _)| n)
}

fn bytes_pushed(monitoring: SocketAddr, node: &str) -> u64 {
    pushed(monitoring, node).iter().map(|(_, _, b)| b).sum()
}

/// Starts Envoy as the sidecar of `namespace` and waits until it holds `clusters` service clusters.
fn envoy_in(dir: &Path, xds: SocketAddr, namespace: &str, clusters: usize) -> Envoy {
    let (_, yaml) = node(namespace);
    let d = dir.join(namespace);
    std::fs::create_dir_all(&d).expect("dir");
    let envoy = Envoy::start(&d, &ads_bootstrap(xds, "GRPC", &yaml));
    wait_until(
        WAIT,
        &format!("{namespace}'s Envoy to hold {clusters} clusters"),
        || service_clusters(&envoy) == clusters,
    );
    envoy
}

#[test]
fn a_sidecar_scopes_its_proxy_to_what_it_imports() {
    let (dir, config) = scratch_config("pilot-sidecar-scope");
    let backend = Backend::answering("svc ok");
    let moved = Backend::answering("svc-0 moved");
    let held = HeldPort::hold();
    let port = held.port();
    let services_file = config.join("services.yaml");
    std::fs::write(
        &services_file,
        services(SERVICES, port, backend.addr, backend.addr.port()),
    )
    .expect("write");
    std::fs::write(config.join("sidecar.yaml"), shop_sidecar()).expect("write");
    let (pilot, xds, monitoring) = start_pilot(&config, "127.0.0.1:0");

    // Without a Sidecar: the whole mesh.
    let (full_id, _) = node("default");
    let mut full = envoy_in(&dir, xds, "default", SERVICES);
    let full_rss = full.proc.rss_kib();
    let full_bytes = bytes_pushed(monitoring, &full_id);
    full.proc.terminate();

    // With: the ten it imports, and nothing else.
    let (scoped_id, _) = node("shop");
    let scoped = envoy_in(&dir, xds, "shop", IMPORTED);
    let scoped_rss = scoped.proc.rss_kib();
    let scoped_bytes = bytes_pushed(monitoring, &scoped_id);
    eprintln!(
        "{SERVICES} services: Envoy RSS {full_rss} KiB, pilot pushed {full_bytes} bytes; with a Sidecar importing \
         {IMPORTED}: Envoy RSS {scoped_rss} KiB, pilot pushed {scoped_bytes} bytes"
    );
    assert!(
        scoped_bytes * 20 < full_bytes,
        "the scoped proxy was pushed {scoped_bytes} bytes, the unscoped {full_bytes}"
    );
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(WAIT, "an imported service to answer", || {
        call(listener, "svc-3.default.svc.cluster.local", "/")
            .is_some_and(|(s, b)| s == 200 && b == "svc ok")
    });
    // A service it does not import has no route here.
    let (status, _) = call(listener, "svc-500.default.svc.cluster.local", "/").expect("an answer");
    assert_eq!(status, 404);

    // A change outside the scope pushes nothing: add a service, then move svc-0's endpoint (inside it).
    // The proxy gets the endpoint push only.
    let before: Vec<u64> = ["cds", "lds", "rds"]
        .iter()
        .map(|t| pushes_of(monitoring, &scoped_id, t))
        .collect();
    let eds_before = pushes_of(monitoring, &scoped_id, "eds");
    write_atomically(
        &services_file,
        &services(SERVICES + 1, port, backend.addr, backend.addr.port()),
    );
    wait_until(WAIT, "pilot to read the new service", || {
        get_json(monitoring, "/debug/config")["services"]
            .to_string()
            .contains(&format!("svc-{SERVICES}."))
    });
    write_atomically(
        &services_file,
        &services(SERVICES + 1, port, backend.addr, moved.addr.port()),
    );
    wait_until(WAIT, "svc-0 to answer from its new endpoint", || {
        call(listener, "svc-0.default.svc.cluster.local", "/")
            .is_some_and(|(s, b)| s == 200 && b == "svc-0 moved")
    });
    assert!(pushes_of(monitoring, &scoped_id, "eds") > eds_before);
    let after: Vec<u64> = ["cds", "lds", "rds"]
        .iter()
        .map(|t| pushes_of(monitoring, &scoped_id, t))
        .collect();
    assert_eq!(before, after, "cds, lds, rds pushes to the scoped proxy");
    assert_eq!(service_clusters(&scoped), IMPORTED);
    assert_eq!(scoped.rejected_updates(), 0);
    drop(scoped);
    drop(pilot);
    drop(held);
}

/// A Sidecar `ingress` port with `captureMode: NONE`: the proxy binds 127.0.0.1:PORT and forwards to the
/// workload's `defaultEndpoint`, over HTTP and over TCP.
fn ingress_reaches_the_workload(plane: Plane) {
    let (dir, config) = scratch_config("pilot-sidecar-ingress");
    let app = Backend::answering("the workload");
    let (http_port, tcp_port) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("sidecar.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: web, namespace: shop}}\nspec:\n  \
             workloadSelector: {{labels: {{app: web}}}}\n  ingress:\n  \
             - {{port: {{number: {h}, protocol: HTTP, name: http}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: \"{app}\"}}\n  \
             - {{port: {{number: {t}, protocol: TCP, name: tcp}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: \"{app}\"}}\n",
            h = http_port.port(),
            t = tcp_port.port(),
            app = app.addr,
        ),
    )
    .expect("write");
    let (pilot, xds, _monitoring) = start_pilot(&config, "127.0.0.1:0");
    let (id, yaml) = node("shop");
    let proxy = plane.start(
        &dir.join("proxy"),
        xds,
        "GRPC",
        &yaml,
        &id,
        &[
            ("POD_NAMESPACE", "shop"),
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("ISTIO_METAJSON_LABELS", r#"{"app": "web"}"#),
        ],
    );
    for held in [&http_port, &tcp_port] {
        let at = SocketAddr::from(([127, 0, 0, 1], held.port()));
        wait_until(
            WAIT,
            &format!("{plane:?} to forward {at} to the workload"),
            || {
                call(at, "anything.example", "/")
                    .is_some_and(|(s, b)| s == 200 && b == "the workload")
            },
        );
    }
    assert_eq!(proxy.rejected_updates(), 0);
    drop(proxy);
    drop(pilot);
}

#[test]
fn ingress_reaches_the_workload_through_envoy() {
    ingress_reaches_the_workload(Plane::Envoy);
}

#[test]
fn ingress_reaches_the_workload_through_sextant_proxy() {
    ingress_reaches_the_workload(Plane::Sextant);
}
