//! Pilot's sidecar injector behind a real Kubernetes API server, configured by the Helm chart's own
//! MutatingWebhookConfiguration (its selectors as shipped; only the address is the test's): a Deployment
//! created in a namespace labelled `istio-injection=enabled` gets, through the controller-manager's
//! ReplicaSet, Pods the API server stores with the `sextant-init` init container, the `sextant-proxy`
//! container with its identity (downward API, the projected token for pilot's audience), the probes
//! rewritten, and Istio's status annotation. A Pod labelled `sidecar.istio.io/inject: "false"` and a Pod in
//! an unlabelled namespace are stored as created; `sextant.dev/inject=enabled` also injects; a Pod whose
//! annotation cannot work is refused with a message naming it. Pilot publishes its root in every namespace
//! (the ConfigMap the sidecars mount), and puts it back when deleted. `sextant kube inject` writes what the
//! API server accepts (server-side dry run).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{peers, repo, scratch, wait_until};
use serde_json::{Value, json};
use sextant_kube_harness::ControlPlane;

const WAIT: Duration = Duration::from_secs(90);
const IMAGE: &str = "registry.example/sextant:test";

/// The chart's MutatingWebhookConfiguration, pointed at pilot on `port` of this host.
fn injection_configuration(bundle: &str, port: u16) -> String {
    let chart = repo().join("deploy/helm/sextant");
    let home = scratch("kube-inject-helm");
    let out = Command::new(peers().join("helm/helm"))
        .args(["template", "sextant"])
        .arg(&chart)
        .args(["--namespace", "sextant-system"])
        .args(["--show-only", "templates/webhooks.yaml"])
        .arg(format!("--set=webhooks.caBundle={bundle}"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm (built by .ci/peers)");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let documents: Vec<Value> =
        serde_saphyr::from_str_multiple(&String::from_utf8_lossy(&out.stdout))
            .expect("the chart's webhooks as YAML");
    let mut mutating = documents
        .into_iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("the chart has a MutatingWebhookConfiguration");
    for webhook in mutating["webhooks"].as_array_mut().expect("webhooks") {
        assert_eq!(webhook["clientConfig"]["service"]["path"], "/inject");
        webhook["clientConfig"] =
            json!({"url": format!("https://localhost:{port}/inject"), "caBundle": bundle});
    }
    mutating.to_string()
}

/// A Pod named `name` in `namespace` with `labels` and `annotations`.
fn pod(namespace: &str, name: &str, labels: Value, annotations: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}})
    .to_string()
}

/// Creates a Pod: the stored object, or what the API server said.
fn create(plane: &ControlPlane, pod: &str) -> Result<Value, String> {
    plane
        .kubectl_with(&["create", "-o", "json", "-f", "-"], pod)
        .map(|text| serde_json::from_str(&text).unwrap_or_default())
        .map_err(|e| e.to_string())
}

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod["spec"][list]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}}
"#;

