//! Istio's bookinfo on a real Kubernetes control plane, served by pilot to a real Envoy: bookinfo's Services,
//! service accounts and Deployments (productpage, details, reviews v1/v2/v3, ratings; the shape of Istio's
//! sample, written here) applied with kubectl; the controller-manager makes their ReplicaSets and Pods, and
//! — there is no kubelet — the test gives each Pod an IP, marks it Ready, and makes the EndpointSlices a
//! kubelet-backed cluster would list for them; then the routing Istio's samples teach (a DestinationRule
//! per service with its version subsets, every service to v1, reviews split 90/10 between v1 and v2) applied
//! with kubectl. A user would notice: productpage's Envoy ACKs everything pilot sends (no NACK), its routes
//! carry the split, each subset's cluster holds the matching Pod's address, and every resource's status says
//! pilot serves it.

mod common;

use std::time::Duration;

use common::{Envoy, ads_bootstrap, get, get_json, route_weights, scratch, wait_until};
use serde_json::Value;
use sextant_kube_harness::ControlPlane;

const WAIT: Duration = Duration::from_secs(90);
const NS: &str = "bookinfo";

/// (app, version, image tag) of each Deployment.
const WORKLOADS: [(&str, &str); 6] = [
    ("details", "v1"),
    ("ratings", "v1"),
    ("reviews", "v1"),
    ("reviews", "v2"),
    ("reviews", "v3"),
    ("productpage", "v1"),
];

/// bookinfo's Services, service accounts and Deployments.
fn bookinfo() -> String {
    let mut y = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n");
    for app in ["details", "ratings", "reviews", "productpage"] {
        y += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}, namespace: {NS}, labels: {{app: {app}, service: {app}}}}}\n\
             spec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 9080}}]\n\
             ---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: bookinfo-{app}, namespace: {NS}}}\n"
        );
    }
    for (app, version) in WORKLOADS {
        y += &format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}-{version}, namespace: {NS}}}\n\
             spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}, version: {version}}}}}\n\
             \x20 template:\n    metadata: {{labels: {{app: {app}, version: {version}}}}}\n\
             \x20   spec:\n      serviceAccountName: bookinfo-{app}\n\
             \x20     containers:\n      - name: {app}\n        image: docker.io/istio/examples-bookinfo-{app}-{version}:1.20.3\n\
             \x20       ports: [{{containerPort: 9080}}]\n"
        );
    }
    y
}

/// A DestinationRule per service with its versions' subsets, every service to v1, reviews 90/10 v1/v2.
fn routing() -> String {
    let mut y = String::new();
    for (app, versions) in [
        ("productpage", &["v1"][..]),
        ("details", &["v1"][..]),
        ("ratings", &["v1"][..]),
        ("reviews", &["v1", "v2", "v3"][..]),
    ] {
        let subsets: Vec<String> = versions
            .iter()
            .map(|v| format!("{{name: {v}, labels: {{version: {v}}}}}"))
            .collect();
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {app}, namespace: {NS}}}\n\
             spec:\n  host: {app}\n  subsets: [{}]\n",
            subsets.join(", ")
        );
        let route = if app == "reviews" {
            "[{destination: {host: reviews, subset: v1}, weight: 90}, {destination: {host: reviews, subset: v2}, weight: 10}]".to_string()
        } else {
            format!("[{{destination: {{host: {app}, subset: v1}}}}]")
        };
        y += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {app}, namespace: {NS}}}\n\
             spec:\n  hosts: [{app}]\n  http: [{{route: {route}}}]\n"
        );
    }
    y
}

