//! The Kubernetes registry against a replay of API-server responses (`fixtures/`, served by `replay/`):
//! no API server can run here, so a small HTTP server answers the real `kube` client's list and watch
//! requests from the fixtures. What is asserted is what a user of pilot sees: host names, ports and their
//! protocols, endpoints with their pods' labels, and how watch events, a `410 Gone` and the limits change
//! that.

mod replay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pilot_config::registry::limits;
use pilot_config::types::{Labels, Location, Resolution};
use pilot_config::{Protocol, RegistrySnapshot, ServiceRegistry};
use pilot_kube::{KubeOptions, KubeRegistry};
use replay::{ENDPOINT_SLICES, PODS, Replay, SERVICES, events, fixture};

const REVIEWS: &str = "reviews.default.svc.cluster.local";

fn vars() -> Vec<(&'static str, String)> {
    vec![
        ("REVIEWS_PORT", "9080".into()),
        ("REVIEWS_V1_IP", "10.244.1.5".into()),
        ("REVIEWS_V1_PORT", "9080".into()),
        ("REVIEWS_V2_IP", "10.244.2.7".into()),
        ("REVIEWS_V2_PORT", "9081".into()),
    ]
}

fn scratch() -> std::path::PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pilot-kube-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The replay with the first lists of the three collections (and `services_after` for later lists).
async fn replay(services_after: Vec<String>) -> Replay {
    let v = vars();
    let mut services = vec![fixture("services.json", &v)];
    services.extend(services_after);
    Replay::start(vec![
        (SERVICES, services),
        (ENDPOINT_SLICES, vec![fixture("endpointslices.json", &v)]),
        (PODS, vec![fixture("pods.json", &v)]),
    ])
    .await
}

async fn registry(replay: &Replay) -> Arc<KubeRegistry> {
    pilot_kube::start(
        &KubeOptions {
            kubeconfig: Some(replay.kubeconfig(&scratch())),
            cluster_domain: "cluster.local".into(),
            debounce: Duration::from_millis(20),
            ..KubeOptions::default()
        },
        &Arc::default(),
    )
    .await
    .expect("registry starts")
}

/// Waits (on the registry's change signal, at most 20 s) until the snapshot satisfies `cond`.
async fn wait_for(
    registry: &KubeRegistry,
    what: &str,
    cond: impl Fn(&RegistrySnapshot) -> bool,
) -> Arc<RegistrySnapshot> {
    let mut changes = registry.changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snapshot = registry.snapshot();
        if cond(&snapshot) {
            return snapshot;
        }
        tokio::time::timeout_at(deadline, changes.changed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; services: {snapshot:#?}"))
            .expect("registry alive");
    }
}

fn addresses(snapshot: &RegistrySnapshot, host: &str) -> Vec<String> {
    let mut a: Vec<String> = snapshot
        .service(host)
        .map(|s| s.endpoints.iter().map(|e| e.address.clone()).collect())
        .unwrap_or_default();
    a.sort();
    a
}

fn metrics(registry: &KubeRegistry) -> String {
    let mut r = prometheus_client::registry::Registry::default();
    registry.metrics.register(&mut r);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r).expect("encode metrics");
    text
}