#[test]
fn pods_created_in_injected_namespaces_are_stored_with_their_sidecar() {
    let dir = scratch("kube-inject");
    let plane = common::control_plane(&dir, true);

    // Pilot with its CA, the webhook and the injector.
    let kubeconfig = plane
        .kubeconfig()
        .to_str()
        .expect("a UTF-8 path")
        .to_string();
    let (mut pilot, port, root) = common::start_webhook_pilot(
        &dir,
        &[
            "--inject-image",
            IMAGE,
            "--registry",
            "kubernetes",
            "--kubeconfig",
            &kubeconfig,
        ],
    );
    assert!(
        pilot.log().contains(&format!(
            "sidecar injector on https://127.0.0.1:{port}/inject"
        )),
        "{}",
        pilot.log()
    );
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &root);
    plane
        .apply(&injection_configuration(&bundle, port))
        .unwrap_or_else(|e| panic!("{e}"));

    plane
        .apply(
            r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}},
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "billing", "labels": {"sextant.dev/inject": "enabled"}}},
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    for ns in ["shop", "billing", "plain"] {
        wait_until(WAIT, "the namespaces' default service accounts", || {
            plane
                .kubectl_with(&["get", "serviceaccount", "default", "-n", ns], "")
                .is_ok()
        });
    }

    // The mesh root the sidecars mount, in every namespace (the control plane's own aside), and put back
    // when deleted.
    let root_pem = String::from_utf8_lossy(&root).to_string();
    let published = |ns: &str| {
        plane
            .kubectl_with(
                &[
                    "get",
                    "configmap",
                    "istio-ca-root-cert",
                    "-n",
                    ns,
                    "-o",
                    "json",
                ],
                "",
            )
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|c| c["data"]["root-cert.pem"].as_str().map(str::to_string))
    };
    for ns in ["shop", "plain", "default"] {
        wait_until(WAIT, "pilot to publish its root in each namespace", || {
            published(ns).as_deref() == Some(root_pem.as_str())
        });
    }
    plane
        .kubectl_with(
            &["delete", "configmap", "istio-ca-root-cert", "-n", "shop"],
            "",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(WAIT, "the deleted root to be published again", || {
        published("shop").as_deref() == Some(root_pem.as_str())
    });
    assert_eq!(published("kube-system"), None);

    // The API server picks the configuration up shortly: until a Pod comes back injected, each try is a
    // new Pod.
    let mut n = 0;
    wait_until(WAIT, "the API server to call the injector", || {
        n += 1;
        create(
            &plane,
            &pod("shop", &format!("first-{n}"), json!({}), json!({})),
        )
        .is_ok_and(|p| names(&p, "containers").contains(&"sextant-proxy".to_string()))
    });

    // A Deployment's Pod, made by the controller-manager's ReplicaSet.
    plane.apply(DEPLOYMENT).unwrap_or_else(|e| panic!("{e}"));
    let mut stored = Value::Null;
    wait_until(WAIT, "the Deployment's Pod", || {
        let pods = plane
            .kubectl_with(
                &["get", "pods", "-n", "shop", "-l", "app=web", "-o", "json"],
                "",
            )
            .unwrap_or_default();
        let pods: Value = serde_json::from_str(&pods).unwrap_or_default();
        stored = pods["items"][0].clone();
        !stored.is_null()
    });
    assert_eq!(names(&stored, "containers"), ["web", "sextant-proxy"]);
    assert_eq!(names(&stored, "initContainers"), ["sextant-init"]);
    let sidecar = &stored["spec"]["containers"][1];
    assert_eq!(sidecar["image"], IMAGE);
    assert_eq!(sidecar["securityContext"]["runAsUser"], 1337);
    let env = |name: &str| {
        sidecar["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {sidecar}"))
    };
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("INSTANCE_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        assert_eq!(env(name)["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    assert_eq!(env("ISTIO_META_WORKLOAD_NAME")["value"], "web");
    let token = stored["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "sextant-token"))
        .unwrap_or_else(|| panic!("the token volume in {}", stored["spec"]["volumes"]));
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "istio-ca"
    );
    let init = &stored["spec"]["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(
        stored["spec"]["containers"][0]["readinessProbe"]["httpGet"],
        json!({"path": "/app-health/web/readyz", "port": 15020, "scheme": "HTTP"})
    );
    assert!(
        stored["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .is_some_and(|s| s.contains("sextant-proxy")),
        "{}",
        stored["metadata"]
    );

    // Left alone: opted out, or in a namespace nobody labelled; the other label injects.
    let opted_out = create(
        &plane,
        &pod(
            "shop",
            "batch",
            json!({"sidecar.istio.io/inject": "false"}),
            json!({}),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&opted_out, "containers"), ["app"]);
    let plain = create(&plane, &pod("plain", "solo", json!({}), json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&plain, "containers"), ["app"]);
    let billing = create(&plane, &pod("billing", "invoice", json!({}), json!({})))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&billing, "containers"), ["app", "sextant-proxy"]);

    // An annotation that cannot work: refused, and kubectl says which.
    let refused = create(
        &plane,
        &pod(
            "shop",
            "greedy",
            json!({}),
            json!({"sidecar.istio.io/proxyCPU": "fast"}),
        ),
    )
    .expect_err("an invalid quantity is refused");
    assert!(
        refused.contains("sextant sidecar injector: sidecar.istio.io/proxyCPU: \"fast\""),
        "{refused}"
    );

    // Offline, the same sidecar in a file the API server takes as it is.
    let file = dir.join("web.yaml");
    std::fs::write(
        &file,
        DEPLOYMENT.replace("namespace: shop", "namespace: plain"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["kube", "inject", "-f"])
        .arg(&file)
        .args(["--image", IMAGE])
        .output()
        .expect("sextant kube inject");
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Deployment plain/web: injected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry_run = plane
        .kubectl_with(
            &["apply", "--dry-run=server", "-o", "json", "-f", "-"],
            &String::from_utf8_lossy(&out.stdout),
        )
        .unwrap_or_else(|e| panic!("the API server takes kube inject's output: {e}"));
    let dry_run: Value = serde_json::from_str(&dry_run).unwrap_or_default();
    assert_eq!(
        names(&dry_run["spec"]["template"], "containers"),
        ["web", "sextant-proxy"]
    );
    assert!(pilot.alive());
}
