//! Reusing a serving snapshot's compiled expressions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn config(when: &str, dimension: &str) -> String {
    format!(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: p, namespace: ns}}
spec:
  selector: 'destination.service.name == "a"'
  rules:
  - name: guests
    when: '{when}'
    action: DENY
  - name: admin
    when: 'request.path.startsWith("/admin")'
    action: DENY
---
apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {{name: r, namespace: ns}}
spec:
  dimensions: {{user: '{dimension}'}}
  limit: {{requests: 10, per: 1s}}
"#
    )
}

fn snapshot(text: &str, earlier: Compiled<'_>) -> Result<Snapshot, ConfigErrors> {
    let set = hub_config::load_texts([(Path::new("c.yaml"), text)])?;
    let backend = hub_quota::LocalBackend::new(100);
    Ok(validate_reusing(set, earlier)?.build(1, &backend, Duration::from_secs(1), 1))
}

fn when(s: &Snapshot, rule: usize) -> &Expr {
    s.policies[0].rules[rule].when.as_ref().unwrap()
}

#[test]
fn a_reload_compiles_only_the_expressions_that_changed() {
    let first = snapshot(
        &config(r#"request.headers["x-user"] == "guest""#, "request.path"),
        Compiled::default(),
    )
    .unwrap();
    let second = snapshot(
        &config(r#"request.headers["x-user"] == "visitor""#, "request.path"),
        Compiled::of(&first),
    )
    .unwrap();
    let shared = |a: &Expr, b: &Expr| Arc::ptr_eq(&a.program, &b.program);
    assert!(shared(when(&first, 1), when(&second, 1)), "unchanged rule");
    assert!(shared(
        first.policies[0].selector.as_ref().unwrap(),
        second.policies[0].selector.as_ref().unwrap()
    ));
    assert!(shared(
        &first.rate_limits[0].0.dimensions[0].1,
        &second.rate_limits[0].0.dimensions[0].1
    ));
    assert!(!shared(when(&first, 0), when(&second, 0)), "changed rule");
    assert_eq!(
        when(&second, 0).source,
        r#"request.headers["x-user"] == "visitor""#
    );
}

/// The same text compiled for a place that wants a boolean is checked again: a string dimension of the
/// serving snapshot is still refused as a rule's condition.
#[test]
fn an_expression_reused_where_a_boolean_is_wanted_is_still_type_checked() {
    let first = snapshot(
        &config("request.method == \"GET\"", "request.path"),
        Compiled::default(),
    )
    .unwrap();
    let refused = snapshot(
        &config("request.path", "request.path"),
        Compiled::of(&first),
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("must be a bool"), "{refused}");
}

#[test]
fn an_expression_written_twice_is_compiled_once() {
    let same = r#"request.headers["x-user"] == "guest""#;
    let s = snapshot(&config(same, "request.path"), Compiled::default()).unwrap();
    let text = config(same, "request.path").replace(r#"request.path.startsWith("/admin")"#, same);
    let twice = snapshot(&text, Compiled::default()).unwrap();
    assert!(Arc::ptr_eq(
        &when(&twice, 0).program,
        &when(&twice, 1).program
    ));
    assert!(!Arc::ptr_eq(&when(&s, 0).program, &when(&s, 1).program));
}