fn json(plane: &ControlPlane, args: &[&str]) -> Value {
    plane
        .kubectl_with(args, "")
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[test]
fn bookinfo_applied_with_kubectl_reaches_a_real_envoy_that_acks_everything() {
    let dir = scratch("kube-bookinfo");
    let plane = common::control_plane(&dir, true);
    common::istio_crds(&plane);
    plane.apply(&bookinfo()).unwrap_or_else(|e| panic!("{e}"));

    // The Deployments' Pods, as the controller-manager makes them; each given an IP and marked Ready.
    let mut pods = Vec::new();
    wait_until(
        WAIT,
        "the controller-manager to make bookinfo's Pods",
        || {
            let list = json(&plane, &["get", "pods", "-n", NS, "-o", "json"]);
            pods = list["items"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|p| {
                            (
                                p["metadata"]["name"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                p["metadata"]["labels"]["app"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                                p["metadata"]["labels"]["version"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            pods.len() == WORKLOADS.len()
        },
    );
    let mut addresses = std::collections::BTreeMap::new();
    for (n, (pod, app, version)) in pods.iter().enumerate() {
        let ip = format!("10.2.0.{}", n + 10);
        let status = serde_json::json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        }});
        plane
            .kubectl_with(
                &[
                    "patch",
                    "pod",
                    pod,
                    "-n",
                    NS,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &status.to_string(),
                ],
                "",
            )
            .unwrap_or_else(|e| panic!("marking {pod} ready: {e}"));
        addresses.insert((app.clone(), version.clone()), ip);
    }
    // No kubelet runs the Pods, so no node holds them and the controller-manager lists no endpoint of theirs:
    // the EndpointSlices a kubelet-backed cluster would have, made here (managed by the test, so the
    // controller leaves them alone).
    for app in ["details", "ratings", "reviews", "productpage"] {
        let endpoints: Vec<Value> = pods
            .iter()
            .filter(|(_, a, _)| a == app)
            .map(|(pod, _, version)| {
                serde_json::json!({
                    "addresses": [addresses[&(app.to_string(), version.clone())]],
                    "conditions": {"ready": true},
                    "targetRef": {"kind": "Pod", "name": pod, "namespace": NS},
                })
            })
            .collect();
        let slice = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{app}-test"), "namespace": NS, "labels": {
                "kubernetes.io/service-name": app,
                "endpointslice.kubernetes.io/managed-by": "kube-bookinfo-test"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
            "endpoints": endpoints,
        });
        plane
            .apply(&slice.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    plane.apply(&routing()).unwrap_or_else(|e| panic!("{e}"));
    let (mut pilot, xds, monitoring) = common::start_kube_pilot(&dir, &plane);

    let productpage = &addresses[&("productpage".to_string(), "v1".to_string())];
    let node = format!(
        "{{id: 'sidecar~{productpage}~productpage-v1-0.{NS}~{NS}.svc.cluster.local', cluster: productpage, \
         metadata: {{NAMESPACE: {NS}, SERVICE_ACCOUNT: bookinfo-productpage, LABELS: {{app: productpage, version: v1}}}}}}"
    );
    let envoy = Envoy::start(&dir, &ads_bootstrap(xds, "GRPC", &node));
    let host = format!("reviews.{NS}.svc.cluster.local");
    wait_until(WAIT, "Envoy to route reviews 90/10", || {
        route_weights(&envoy, &host)
            == vec![
                (format!("outbound|9080|v1|{host}"), 90),
                (format!("outbound|9080|v2|{host}"), 10),
            ]
    });
    let clusters = get(envoy.admin, "/clusters", &[])
        .expect("Envoy's clusters")
        .body;
    for ((app, version), ip) in &addresses {
        if app == "productpage" {
            continue;
        }
        let member = format!("outbound|9080|{version}|{app}.{NS}.svc.cluster.local::{ip}:9080");
        assert!(
            clusters.contains(&member),
            "{member} in Envoy's clusters:\n{clusters}"
        );
    }

    // Everything pilot sent, ACKed; nothing refused.
    let mut proxy = Value::Null;
    wait_until(WAIT, "Envoy to ACK every type pilot sent", || {
        proxy = get_json(monitoring, "/debug/syncz")
            .as_array()
            .and_then(|all| all.iter().find(|p| p["cluster"] == "productpage").cloned())
            .unwrap_or_default();
        let types = proxy["types"].as_object().cloned().unwrap_or_default();
        ["cds", "eds", "lds", "rds"].iter().all(|t| {
            types.iter().any(|(name, s)| {
                name.to_lowercase().contains(t) && s["sent"] == s["acked"] && !s["sent"].is_null()
            })
        })
    });
    assert!(
        !proxy.to_string().contains("\"last_nack\":{"),
        "Envoy refused something: {proxy}"
    );
    for kind in ["virtualservices", "destinationrules"] {
        let resource = format!("{kind}.networking.istio.io");
        let items = || {
            json(&plane, &["get", &resource, "-n", NS, "-o", "json"])["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(items().len(), 4, "{kind}");
        wait_until(
            WAIT,
            "every resource's status to say pilot serves it",
            || {
                items().iter().all(|r| {
                    r["status"]["conditions"][0]["status"] == "True"
                        && r["status"]["observedGeneration"] == r["metadata"]["generation"]
                })
            },
        );
    }
    assert!(pilot.alive());
}
