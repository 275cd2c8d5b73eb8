use std::path::Path;

use super::*;

fn load(text: &str) -> Result<ConfigSet, ConfigErrors> {
    load_texts([(Path::new("p.yaml"), text)])
}

const GOOD: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: reviews-guard, namespace: default}
spec:
  selector: 'destination.service.name == "reviews"'
  defaultAction: ALLOW
  failurePolicy: FAIL_CLOSE
  rules:
  - name: no-guests
    when: 'request.headers["x-user"] == "guest"'
    action: DENY
    status: {code: PERMISSION_DENIED, httpStatus: 403, message: "guests may not read reviews"}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {name: per-user}
spec:
  selector: 'request.path.startsWith("/api")'
  dimensions: {user: 'request.headers["x-user"]'}
  limit: {requests: 5, per: 60s, burst: 0}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: not-ours}
spec: {hosts: [x]}
"#;

#[test]
fn loads_the_issue_example_and_skips_other_groups() {
    let set = load(GOOD).unwrap();
    assert_eq!(set.policies.len(), 1);
    assert_eq!(set.rate_limits.len(), 1);
    let p = &set.policies[0];
    assert_eq!(p.key(), "default/reviews-guard");
    assert_eq!(p.spec.failure_policy, FailurePolicy::FailClose);
    assert_eq!(
        p.spec.rules[0].status.as_ref().unwrap().http_status,
        Some(403)
    );
    assert_eq!(p.origin.locate("spec.rules[0].when").line, 11);
    assert_eq!(set.rate_limits[0].namespace, "default");
}

#[test]
fn unknown_field_names_file_line_and_field() {
    let err = load("apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n  - name: r\n    whn: 'true'\n    action: DENY\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("p.yaml:7: Policy default/p: spec.rules[0].whn: unknown field `whn`, expected one of `name`, `when`"), "{msg}");
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = load("apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: p\n")
        .unwrap_err();
    assert!(err.to_string().contains("YAML syntax error"), "{err}");
    assert!(err.0[0].location().unwrap().line >= 3, "{err}");
}

#[test]
fn duplicates_point_at_both_definitions() {
    let doc = "apiVersion: policy.sextant.dev/v1alpha1\nkind: RateLimit\nmetadata: {name: a}\nspec: {limit: {requests: 1, per: 1s}}\n";
    let err = load(&format!("{doc}---\n{doc}")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "p.yaml:8: RateLimit default/a is defined twice (first at p.yaml:3)"
    );
}

#[test]
fn unknown_kind_and_bad_names_are_refused() {
    let err = load("apiVersion: policy.sextant.dev/v1alpha1\nkind: Polcy\nmetadata: {name: a}\n")
        .unwrap_err();
    assert!(err.to_string().contains("unknown kind \"Polcy\""), "{err}");
    let err =
        load("apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: Bad_Name}\n")
            .unwrap_err();
    assert!(err.to_string().contains("metadata.name"), "{err}");
}

#[test]
fn crds_are_generated_from_the_types() {
    let crds = crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "policies.policy.sextant.dev",
            "ratelimits.policy.sextant.dev"
        ]
    );
    let json = serde_json::to_string(&crds[0]).unwrap();
    assert!(
        json.contains("defaultAction") && json.contains("CEL boolean"),
        "schema carries fields and docs"
    );
}
