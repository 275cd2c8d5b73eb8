//! Bad input gets a clear error naming what and where, and changes nothing that was working.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{Hub, python, repo, scratch};
use serde_json::Value;
use sextant_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use sextant_proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest as AuthzRequest,
    attribute_context::{HttpRequest, Peer, Request},
    authorization_client::AuthorizationClient,
};
use sextant_proto::envoy::service::ratelimit::v3::{
    RateLimitRequest, rate_limit_response::Code as RlsCode,
    rate_limit_service_client::RateLimitServiceClient,
};
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

/// Sends `hex` as the request message of `method` (`Check`, `Report`) with grpcio.
fn raw_call(hub: &Hub, method: &str, hex: &str) -> Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/raw_call.py"))
        .args([
            hub.grpc.to_string().as_str(),
            &format!("/sextant.mixer.v1.Mixer/{method}"),
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

    // Bytes that are not the request message: refused as INVALID_ARGUMENT naming the field, counted, and the
    // next good request is decided as before.
    let guest_denied = |client: &mut MixerClient<tonic::transport::Channel>| {
        code_of(check(
            client,
            mixer::CheckRequest {
                attributes: Some(guest()),
                ..Default::default()
            },
        )) == 7
    };
    let checks_invalid = || {
        hub.metric(r#"sextant_hub_checks_total{front_door="native",result="invalid"}"#)
            .unwrap_or(0.0)
    };
    let reports_invalid = || {
        hub.metric(r#"sextant_hub_reports_total{front_door="native",result="invalid"}"#)
            .unwrap_or(0.0)
    };
    let (checks_before, reports_before) = (checks_invalid(), reports_invalid());
    let malformed = [
        // Field 1 (attributes) length-delimited, longer than the message.
        (
            "Check",
            "0aff01deadbeef",
            "malformed CheckRequest.attributes: buffer underflow",
        ),
        // Field 1 as a varint.
        (
            "Check",
            "0801",
            "malformed CheckRequest.attributes: invalid wire type: Varint (expected LengthDelimited)",
        ),
        // attributes { values { key: "ab", value: <9 bytes announced, 1 sent> } }: truncated inside the map.
        (
            "Check",
            "0a090a070a02616212090a",
            "malformed CheckRequest.attributes.values: buffer underflow",
        ),
        (
            "Report",
            "0aff01deadbeef",
            "malformed ReportRequest.attributes: buffer underflow",
        ),
        (
            "Report",
            "0801",
            "malformed ReportRequest.attributes: invalid wire type: Varint (expected LengthDelimited)",
        ),
        // default_words: "abc" announced as 5 bytes.
        (
            "Report",
            "1205616263",
            "malformed ReportRequest.default_words: buffer underflow",
        ),
    ];
    for (method, hex, want) in malformed {
        let answer = raw_call(&hub, method, hex);
        assert_eq!(
            answer["grpc_error"], "INVALID_ARGUMENT",
            "{method} {hex}: {answer}"
        );
        assert_eq!(answer["details"], want, "{method} {hex}");
        assert!(
            guest_denied(&mut client),
            "a guest is denied after {method} {hex}"
        );
    }

    // Over the 4 MiB limit: refused without reading the body, naming the size and the limit.
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
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_too_large(err.message(), "CheckRequest", 10 << 20);
    assert!(
        guest_denied(&mut client),
        "a guest is denied after a 10 MB Check"
    );
    // A deduplication id the hub would have to remember is bounded in bytes, not only in count.
    let err = check(
        &mut client,
        mixer::CheckRequest {
            attributes: Some(guest()),
            deduplication_id: "d".repeat(100 << 10),
            ..Default::default()
        },
    )
    .expect_err("a 100 KiB deduplication id is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        err.message(),
        "deduplication_id is 102400 bytes; the hub accepts at most 256"
    );
    let retried = mixer::CheckRequest {
        attributes: Some(guest()),
        deduplication_id: "retry-1".to_string(),
        ..Default::default()
    };
    assert_eq!(code_of(check(&mut client, retried.clone())), 7);
    assert_eq!(
        code_of(check(&mut client, retried)),
        7,
        "a short id is remembered"
    );
    let huge_report = mixer::ReportRequest {
        attributes: vec![mixer::CompressedAttributes {
            words: vec!["x".repeat(5 << 20)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let err = rt
        .block_on(client.report(huge_report))
        .expect_err("5 MB refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_too_large(err.message(), "ReportRequest", 5 << 20);
    assert!(
        guest_denied(&mut client),
        "a guest is denied after a 5 MB Report"
    );
    // A good Report is still accepted: `request.path` = "/x" in message words.
    let good = mixer::ReportRequest {
        attributes: vec![mixer::CompressedAttributes {
            words: vec!["request.path".into(), "/x".into()],
            strings: HashMap::from([(-1, -2)]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let ack = rt
        .block_on(client.report(good))
        .expect("good report")
        .into_inner();
    assert_eq!((ack.accepted, ack.rejected), (1, 0), "{:?}", ack.errors);
    assert_eq!(checks_invalid() - checks_before, 5.0, "{}", hub.metrics());
    assert_eq!(reports_invalid() - reports_before, 4.0, "{}", hub.metrics());

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

    // Invalid CEL and duplicate names at reload: the resource at fault is rejected and reported with file and
    // line; the policy keeps its last good version (the hub's rule), the later duplicate is left out.
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
        debug.contains(r#""keptLastGood":["Policy default/guard"]"#),
        "{debug}"
    );
    assert!(
        hub.metrics().contains("field=\"spec.rules[0].when\""),
        "{}",
        hub.metrics()
    );
    common::write_atomically(&dir.join("policy.yaml"), POLICY);
    hub.write_config("copy.yaml", POLICY, false);
    let debug = common::get(hub.admin, "/debug/config", &[])
        .expect("debug")
        .body;
    assert!(
        debug.contains("Policy default/guard is defined twice (first at"),
        "{debug}"
    );
    assert!(debug.contains(r#""keptLastGood":[]"#), "{debug}");

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

/// Asserts `message` is the refusal of an oversized `what` of more than `at_least` bytes.
fn assert_too_large(message: &str, what: &str, at_least: usize) {
    let size = message
        .strip_prefix(&format!("{what} is "))
        .and_then(|rest| rest.strip_suffix(" bytes; the hub accepts at most 4194304"))
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        size.is_some_and(|n| n > at_least),
        "{message} does not name the size of a {what} over {at_least} bytes and the limit"
    );
}

#[test]
fn envoy_requests_without_what_the_hub_needs_are_refused_and_counted() {
    let dir = scratch("bad-envoy");
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("write");
    let hub = Hub::start(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("http://{}", hub.grpc);
    let mut authz = rt
        .block_on(AuthorizationClient::connect(url.clone()))
        .expect("connect");
    let mut rls = rt
        .block_on(RateLimitServiceClient::connect(url))
        .expect("connect");

    let peer = |ip: &str, port: u32| {
        use sextant_proto::envoy::config::core::v3::{
            Address, SocketAddress, address, socket_address::PortSpecifier,
        };
        Some(Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.into(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })
    };
    // What Envoy's HTTP filter sends, for a guest.
    let http_guest = AttributeContext {
        source: peer("10.0.0.1", 40000),
        destination: peer("10.0.0.2", 8080),
        request: Some(Request {
            http: Some(HttpRequest {
                method: "GET".into(),
                path: "/reviews".into(),
                headers: HashMap::from([("x-user".into(), "guest".into())]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let authz_code = |authz: &mut AuthorizationClient<tonic::transport::Channel>,
                      attributes: Option<AttributeContext>| {
        rt.block_on(authz.check(AuthzRequest { attributes }))
            .map(|r| r.into_inner().status.map_or(-1, |s| s.code))
    };
    let authz_invalid = || {
        hub.metric(r#"sextant_hub_checks_total{front_door="envoy_ext_authz",result="invalid"}"#)
            .unwrap_or(0.0)
    };
    let before = authz_invalid();
    let lacking = [
        (None, "CheckRequest.attributes is missing"),
        (
            Some(AttributeContext {
                request: Some(Request::default()),
                ..http_guest.clone()
            }),
            "CheckRequest.attributes.request.http is missing",
        ),
        (
            Some(AttributeContext::default()),
            "CheckRequest.attributes has no request.http and no source or destination peer",
        ),
    ];
    for (attributes, want) in lacking {
        let err = authz_code(&mut authz, attributes).expect_err(want);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(want), "{err:?} does not say {want}");
        assert_eq!(
            authz_code(&mut authz, Some(http_guest.clone())).expect("decided"),
            7,
            "a guest is denied after a request lacking {want}"
        );
    }
    assert_eq!(authz_invalid() - before, 3.0, "{}", hub.metrics());
    // A network (TCP) filter's check, peers and no request, is still decided.
    let tcp = AttributeContext {
        request: None,
        ..http_guest.clone()
    };
    // (Decided by the policies, not refused: what they decide without headers is not this test's concern.)
    let tcp = authz_code(&mut authz, Some(tcp));
    assert!(tcp.is_ok(), "a network filter's check is decided: {tcp:?}");

    let descriptor = |entries: &[(&str, &str)]| RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    };
    let good = RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![descriptor(&[("generic_key", "reviews")])],
        ..Default::default()
    };
    let rls_invalid = || {
        hub.metric(r#"sextant_hub_checks_total{front_door="envoy_rls",result="invalid"}"#)
            .unwrap_or(0.0)
    };
    let before = rls_invalid();
    let lacking = [
        (
            RateLimitRequest {
                domain: String::new(),
                ..good.clone()
            },
            "RateLimitRequest.domain is empty",
        ),
        (
            RateLimitRequest {
                descriptors: Vec::new(),
                ..good.clone()
            },
            "RateLimitRequest.descriptors is empty",
        ),
        (
            RateLimitRequest {
                descriptors: vec![descriptor(&[("generic_key", "a")]), descriptor(&[])],
                ..good.clone()
            },
            "RateLimitRequest.descriptors[1] has no entries",
        ),
        (
            RateLimitRequest {
                descriptors: vec![descriptor(&[("generic_key", "a"), ("", "b")])],
                ..good.clone()
            },
            "RateLimitRequest.descriptors[0].entries[1].key is empty",
        ),
    ];
    for (request, want) in lacking {
        let err = rt.block_on(rls.should_rate_limit(request)).expect_err(want);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(want), "{err:?} does not say {want}");
        let ok = rt
            .block_on(rls.should_rate_limit(good.clone()))
            .expect("decided")
            .into_inner();
        assert_eq!(ok.overall_code, RlsCode::Ok as i32, "after {want}");
    }
    assert_eq!(rls_invalid() - before, 4.0, "{}", hub.metrics());
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

#[test]
fn a_flood_beyond_max_in_flight_is_shed_with_resource_exhausted_and_counted() {
    let dir = scratch("overload");
    std::fs::write(dir.join("policy.yaml"), POLICY).expect("write");
    let hub = Hub::start_with(&dir, &["--max-in-flight", "1"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!("http://{}", hub.grpc);
    let channel = rt
        .block_on(
            tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .connect(),
        )
        .expect("connect");
    // One burst of calls on one connection, native and ext_authz: far more than one at a time arrive.
    let (native, authz) = rt.block_on(async {
        let native = (0..300).map(|_| {
            let mut client = MixerClient::new(channel.clone());
            async move {
                let request = mixer::CheckRequest {
                    attributes: Some(guest()),
                    ..Default::default()
                };
                client.check(request).await.map(drop)
            }
        });
        let authz = (0..300).map(|_| {
            let mut client = AuthorizationClient::new(channel.clone());
            async move { client.check(AuthzRequest::default()).await.map(drop) }
        });
        tokio::join!(
            futures::future::join_all(native),
            futures::future::join_all(authz)
        )
    });
    let shed = |results: &[Result<(), tonic::Status>]| {
        let mut shed = 0;
        for r in results {
            match r {
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    assert!(s.message().contains("--max-in-flight"), "{s:?}");
                    shed += 1;
                }
                // ext_authz's empty request is refused as invalid once admitted.
                Err(s) if s.code() == tonic::Code::InvalidArgument => {}
                Ok(()) => {}
                Err(s) => panic!("a call failed otherwise: {s:?}"),
            }
        }
        shed
    };
    let (native_shed, authz_shed) = (shed(&native), shed(&authz));
    assert!(
        native_shed > 0 && authz_shed > 0,
        "{native_shed} {authz_shed}"
    );
    assert!(native_shed < 300, "some were admitted");
    assert_eq!(
        hub.metric(r#"sextant_hub_shed_total{door="mixer_check"}"#),
        Some(native_shed as f64)
    );
    assert_eq!(
        hub.metric(r#"sextant_hub_shed_total{door="ext_authz"}"#),
        Some(authz_shed as f64)
    );
    // Every place came back: one call at a time is admitted, and decided as before.
    assert_eq!(hub.metric("sextant_hub_in_flight"), Some(0.0));
    let mut client = MixerClient::new(channel);
    let answer = rt
        .block_on(client.check(mixer::CheckRequest {
            attributes: Some(guest()),
            ..Default::default()
        }))
        .expect("admitted")
        .into_inner();
    assert_eq!(
        answer.precondition.and_then(|p| p.status).map(|s| s.code),
        Some(7)
    );
}
