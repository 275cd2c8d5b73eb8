//! The hub reading its resources from a real Kubernetes API server (`sextant hub --kubernetes`), as a cluster
//! admin deploys policies: the CRDs `sextant crds` prints applied with kubectl, a Policy applied with
//! kubectl decides the hub's Checks, and its status says whether the hub accepted it. A user would notice:
//! the Policy's status is `Accepted=True` for its generation; an edit with a CEL typo is `Accepted=False`
//! with the field-level message `sextant validate` gives, while the previous version keeps deciding;
//! deleting it stops it deciding. The hub runs as a user with only the permissions its ClusterRole grants
//! (what the Helm chart will give it). Two replicas: one writes status (the Lease holder); when it is gone,
//! the other takes over.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Hub, scratch, wait_until};
use sextant_kube_harness::ControlPlane;

const WAIT: Duration = Duration::from_secs(90);

/// What the hub may do in the cluster: read its kinds, write their status, hold its Lease.
const HUB_RBAC: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: sextant-hub}
rules:
- apiGroups: [policy.sextant.dev]
  resources: [policies, ratelimits, telemetries, adapters]
  verbs: [get, list, watch]
- apiGroups: [policy.sextant.dev]
  resources: [policies/status, ratelimits/status, telemetries/status, adapters/status]
  verbs: [patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: sextant-hub}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: sextant-hub}
subjects: [{kind: User, name: sextant-hub}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: sextant-hub-lease, namespace: default}
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: sextant-hub-lease, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: sextant-hub-lease}
subjects: [{kind: User, name: sextant-hub}]
"#;

/// The guests' policy, its rule's condition `when`.
fn policy(when: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: reviews-guard, namespace: shop}}
spec:
  selector: 'destination.service.name == "reviews"'
  rules:
  - name: no-guests
    when: '{when}'
    action: DENY
    status: {{code: PERMISSION_DENIED, httpStatus: 403, message: "guests may not read reviews"}}
"#
    )
}

const NO_GUESTS: &str = r#""x-user" in request.headers && request.headers["x-user"] == "guest""#;

/// `sextant check` for a request to reviews as `user`: the gRPC code of the decision.
fn decide(hub: &Hub, user: &str) -> i64 {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["check", "--hub", &hub.grpc.to_string()])
        .args(["-a", "destination.service.name=reviews"])
        .args(["-a", &format!("request.headers[x-user]={user}")])
        .output()
        .expect("run sextant check");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sextant check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["code"].as_i64().unwrap_or(-1)
}

/// The Policy as the API server has it.
fn stored(plane: &ControlPlane) -> serde_json::Value {
    let text = plane
        .kubectl_with(
            &[
                "get",
                "policies.policy.sextant.dev",
                "-n",
                "shop",
                "reviews-guard",
                "-o",
                "json",
            ],
            "",
        )
        .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

/// The Policy's `Accepted` condition, if it is about the Policy's current generation.
fn accepted(policy: &serde_json::Value) -> Option<(String, String)> {
    let generation = &policy["metadata"]["generation"];
    let status = &policy["status"];
    let c = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?;
    (status["observedGeneration"] == *generation && c["observedGeneration"] == *generation).then(
        || {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        },
    )
}

/// The value of an unlabelled metric in the hub's `/metrics`.
fn metric(hub: &Hub, name: &str) -> Option<f64> {
    common::get(hub.admin, "/metrics", &[])?
        .body
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}_total ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The hub's `sextant_hub_kube_*` and reload metrics, for a failure's message.
fn kube_metrics(hub: &Hub) -> String {
    let body = common::get(hub.admin, "/metrics", &[])
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.starts_with("sextant_hub_kube")
                || l.starts_with("sextant_config")
                || l.starts_with("sextant_task")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn policies_deployed_as_crds_decide_and_say_whether_they_were_accepted() {
    let dir = scratch("kube-hub");
    let plane = common::control_plane(&dir, false);
    // The CRDs as `sextant crds` prints them, and the hub's permissions.
    common::sextant_crds(&plane);
    plane.apply(HUB_RBAC).unwrap_or_else(|e| panic!("{e}"));
    plane
        .apply(&policy(NO_GUESTS))
        .unwrap_or_else(|e| panic!("{e}"));

    // Two replicas: each decides, one of them writes status.
    let hub_user = plane
        .user("sextant-hub", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut first = Hub::start_kubernetes(&hub_user, &["--lease-namespace", "default"]);
    let mut second = Hub::start_kubernetes(&hub_user, &["--lease-namespace", "default"]);
    for hub in [&first, &second] {
        wait_until(WAIT, "the Policy to decide the hub's Checks", || {
            decide(hub, "guest") == 7
        });
        assert_eq!(decide(hub, "jason"), 0, "others are allowed");
    }
    wait_until(WAIT, "the Policy's status to say Accepted", || {
        accepted(&stored(&plane)).is_some_and(|(s, _)| s == "True")
    });

    // A typo: the API server takes it (no webhook here), the hub refuses it and says why, and the last
    // valid version keeps deciding.
    plane
        .apply(&policy(r#""x-user" in reqest.headers"#))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut message = String::new();
    let said = common::eventually(WAIT, || match accepted(&stored(&plane)) {
        Some((s, m)) if s == "False" => {
            message = m;
            true
        }
        _ => false,
    });
    assert!(
        said,
        "the typo's status never said Accepted=False: {}\nthe first hub's metrics:\n{}\nthe second's:\n{}",
        stored(&plane)["status"],
        kube_metrics(&first),
        kube_metrics(&second)
    );
    assert!(
        message.contains("Policy shop/reviews-guard: spec.rules[0].when")
            && message.contains("reqest")
            && message.contains("last valid version keeps serving"),
        "the field-level message: {message}"
    );
    for hub in [&first, &second] {
        assert_eq!(decide(hub, "guest"), 7, "the previous version still denies");
    }
    wait_until(WAIT, "exactly one replica to hold the status lease", || {
        let leaders = [&first, &second]
            .iter()
            .filter(|h| metric(h, "sextant_hub_kube_status_leader") == Some(1.0))
            .count();
        leaders == 1
    });
    let (leader, other) = if metric(&first, "sextant_hub_kube_status_leader") == Some(1.0) {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    // The writer goes away: the other takes the lease over and writes the next change's status.
    let _ = leader.proc.stop_with("KILL");
    plane
        .apply(&policy(NO_GUESTS))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        common::eventually(WAIT, || accepted(&stored(&plane))
            .is_some_and(|(s, _)| s == "True")),
        "the remaining replica did not write the fixed Policy's status: {}\nits metrics:\n{}",
        stored(&plane)["status"],
        kube_metrics(other)
    );
    assert_eq!(metric(other, "sextant_hub_kube_status_leader"), Some(1.0));

    // Deleted: it decides nothing any more.
    plane
        .kubectl_with(
            &[
                "delete",
                "policy.policy.sextant.dev",
                "-n",
                "shop",
                "reviews-guard",
            ],
            "",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(WAIT, "the deleted Policy to stop deciding", || {
        decide(other, "guest") == 0
    });
    assert!(other.proc.alive());
}