#[tokio::test]
async fn listed_services_are_what_a_user_sees() {
    let replay = replay(vec![]).await;
    let registry = registry(&replay).await;
    let snap = wait_for(&registry, "the first full sync", |s| s.version > 0).await;
    assert!(registry.synced());

    let hosts: Vec<&str> = snap.services.keys().map(String::as_str).collect();
    assert_eq!(
        hosts,
        [
            "details.default.svc.cluster.local",
            "kubernetes.default.svc.cluster.local",
            "legacy-db.billing.svc.cluster.local",
            "mongodb.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            REVIEWS,
        ]
    );

    // Protocols: appProtocol first, then Istio's port-name rules.
    let port = |host: &str, n: u16| snap.service(host).unwrap().port(n).unwrap().protocol;
    assert_eq!(
        port("details.default.svc.cluster.local", 9080),
        Protocol::Http
    );
    assert_eq!(
        port("ratings.default.svc.cluster.local", 9090),
        Protocol::Grpc
    );
    // `metrics` names no protocol (and Kubernetes' `protocol: TCP` is the transport): sniffed, as Istio.
    assert_eq!(
        port("ratings.default.svc.cluster.local", 9091),
        Protocol::Auto
    );
    assert_eq!(
        port("kubernetes.default.svc.cluster.local", 443),
        Protocol::Https
    );
    assert_eq!(
        port("mongodb.default.svc.cluster.local", 27017),
        Protocol::Mongo
    );
    assert_eq!(port(REVIEWS, 9080), Protocol::Http);

    // reviews: the ready pods of both slices (the terminating one is left out), each service port mapped
    // to its slice's port, with the pod's labels, service account and zone.
    let reviews = snap.service(REVIEWS).unwrap();
    assert_eq!(reviews.location, Location::MeshInternal);
    assert_eq!(reviews.resolution, Resolution::Static);
    assert_eq!(addresses(&snap, REVIEWS), ["10.244.1.5", "10.244.2.7"]);
    let v2 = Labels::from([("version".to_string(), "v2".to_string())]);
    let members: Vec<_> = reviews.endpoints_with(&v2).collect();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].address, "10.244.2.7");
    assert_eq!(members[0].ports, BTreeMap::from([(9080, 9081)]));
    assert_eq!(members[0].labels["app"], "reviews");
    assert_eq!(
        members[0].service_account.as_deref(),
        Some("bookinfo-reviews")
    );
    assert_eq!(members[0].locality.as_deref(), Some("/us-east-1b"));

    // Istio's exportTo annotation: legacy-db is seen in its own namespace and in payments only.
    let seen_in = |ns: &str| {
        snap.visible_to(ns)
            .any(|s| s.hostname.starts_with("legacy-db."))
    };
    assert!(seen_in("billing") && seen_in("payments") && !seen_in("default"));
    assert!(snap.visible_to("default").any(|s| s.hostname == REVIEWS));

    // The API server's own endpoint has no pod: no labels, no service account.
    let api = &snap
        .service("kubernetes.default.svc.cluster.local")
        .unwrap()
        .endpoints;
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].address, "172.18.0.3");
    assert_eq!(api[0].ports, BTreeMap::from([(443, 6443)]));
    assert!(api[0].labels.is_empty() && api[0].service_account.is_none());

    // Headless: balanced over its pods all the same. ExternalName: DNS, outside the mesh.
    assert_eq!(
        addresses(&snap, "mongodb.default.svc.cluster.local"),
        ["10.244.2.11"]
    );
    let db = snap.service("legacy-db.billing.svc.cluster.local").unwrap();
    assert_eq!(db.resolution, Resolution::Dns);
    assert_eq!(db.location, Location::MeshExternal);
    assert_eq!(db.endpoints[0].address, "db.billing.example.com");
    assert_eq!(db.endpoints[0].ports, BTreeMap::from([(5432, 5432)]));
    assert_eq!(
        port("legacy-db.billing.svc.cluster.local", 5432),
        Protocol::Tcp
    );

    let m = metrics(&registry);
    assert!(
        m.contains(r#"pilot_kube_events_total{kind="Pod",event="list"} 7"#),
        "{m}"
    );
}

#[tokio::test]
async fn watch_events_add_and_remove_endpoints() {
    let replay = replay(vec![]).await;
    let registry = registry(&replay).await;
    let first = wait_for(&registry, "the first full sync", |s| s.version > 0).await;
    let mut changes = registry.changes();
    changes.borrow_and_update();

    // reviews-v1 scaled up: its pod, then its slice with the new address.
    let v = vars();
    replay.release(PODS, &events("watch-pods.jsonl", &v)[0]);
    let slice_events = events("watch-endpointslices.jsonl", &v);
    replay.release(ENDPOINT_SLICES, &slice_events[0]);
    let snap = wait_for(
        &registry,
        "the new reviews-v1 endpoint with its pod's labels",
        |s| {
            s.service(REVIEWS).is_some_and(|r| {
                r.endpoints.iter().any(|e| {
                    e.address == "10.244.1.9"
                        && e.labels.get("version").map(String::as_str) == Some("v1")
                })
            })
        },
    )
    .await;
    assert!(changes.has_changed().unwrap(), "changes() woke");
    assert!(snap.version > first.version);
    assert_eq!(
        addresses(&snap, REVIEWS),
        ["10.244.1.5", "10.244.1.9", "10.244.2.7"]
    );

    // reviews-v2's pod went away: its slice is emptied.
    replay.release(ENDPOINT_SLICES, &slice_events[1]);
    let snap = wait_for(&registry, "the reviews-v2 endpoint to go", |s| {
        addresses(s, REVIEWS) == ["10.244.1.5", "10.244.1.9"]
    })
    .await;
    let v2 = Labels::from([("version".to_string(), "v2".to_string())]);
    assert_eq!(
        snap.service(REVIEWS).unwrap().endpoints_with(&v2).count(),
        0
    );
}

