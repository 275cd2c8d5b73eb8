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
            "ratelimits.policy.sextant.dev",
            "telemetries.policy.sextant.dev",
            "adapters.policy.sextant.dev"
        ]
    );
    let adapter = serde_json::to_string(&crds[3]).unwrap();
    assert!(
        adapter.contains("x-kubernetes-preserve-unknown-fields"),
        "free-form adapter config is a structural schema"
    );
    let json = serde_json::to_string(&crds[0]).unwrap();
    assert!(
        json.contains("defaultAction") && json.contains("CEL boolean"),
        "schema carries fields and docs"
    );
}

#[test]
fn loads_telemetry_and_adapters_with_field_locations() {
    let set = load(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {name: http, namespace: mesh}
spec:
  selector: 'context.protocol != "tcp"'
  metrics:
  - name: istio_requests_total
    kind: COUNTER
    dimensions: {response_code: response.code}
  logs:
  - {name: access, severity: INFO, fields: {path: request.path}}
  traces: {kind: SERVER}
  adapters: [prom]
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {name: prom, namespace: mesh}
spec:
  module: builtin:prometheus
  config: {anything: [1, 2]}
  limits: {memory: 32Mi, batchSize: 50}
  allowedHosts: ["127.0.0.1:9411"]
"#,
    )
    .unwrap();
    let t = &set.telemetry[0];
    assert_eq!(t.spec.metrics[0].kind, MetricKind::Counter);
    assert_eq!(t.spec.adapters, ["prom"]);
    assert_eq!(t.spec.traces.as_ref().unwrap().kind, TraceSpanKind::Server);
    let a = &set.adapters[0];
    assert_eq!(a.spec.config["anything"][1], 2);
    assert_eq!(a.spec.limits.batch_size, Some(50));
    assert_eq!(
        parse_size(a.spec.limits.memory.as_deref().unwrap()),
        Ok(32 << 20)
    );

    let err = load(
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {name: a}\nspec:\n  module: x.wasm\n  limits: {memroy: 1Mi}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("p.yaml:6") && err.contains("memroy"), "{err}");
}

#[test]
fn sizes() {
    assert_eq!(parse_size("512Ki"), Ok(512 * 1024));
    assert_eq!(parse_size("1G"), Ok(1_000_000_000));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("1Xi").unwrap_err().contains("unknown unit"));
    assert!(parse_size("Mi").is_err());
}

#[test]
fn the_hub_ignores_istio_networking_resources() {
    // Pilot's fixture: Istio's published bookinfo samples, none of them the hub's.
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pilot/config/tests/fixtures/bookinfo");
    let set = load_path(&dir).unwrap();
    assert_eq!(
        set.policies.len() + set.rate_limits.len() + set.telemetry.len() + set.adapters.len(),
        0
    );
    assert_eq!(set.files, 23);
}
