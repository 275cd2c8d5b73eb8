//! Pilot reading Istio's resources from a real Kubernetes API server (`sextant pilot --registry kubernetes`),
//! as a cluster admin routes traffic: a canary VirtualService and its DestinationRule applied with kubectl
//! reach a real Envoy connected to pilot as weighted routes to the subsets' endpoints (the Service, its
//! EndpointSlice and Pods from the same API server); each resource's status says pilot serves it; an edit
//! whose weights do not sum to 100 is `Accepted=False` with the field-level message and left out. Istio's own
//! CRDs (istio.io/api's, with their schemas and status subresource) are installed as a mesh admin would.

mod common;

use std::time::Duration;

use common::{Envoy, ads_bootstrap, get, get_json, route_weights, scratch, wait_until};
use serde_json::Value;
use sextant_kube_harness::ControlPlane;

const WAIT: Duration = Duration::from_secs(90);

/// The reviews Service, two Pods (v1, v2) and the EndpointSlice a controller would make of them (no
/// controller-manager here: the Pods' service account is made too).
const REVIEWS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bookinfo-reviews, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: shop, labels: {app: reviews, version: v1}}
spec: {serviceAccountName: bookinfo-reviews, containers: [{name: reviews, image: reviews:1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: shop, labels: {app: reviews, version: v2}}
spec: {serviceAccountName: bookinfo-reviews, containers: [{name: reviews, image: reviews:2}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-1
  namespace: shop
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 9080, protocol: TCP}]
endpoints:
- addresses: [10.1.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1, namespace: shop}
- addresses: [10.1.0.2]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v2, namespace: shop}
"#;

const DESTINATION_RULE: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

fn virtual_service(first: u32, second: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: shop}}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - route:
    - {{destination: {{host: reviews.shop.svc.cluster.local, subset: v1}}, weight: {first}}}
    - {{destination: {{host: reviews.shop.svc.cluster.local, subset: v2}}, weight: {second}}}
"#
    )
}

/// The `Accepted` condition of `kind/name` in shop, when it is about the resource's generation.
fn accepted(plane: &ControlPlane, kind: &str) -> Option<(String, String)> {
    let text = plane
        .kubectl_with(&["get", kind, "-n", "shop", "reviews", "-o", "json"], "")
        .ok()?;
    let object: Value = serde_json::from_str(&text).ok()?;
    let condition = object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?
        .clone();
    (condition["observedGeneration"] == object["metadata"]["generation"]).then(|| {
        (
            condition["status"].as_str().unwrap_or_default().to_string(),
            condition["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })
}

#[test]
fn istio_resources_applied_with_kubectl_route_a_real_envoy_and_say_whether_pilot_serves_them() {
    let dir = scratch("kube-pilot");
    let plane = common::control_plane(&dir, false);
    common::istio_crds(&plane);
    plane.apply(REVIEWS).unwrap_or_else(|e| panic!("{e}"));
    plane
        .apply(DESTINATION_RULE)
        .unwrap_or_else(|e| panic!("{e}"));
    plane
        .apply(&virtual_service(90, 10))
        .unwrap_or_else(|e| panic!("{e}"));

    let (mut pilot, xds, monitoring) = common::start_kube_pilot(&dir, &plane);
    for kind in ["virtualservice", "destinationrule"] {
        wait_until(
            WAIT,
            "the resources' status to say pilot serves them",
            || {
                accepted(&plane, &format!("{kind}.networking.istio.io"))
                    .is_some_and(|(s, m)| s == "True" && m == "pilot serves it")
            },
        );
    }

    // A sidecar in shop gets the canary's weights, to the subsets' clusters.
    let node = "{id: 'sidecar~10.1.0.9~productpage-1.shop~shop.svc.cluster.local', cluster: productpage, \
                metadata: {NAMESPACE: shop}}";
    let envoy = Envoy::start(&dir, &ads_bootstrap(xds, "GRPC", node));
    let canary = vec![
        (
            "outbound|9080|v1|reviews.shop.svc.cluster.local".to_string(),
            90,
        ),
        (
            "outbound|9080|v2|reviews.shop.svc.cluster.local".to_string(),
            10,
        ),
    ];
    wait_until(WAIT, "Envoy to route reviews 90/10 to its subsets", || {
        route_weights(&envoy, "reviews.shop.svc.cluster.local") == canary
    });
    let clusters = get(envoy.admin, "/clusters", &[])
        .expect("Envoy's clusters")
        .body;
    assert!(
        clusters.contains("outbound|9080|v1|reviews.shop.svc.cluster.local::10.1.0.1:9080"),
        "the v1 subset's endpoint, from the EndpointSlice and the Pod's labels: {clusters}"
    );

    // Weights summing to 110: the API server takes it (no webhook here), pilot leaves it out and says why.
    plane
        .apply(&virtual_service(90, 20))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut message = String::new();
    wait_until(
        WAIT,
        "the VirtualService's status to say Accepted=False",
        || match accepted(&plane, "virtualservice.networking.istio.io") {
            Some((s, m)) if s == "False" => {
                message = m;
                true
            }
            _ => false,
        },
    );
    assert!(
        message.starts_with("VirtualService shop/reviews: spec.http[0].route")
            && message.contains("110")
            && message.ends_with("left out of pilot's configuration"),
        "{message}"
    );
    wait_until(
        WAIT,
        "Envoy to lose the weights of the resource left out",
        || route_weights(&envoy, "reviews.shop.svc.cluster.local").is_empty(),
    );
    let rejected = get_json(monitoring, "/debug/config")["rejected"].clone();
    assert!(
        rejected
            .to_string()
            .contains("kubernetes/VirtualService/shop/reviews"),
        "{rejected}"
    );
    let lease = plane
        .kubectl_with(
            &[
                "get",
                "lease",
                "-n",
                "default",
                "sextant-pilot-status",
                "-o",
                "json",
            ],
            "",
        )
        .unwrap_or_else(|e| panic!("pilot's status Lease: {e}"));
    assert!(lease.contains("holderIdentity"), "{lease}");
    assert!(pilot.alive());
}