#[tokio::test]
async fn deleted_service_disappears_and_gone_watch_relists() {
    let v = vars();
    let replay = replay(vec![fixture("services-relist.json", &v)]).await;
    let registry = registry(&replay).await;
    wait_for(&registry, "the first full sync", |s| s.version > 0).await;
    let lines = events("watch-services.jsonl", &v);

    replay.release(SERVICES, &lines[0]);
    let snap = wait_for(&registry, "details to disappear", |s| {
        s.service("details.default.svc.cluster.local").is_none()
    })
    .await;
    assert!(snap.service(REVIEWS).is_some());
    assert_eq!(replay.lists_of(SERVICES), 1);

    // The watch expires (410 Gone): the watcher lists again and the new list is what is served; the
    // other kinds are untouched.
    replay.release(SERVICES, &lines[1]);
    let snap = wait_for(&registry, "productpage from the re-list", |s| {
        s.service("productpage.default.svc.cluster.local").is_some()
    })
    .await;
    assert_eq!(replay.lists_of(SERVICES), 2);
    assert!(snap.service("details.default.svc.cluster.local").is_none());
    assert_eq!(addresses(&snap, REVIEWS), ["10.244.1.5", "10.244.2.7"]);
    let m = metrics(&registry);
    assert!(
        m.contains(r#"pilot_kube_watch_errors_total{kind="Service"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"pilot_kube_events_total{kind="Service",event="relist"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn limits_refuse_and_count_beyond() {
    let v = vars();
    // The recorded reviews Service and its v1 slice, repeated past the limits: one Service more than
    // MAX_SERVICES, and slices of 1000 endpoints (the API's maximum) for one more thousand endpoints than
    // a service may have.
    let mut services: serde_json::Value =
        serde_json::from_str(&fixture("services.json", &v)).unwrap();
    let reviews = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == "reviews")
        .unwrap()
        .clone();
    let items: Vec<serde_json::Value> = (0..=limits::MAX_SERVICES)
        .map(|i| {
            let mut s = reviews.clone();
            s["metadata"]["name"] = format!("reviews-{i:05}").into();
            s
        })
        .collect();
    services["items"] = items.into();

    let mut slices: serde_json::Value =
        serde_json::from_str(&fixture("endpointslices.json", &v)).unwrap();
    let slice = slices["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == "reviews-8fj2k")
        .unwrap()
        .clone();
    let per_slice = 1000;
    let slice_count = limits::MAX_ENDPOINTS_PER_SERVICE / per_slice + 1;
    let items: Vec<serde_json::Value> = (0..slice_count)
        .map(|n| {
            let mut s = slice.clone();
            s["metadata"]["name"] = format!("reviews-00000-{n:02}").into();
            s["metadata"]["labels"]["kubernetes.io/service-name"] = "reviews-00000".into();
            let template = s["endpoints"][0].clone();
            s["endpoints"] = (0..per_slice)
                .map(|i| {
                    let mut e = template.clone();
                    e["addresses"] =
                        serde_json::json!([format!("10.{}.{}.{}", 100 + n, i / 250, i % 250 + 1)]);
                    e
                })
                .collect::<Vec<_>>()
                .into();
            s
        })
        .collect();
    slices["items"] = items.into();

    let replay = Replay::start(vec![
        (SERVICES, vec![services.to_string()]),
        (ENDPOINT_SLICES, vec![slices.to_string()]),
        (PODS, vec![fixture("pods.json", &v)]),
    ])
    .await;
    let registry = registry(&replay).await;
    let snap = wait_for(&registry, "the first full sync", |s| s.version > 0).await;
    assert_eq!(snap.services.len(), limits::MAX_SERVICES);
    assert!(
        snap.service("reviews-10000.default.svc.cluster.local")
            .is_none()
    );
    let first = snap
        .service("reviews-00000.default.svc.cluster.local")
        .unwrap();
    assert_eq!(first.endpoints.len(), limits::MAX_ENDPOINTS_PER_SERVICE);
    let m = metrics(&registry);
    assert!(
        m.contains(r#"pilot_kube_refused_objects_total{kind="Service"} 1"#),
        "{m}"
    );
    assert!(m.contains("pilot_kube_endpoints_left_out 1000"), "{m}");
}

#[tokio::test]
async fn bad_kubeconfig_is_named() {
    let dir = scratch();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters: [oops\n").unwrap();
    let err = pilot_kube::start(
        &KubeOptions {
            kubeconfig: Some(path.clone()),
            ..KubeOptions::default()
        },
        &Arc::default(),
    )
    .await
    .expect_err("a broken kubeconfig is refused");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("kubeconfig {}: ", path.display())),
        "{text}"
    );
}
