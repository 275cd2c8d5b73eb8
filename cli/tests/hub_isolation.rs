//! The hub's rule for its kinds, through `sextant hub` as a process (without the default Telemetry, so no
//! Wasm adapter is needed): a Policy whose edit is invalid keeps its last good version (it keeps denying)
//! while another policy's edit takes effect; a new Policy that never validated is left out; both are
//! reported on `/debug/config`, `/readyz` and in `sextant_hub_config_reloads_total{result="partial"}`.
//! Documents of Istio kinds neither role reads are warned about and counted.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Hub, get, get_json, scratch_config, wait_until, write_atomically};

fn deny(name: &str, when: &str) -> String {
    format!(
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: {name}}}\nspec:\n  rules:\n  - name: r\n    action: DENY\n    when: '{when}'\n"
    )
}

/// The gRPC code `sextant check` gets for a request to `path`.
fn code(hub: &Hub, path: &str) -> i64 {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["check", "--hub", &hub.grpc.to_string()])
        .args(["-a", "destination.service.name=reviews"])
        .args(["-a", &format!("request.path={path}")])
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

#[test]
fn a_bad_policy_keeps_its_last_good_version_while_the_others_change() {
    let (_dir, config) = scratch_config("hub-isolation");
    write_atomically(
        &config.join("guard.yaml"),
        &deny("guard", "request.path == \"/secret\""),
    );
    write_atomically(
        &config.join("other.yaml"),
        &deny("other", "request.path == \"/a\""),
    );
    write_atomically(
        &config.join("legacy.yaml"),
        "apiVersion: config.istio.io/v1alpha2\nkind: handler\nmetadata: {name: denier}\nspec: {}\n",
    );
    let hub = Hub::start_with(&config, &["--no-default-telemetry"]);
    assert_eq!(code(&hub, "/secret"), 7);
    assert_eq!(code(&hub, "/a"), 7);
    assert_eq!(code(&hub, "/b"), 0);
    assert_eq!(
        hub.metric(
            "sextant_hub_config_unread_documents{group=\"config.istio.io\",kind=\"handler\"}"
        ),
        Some(1.0)
    );
    assert!(
        hub.proc
            .log()
            .contains("legacy.yaml:1: config.istio.io/handler is not read by Sextant: Mixer's config.istio.io kinds are not read"),
        "{}",
        hub.proc.log()
    );

    // guard's edit is invalid, other's is not: other changes, guard keeps denying /secret.
    write_atomically(
        &config.join("guard.yaml"),
        &deny("guard", "request.path =="),
    );
    write_atomically(
        &config.join("other.yaml"),
        &deny("other", "request.path == \"/b\""),
    );
    wait_until(
        Duration::from_secs(30),
        "other's edit to take effect",
        || code(&hub, "/b") == 7 && code(&hub, "/a") == 0,
    );
    assert_eq!(
        code(&hub, "/secret"),
        7,
        "the last good version keeps denying"
    );
    let debug = get_json(hub.admin, "/debug/config");
    assert_eq!(
        debug["keptLastGood"],
        serde_json::json!(["Policy default/guard"]),
        "{debug:#}"
    );
    assert!(
        debug["lastRejected"]
            .to_string()
            .contains("guard.yaml:8: Policy default/guard: spec.rules[0].when"),
        "{debug:#}"
    );
    let ready = get(hub.admin, "/readyz", &[]).expect("readyz");
    assert_eq!(ready.status, 200);
    assert!(
        ready
            .body
            .contains("1 errors: invalid resources left out or kept at their last good version"),
        "{}",
        ready.body
    );
    assert!(
        hub.metric("sextant_hub_config_reloads_total{result=\"partial\"}")
            .is_some_and(|n| n >= 1.0)
    );

    // A new policy that never validated is left out; fixing guard brings its new version in.
    write_atomically(&config.join("new.yaml"), &deny("new", "nonsense("));
    write_atomically(
        &config.join("guard.yaml"),
        &deny("guard", "request.path == \"/hidden\""),
    );
    wait_until(Duration::from_secs(30), "guard's fixed version", || {
        code(&hub, "/hidden") == 7 && code(&hub, "/secret") == 0
    });
    let debug = get_json(hub.admin, "/debug/config");
    assert_eq!(debug["keptLastGood"], serde_json::json!([]), "{debug:#}");
    let rejected = debug["lastRejected"].to_string();
    assert!(
        rejected.contains("new.yaml:8: Policy default/new"),
        "{debug:#}"
    );
    assert!(
        !debug["active"].to_string().contains("nonsense"),
        "{debug:#}"
    );
}
