use serde_json::{Value, json};

use super::*;

fn options() -> Options {
    Options::new(
        "registry.example/sextant:1",
        "https://sextant-pilot.sextant-system.svc:15012",
    )
}

/// A Pod as a Deployment's ReplicaSet makes it.
fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "reviews-v1-7d4b9c-",
            "namespace": "shop",
            "labels": {"app": "reviews", "version": "v1", "pod-template-hash": "7d4b9c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "reviews-v1-7d4b9c",
                "uid": "1", "controller": true}],
        },
        "spec": {
            "serviceAccountName": "bookinfo-reviews",
            "containers": [{
                "name": "reviews",
                "image": "reviews:1",
                "ports": [{"name": "http", "containerPort": 9080}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "timeoutSeconds": 2,
                    "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 9080}},
                "startupProbe": {"exec": {"command": ["true"]}},
            }],
        },
    })
}

fn injected(pod: &Value) -> (Value, json_patch::Patch) {
    match inject(pod, &options()).expect("injects") {
        Outcome::Injected { pod, patch } => (pod, patch),
        Outcome::Skipped(why) => panic!("skipped: {why}"),
    }
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {pod}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

#[test]
fn a_pod_gets_the_init_container_the_sidecar_its_identity_and_the_patch_makes_it() {
    let original = pod();
    let (pod, patch) = injected(&original);

    let init = container(&pod, "initContainers", INIT);
    assert_eq!(init["image"], "registry.example/sextant:1");
    let init_args = args(init);
    assert_eq!(init_args[0], "proxy-init");
    assert_eq!(flag(&init_args, "-u").as_deref(), Some("1337"));
    assert_eq!(flag(&init_args, "-d").as_deref(), Some("15090,15021,15020"));
    assert_eq!(
        init["securityContext"]["capabilities"],
        json!({"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]})
    );

    let sidecar = container(&pod, "containers", SIDECAR);
    let sidecar_args = args(sidecar);
    assert_eq!(sidecar_args[0], "proxy");
    assert_eq!(
        flag(&sidecar_args, "--xds-addr").as_deref(),
        Some("https://sextant-pilot.sextant-system.svc:15012")
    );
    assert_eq!(
        flag(&sidecar_args, "--token-file").as_deref(),
        Some("/var/run/secrets/tokens/istio-token")
    );
    assert_eq!(sidecar["securityContext"]["runAsUser"], 1337);
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
        ("INSTANCE_IP", "status.podIP"),
        ("SERVICE_ACCOUNT", "spec.serviceAccountName"),
    ] {
        assert_eq!(
            env(sidecar, name)["valueFrom"]["fieldRef"]["fieldPath"],
            path
        );
    }
    assert_eq!(
        env(sidecar, "ISTIO_META_WORKLOAD_NAME")["value"],
        "reviews-v1"
    );
    let labels: Value = serde_json::from_str(
        env(sidecar, "ISTIO_METAJSON_LABELS")["value"]
            .as_str()
            .unwrap_or_default(),
    )
    .expect("labels as JSON");
    assert_eq!(labels["app"], "reviews");
    assert_eq!(labels["service.istio.io/canonical-revision"], "v1");
    assert_eq!(sidecar["resources"]["requests"]["cpu"], "100m");

    let token = pod["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "sextant-token"))
        .expect("the token volume");
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "istio-ca"
    );
    let annotations = &pod["metadata"]["annotations"];
    let status: Value =
        serde_json::from_str(annotations[STATUS].as_str().unwrap_or_default()).expect("status");
    assert_eq!(status["containers"], json!([SIDECAR]));
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "reviews"
    );
    assert_eq!(
        pod["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );

    // The patch the webhook answers with makes exactly this Pod of the original, and only adds (the
    // rewritten probes aside).
    let mut patched = original.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies");
    assert_eq!(patched, pod);
    assert_eq!(pod["spec"]["containers"][0]["image"], "reviews:1");
}

#[test]
fn injecting_twice_changes_nothing() {
    let (once, _) = injected(&pod());
    assert_eq!(
        inject(&once, &options()),
        Ok(Outcome::Skipped(Skipped::AlreadyInjected))
    );
    // A sidecar of the same name added by hand counts too.
    let mut by_hand = pod();
    by_hand["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": SIDECAR, "image": "x"}));
    assert_eq!(
        inject(&by_hand, &options()),
        Ok(Outcome::Skipped(Skipped::AlreadyInjected))
    );
}

#[test]
fn opting_out_by_label_or_annotation_and_the_host_network_leave_the_pod_alone() {
    let mut labelled = pod();
    labelled["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
    assert_eq!(
        inject(&labelled, &options()),
        Ok(Outcome::Skipped(Skipped::OptedOut("label")))
    );
    let mut annotated = pod();
    annotated["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "off"});
    assert_eq!(
        inject(&annotated, &options()),
        Ok(Outcome::Skipped(Skipped::OptedOut("annotation")))
    );
    // The label wins over the annotation.
    annotated["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
    assert!(matches!(
        inject(&annotated, &options()),
        Ok(Outcome::Injected { .. })
    ));
    let mut host = pod();
    host["spec"]["hostNetwork"] = json!(true);
    assert_eq!(
        inject(&host, &options()),
        Ok(Outcome::Skipped(Skipped::HostNetwork))
    );
    let mut unsure = pod();
    unsure["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("maybe");
    let err = inject(&unsure, &options()).expect_err("not a boolean");
    assert!(
        err.to_string()
            .starts_with("sidecar.istio.io/inject: \"maybe\": not a boolean"),
        "{err}"
    );
}

#[test]
fn probes_go_to_the_status_port_and_the_originals_to_the_sidecar() {
    let (pod, _) = injected(&pod());
    let app = container(&pod, "containers", "reviews");
    assert_eq!(
        app["readinessProbe"],
        json!({"httpGet": {"path": "/app-health/reviews/readyz", "port": 15020, "scheme": "HTTP"},
            "timeoutSeconds": 2, "periodSeconds": 5})
    );
    assert_eq!(
        app["livenessProbe"]["httpGet"]["path"],
        "/app-health/reviews/livez"
    );
    assert!(app["livenessProbe"].get("tcpSocket").is_none());
    assert_eq!(
        app["startupProbe"],
        json!({"exec": {"command": ["true"]}}),
        "exec probes run in the container: left alone"
    );
    let probers: Value = serde_json::from_str(
        env(
            container(&pod, "containers", SIDECAR),
            "ISTIO_KUBE_APP_PROBERS",
        )["value"]
            .as_str()
            .unwrap_or_default(),
    )
    .expect("probers as JSON");
    assert_eq!(
        probers,
        json!({
            "/app-health/reviews/readyz": {"httpGet": {"path": "/health", "port": 9080}, "timeoutSeconds": 2},
            "/app-health/reviews/livez": {"tcpSocket": {"port": 9080}},
        })
    );

    let mut kept = self::pod();
    kept["metadata"]["annotations"] = json!({"sidecar.istio.io/rewriteAppHTTPProbers": "false"});
    let (kept_pod, _) = injected(&kept);
    assert_eq!(
        container(&kept_pod, "containers", "reviews"),
        &kept["spec"]["containers"][0]
    );
}

#[test]
fn traffic_and_resource_annotations_shape_the_containers_and_bad_ones_are_named() {
    let mut annotated = pod();
    annotated["metadata"]["annotations"] = json!({
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32, 10.0.0.0/8",
        "traffic.sidecar.istio.io/excludeInboundPorts": "9090",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
        "sidecar.istio.io/proxyCPU": "250m",
        "sidecar.istio.io/proxyMemoryLimit": "512Mi",
    });
    let (pod, _) = injected(&annotated);
    let init = args(container(&pod, "initContainers", INIT));
    assert_eq!(
        flag(&init, "-x").as_deref(),
        Some("169.254.169.254/32,10.0.0.0/8")
    );
    assert_eq!(flag(&init, "-d").as_deref(), Some("15090,15021,15020,9090"));
    assert_eq!(flag(&init, "-o").as_deref(), Some("5432"));
    let sidecar = container(&pod, "containers", SIDECAR);
    assert_eq!(sidecar["resources"]["requests"]["cpu"], "250m");
    assert_eq!(sidecar["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(sidecar["resources"]["requests"]["memory"], "128Mi");

    for (key, value, says) in [
        (
            "traffic.sidecar.istio.io/includeOutboundIPRanges",
            "10.0.0.0/33",
            "is not a CIDR",
        ),
        (
            "traffic.sidecar.istio.io/excludeInboundPorts",
            "http",
            "is not a port",
        ),
        (
            "sidecar.istio.io/proxyMemory",
            "lots",
            "not a Kubernetes quantity",
        ),
        (
            "sidecar.istio.io/interceptionMode",
            "TPROXY",
            "REDIRECT or NONE",
        ),
    ] {
        let mut bad = self::pod();
        bad["metadata"]["annotations"] = json!({key: value});
        let err = inject(&bad, &options()).expect_err(key).to_string();
        assert!(
            err.starts_with(&format!("{key}: {value:?}: ")) && err.contains(says),
            "{err}"
        );
    }
}

#[test]
fn without_interception_there_is_no_init_container_and_native_sidecars_start_first() {
    let mut none = pod();
    none["metadata"]["annotations"] = json!({"sidecar.istio.io/interceptionMode": "NONE"});
    let (pod_none, _) = injected(&none);
    assert!(pod_none["spec"].get("initContainers").is_none());
    assert_eq!(
        env(
            container(&pod_none, "containers", SIDECAR),
            "ISTIO_META_INTERCEPTION_MODE"
        )["value"],
        "NONE"
    );

    let mut native = pod();
    native["metadata"]["annotations"] = json!({"sidecar.istio.io/nativeSidecar": "true"});
    let (pod_native, _) = injected(&native);
    let init = pod_native["spec"]["initContainers"]
        .as_array()
        .expect("init containers");
    assert_eq!(init[0]["name"], INIT);
    assert_eq!(init[1]["name"], SIDECAR);
    assert_eq!(init[1]["restartPolicy"], "Always");
    assert_eq!(
        pod_native["spec"]["containers"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn workloads_are_named_as_istio_names_them() {
    let owned = |kind: &str, name: &str, labels: Value| json!({"labels": labels, "ownerReferences": [{"kind": kind, "name": name, "controller": true}]});
    assert_eq!(
        workload_name(&owned(
            "ReplicaSet",
            "web-5f7b",
            json!({"pod-template-hash": "5f7b"})
        )),
        "web"
    );
    assert_eq!(
        workload_name(&owned("ReplicaSet", "web-5f7b", json!({}))),
        "web-5f7b"
    );
    assert_eq!(
        workload_name(&owned("Job", "backup-29012345", json!({}))),
        "backup"
    );
    assert_eq!(workload_name(&owned("StatefulSet", "db", json!({}))), "db");
    assert_eq!(workload_name(&json!({"name": "solo"})), "solo");
    assert_eq!(workload_name(&json!({"generateName": "job-x-"})), "job-x");
}

#[test]
fn workloads_lists_and_other_kinds_as_kube_inject_takes_them() {
    let template = json!({"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "web:1"}]}});
    let mut list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": template.clone()}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": template.clone()}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}},
    ]});
    let before = list.clone();
    let outcomes = inject_object(&mut list, &options()).expect("injects");
    let names: Vec<&str> = outcomes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Deployment shop/web", "CronJob default/nightly"]);
    assert!(
        list["items"][0]["spec"]["template"]["spec"]["containers"][1]["name"] == SIDECAR
            && list["items"][1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"]
                [0]["name"]
                == INIT
    );
    assert_eq!(list["items"][2], before["items"][2]);
    let deployment = &list["items"][0]["spec"]["template"]["spec"]["containers"][1];
    assert_eq!(env(deployment, "ISTIO_META_WORKLOAD_NAME")["value"], "web");

    let mut empty = json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    assert_eq!(
        inject_object(&mut empty, &options()),
        Err(InjectError::NotAPod(
            "Pod default/p: spec.containers is empty or missing".into()
        ))
    );
}

#[test]
fn quantities_are_read_as_kubernetes_reads_them() {
    for good in [
        "1", "100m", "0.5", ".5", "128Mi", "1Gi", "1G", "1e3", "1E-2", "+1", "250u", "2k",
    ] {
        assert!(settings::quantity(good), "{good}");
    }
    for bad in ["", "m", "1.2.3", "1Mb", "1 Gi", "lots", "1e", "-", "1KiB"] {
        assert!(!settings::quantity(bad), "{bad}");
    }
}
