//! Pilot's validating admission webhook behind a real Kubernetes API server, as a cluster admin meets it:
//! `kubectl apply` of a Policy with a CEL typo is refused with the field-level message `sextant validate`
//! gives; a valid Policy, and a Telemetry naming an Adapter not created yet, are stored; Istio's kinds are
//! judged as pilot judges files (a VirtualService whose weights do not sum to 100 is refused, one routing to
//! a subset defined elsewhere is stored); with pilot gone, the explicit failure policy (`Fail`) refuses.
//! Istio's own CRDs (istio.io/api's) are installed as a mesh admin would.

mod common;

use std::time::Duration;

use common::{scratch, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// The webhook configuration for pilot at `port`, trusting `ca_bundle` (base64 PEM).
fn webhook_configuration(port: u16, ca_bundle: &str) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: sextant-validation}}
webhooks:
- name: validation.sextant.dev
  clientConfig: {{url: "https://localhost:{port}/validate", caBundle: "{ca_bundle}"}}
  rules:
  - {{apiGroups: [policy.sextant.dev], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: ["*"]}}
  - {{apiGroups: [networking.istio.io, security.istio.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: ["*"]}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
"#
    )
}

/// A Policy named `name` whose rule's condition is `when`.
fn policy(name: &str, when: &str) -> String {
    format!(
        r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: {name}, namespace: default}}
spec:
  rules:
  - name: no-guests
    when: '{when}'
    action: DENY
"#
    )
}

/// A VirtualService named `name` sending `first`% to v1 and `second`% to v2 of reviews.
fn virtual_service(name: &str, first: u32, second: u32) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {first}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {second}}}
"#
    )
}

const TYPO: &str = r#""x-user" in reqest.headers"#;

#[test]
fn the_webhook_refuses_what_sextant_validate_refuses_with_its_message() {
    let dir = scratch("kube-webhook");
    let plane = common::control_plane(&dir, false);
    common::sextant_crds(&plane);
    common::istio_crds(&plane);

    // Pilot with its CA and the webhook, its certificate for the name the API server calls it by.
    let (mut pilot, port, root) = common::start_webhook_pilot(&dir, &[]);
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, root);
    plane
        .apply(&webhook_configuration(port, &bundle))
        .unwrap_or_else(|e| panic!("{e}"));

    // The API server picks the configuration up shortly: until it does, a typo would be stored, so each
    // try is a new resource (and one that got in is deleted).
    let mut n = 0;
    let mut refusal = String::new();
    wait_until(WAIT, "the webhook to refuse a Policy with a typo", || {
        n += 1;
        let name = format!("typo-{n}");
        match plane.apply(&policy(&name, TYPO)) {
            Err(e) => {
                refusal = e.to_string();
                true
            }
            Ok(_) => {
                let _ = plane.kubectl_with(&["delete", "policy.policy.sextant.dev", &name], "");
                false
            }
        }
    });
    assert!(
        refusal.contains("admission webhook \"validation.sextant.dev\" denied the request")
            && refusal.contains("Policy default/typo-")
            && refusal.contains("spec.rules[0].when")
            && refusal.contains("reqest"),
        "kubectl shows the field-level message: {refusal}"
    );

    let ok = r#""x-user" in request.headers && request.headers["x-user"] == "guest""#;
    plane
        .apply(&policy("no-guests", ok))
        .unwrap_or_else(|e| panic!("a valid Policy is stored: {e}"));
    plane
        .apply(
            r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {name: requests, namespace: default}
spec:
  adapters: [not-created-yet]
  metrics:
  - {name: requests_total, kind: COUNTER}
"#,
        )
        .unwrap_or_else(|e| panic!("a Telemetry naming an Adapter to come is stored: {e}"));

    let refused = plane
        .apply(&virtual_service("reviews-canary", 90, 20))
        .expect_err("weights summing to 110 are refused");
    assert!(
        refused.to_string().contains("route weights sum to 110"),
        "pilot's message: {refused}"
    );
    plane
        .apply(&virtual_service("reviews-canary", 90, 10))
        .unwrap_or_else(|e| {
            panic!("a valid VirtualService (its subsets defined elsewhere) is stored: {e}")
        });

    // Pilot gone: the failure policy is Fail, so nothing unjudged gets in.
    let _ = pilot.stop_with("TERM");
    let refused = plane
        .apply(&policy("while-pilot-is-down", ok))
        .expect_err("refused while the webhook cannot be reached");
    assert!(
        refused.to_string().contains("failed calling webhook"),
        "the API server says why: {refused}"
    );
}
