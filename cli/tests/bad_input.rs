//! Bad input gets a clear error naming what and where, and changes nothing that was working.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{Hub, python, repo, scratch};
use serde_json::Value;
use sextant_proto::mixer::{self, mixer_client::MixerClient};

const POLICY: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: guard}
spec:
  rules:
  - name: no-guests
    when: 'request.headers["x-user"] == "guest"'
    action: DENY
"#;

fn plain(pairs: &[(&str, mixer::attribute_value::Value)]) -> mixer::Attributes {
    mixer::Attributes {
        values: pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    mixer::AttributeValue {
                        value: Some(v.clone()),
                    },
                )
            })
            .collect(),
    }
}

fn guest() -> mixer::Attributes {
    use mixer::attribute_value::Value as V;
    plain(&[(
        "request.headers",
        V::StringMapValue(mixer::StringMap {
            entries: HashMap::from([("x-user".into(), "guest".into())]),
        }),
    )])
}

fn raw_call(hub: &Hub, hex: &str) -> Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/raw_call.py"))
        .args([
            hub.grpc.to_string().as_str(),
            "/sextant.mixer.v1.Mixer/Check",
            hex,
        ])
        .output()
        .expect("python raw call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn malformed_and_invalid_requests_are_refused_clearly_and_the_hub_keeps_serving() {
    let dir = scratch("bad");
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("write");
    let hub = Hub::start(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = rt
        .block_on(MixerClient::connect(format!("http://{}", hub.grpc)))
        .expect("connect");
    let check = |client: &mut MixerClient<tonic::transport::Channel>, req: mixer::CheckRequest| {
        rt.block_on(client.check(req))
    };
    let code_of = |r: Result<tonic::Response<mixer::CheckResponse>, tonic::Status>| match r {
        Ok(resp) => resp
            .into_inner()
            .precondition
            .and_then(|p| p.status)
            .map_or(-1, |s| s.code),
        Err(s) => panic!("unexpected error {s:?}"),
    };
    let denied = code_of(check(
        &mut client,
        mixer::CheckRequest {
            attributes: Some(guest()),
            ..Default::default()
        },
    ));
    assert_eq!(denied, 7, "baseline: a guest is denied");

    // Malformed protobuf: field 1 (attributes) as a length-delimited field longer than the message.
    let garbage = raw_call(&hub, "0aff01deadbeef");
    assert_eq!(garbage["grpc_error"], "INTERNAL", "{garbage}");
    assert!(
        garbage["details"]
            .as_str()
            .unwrap_or_default()
            .contains("failed to decode"),
        "{garbage}"
    );

    // A 10 MB request.
    use mixer::attribute_value::Value as V;
    let huge = plain(&[("request.path", V::StringValue("x".repeat(10 << 20)))]);
    let err = check(
        &mut client,
        mixer::CheckRequest {
            attributes: Some(huge),
            ..Default::default()
        },
    )
    .expect_err("10 MB refused");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("message length too large"),
        "{err:?}"
    );

    // Unknown attribute name, wrong type, both forms, a newer dictionary.
    let bad = [
        (
            plain(&[("request.hedaers", V::StringValue("x".into()))]),
            None,
            "unknown attribute `request.hedaers` (did you mean `request.headers`?)",
        ),
        (
            plain(&[("request.size", V::StringValue("10".into()))]),
            None,
            "attribute `request.size` is a int64 but a string value was sent",
        ),
        (
            plain(&[("source.ip", V::BytesValue(vec![1, 2, 3]))]),
            None,
            "`source.ip`: 3 bytes is not an IP address",
        ),
        (
            guest(),
            Some(mixer::CompressedAttributes::default()),
            "send either `attributes` or `compressed`, not both",
        ),
    ];
    for (attributes, compressed, want) in bad {
        let err = check(
            &mut client,
            mixer::CheckRequest {
                attributes: Some(attributes),
                compressed,
                ..Default::default()
            },
        )
        .expect_err(want);
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains(want),
            "{} does not contain {want}",
            err.message()
        );
    }
    let newer = mixer::CompressedAttributes {
        global_word_count: 100_000,
        ..Default::default()
    };
    let err = check(
        &mut client,
        mixer::CheckRequest {
            compressed: Some(newer),
            ..Default::default()
        },
    )
    .expect_err("dictionary mismatch");
    assert!(
        err.message()
            .contains("global dictionary of 100000 words but this hub knows"),
        "{err:?}"
    );

    // Invalid CEL and duplicate names at reload: rejected, reported with file and line, old config serves on.
    let revision = hub.revision();
    hub.write_config(
        "policy.yaml",
        &POLICY.replace("request.headers[", "request.hedaers["),
        false,
    );
    let debug = common::get(hub.admin, "/debug/config", &[])
        .expect("debug")
        .body;
    assert!(debug.contains("policy.yaml:8: Policy default/guard: spec.rules[0].when: unknown attribute `request.hedaers` (did you mean `request.headers`?)"), "{debug}");
    assert!(
        hub.metrics().contains("field=\"spec.rules[0].when\""),
        "{}",
        hub.metrics()
    );
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("restore");
    hub.write_config("copy.yaml", POLICY, false);
    let debug = common::get(hub.admin, "/debug/config", &[])
        .expect("debug")
        .body;
    assert!(
        debug.contains("Policy default/guard is defined twice (first at"),
        "{debug}"
    );
    assert_eq!(
        hub.revision(),
        revision,
        "no rejected configuration was swapped in"
    );

    // Still serving the same decisions, healthy and ready.
    assert_eq!(
        code_of(check(
            &mut client,
            mixer::CheckRequest {
                attributes: Some(guest()),
                ..Default::default()
            }
        )),
        7
    );
    assert_eq!(
        common::get(hub.admin, "/healthz", &[]).map(|r| r.status),
        Some(200)
    );
    assert_eq!(
        common::get(hub.admin, "/readyz", &[]).map(|r| r.status),
        Some(200)
    );
    assert!(
        hub.metric("sextant_hub_checks_total{front_door=\"native\",result=\"invalid\"}")
            .unwrap_or(0.0)
            >= 5.0
    );
}

#[test]
fn sigterm_stops_the_hub_cleanly() {
    let dir = scratch("term");
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("write");
    let mut hub = Hub::start(&dir);
    let status = hub.proc.terminate();
    assert!(
        status.success(),
        "hub exit status after SIGTERM: {status:?}\n{}",
        hub.proc.log()
    );
    assert!(hub.proc.log().contains("draining in-flight calls"));
}
