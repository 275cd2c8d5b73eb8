//! Every CEL macro, operator family and function of docs/policies.md, on maps and lists, decided by a real hub
//! over gRPC; and what `onError` makes of an expression that cannot be evaluated.
//!
//! Each row is a Policy of its own (selected by `destination.service.name == "row-N"`) with one DENY rule whose
//! condition is the row's expression: a Check for that service is denied with the message `row-N holds` when
//! the expression is true, allowed when it is false, and denied naming the rule and the error when it cannot
//! be evaluated (a DENY rule's `onError` is DENY by default).

mod common;

use common::{Hub, scratch};
use sextant_proto::mixer::{self, attribute_value::Value as V, mixer_client::MixerClient};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    True,
    False,
    Fails,
}
use Want::{Fails, False, True};

fn headers(kv: &[(&str, &str)]) -> V {
    V::StringMapValue(mixer::StringMap {
        entries: kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn s(v: &str) -> V {
    V::StringValue(v.into())
}

/// The request every row is checked with (plus its own `destination.service.name`).
fn request() -> Vec<(&'static str, V)> {
    vec![
        (
            "request.headers",
            headers(&[
                ("x-user", "ann@staff"),
                ("x-zz-a", "1"),
                ("x-zz-b", "2"),
                ("accept", "text/html"),
            ]),
        ),
        ("request.path", s("/api/v1/reviews/7")),
        ("request.method", s("GET")),
        ("request.size", V::Int64Value(1500)),
        ("source.ip", V::BytesValue(vec![10, 1, 2, 3])),
        ("destination.ip", V::BytesValue(vec![127, 0, 0, 1])),
        (
            "request.time",
            // 2026-12-04T13:30:15.250Z, a Friday.
            V::TimestampValue(sextant_proto::google::protobuf::Timestamp {
                seconds: 1_796_391_015,
                nanos: 250_000_000,
            }),
        ),
        (
            "response.duration",
            V::DurationValue(sextant_proto::google::protobuf::Duration {
                seconds: 90,
                nanos: 500_000_000,
            }),
        ),
        ("connection.mtls", V::BoolValue(true)),
    ]
}

/// (expression, expected) rows.
const ROWS: &[(&str, Want)] = &[
    // Macros on a map attribute: its keys.
    (r#"request.headers.exists(k, k.startsWith("x-zz"))"#, True),
    (
        r#"request.headers.exists(k, k.startsWith("x-nope"))"#,
        False,
    ),
    (r#"request.headers.all(k, k.size() > 3)"#, True),
    (r#"request.headers.all(k, k.startsWith("x-"))"#, False),
    (r#"request.headers.exists_one(k, k == "accept")"#, True),
    (
        r#"request.headers.exists_one(k, k.startsWith("x-zz"))"#,
        False,
    ),
    (
        r#"request.headers.map(k, request.headers[k]) == ["text/html", "ann@staff", "1", "2"]"#,
        True,
    ),
    (
        r#"request.headers.map(k, k.startsWith("x-zz"), request.headers[k]) == ["1", "2"]"#,
        True,
    ),
    (
        r#"request.headers.filter(k, k.startsWith("x-zz")) == ["x-zz-a", "x-zz-b"]"#,
        True,
    ),
    (
        r#"size(request.headers.filter(k, request.headers[k] == "1")) == 1"#,
        True,
    ),
    (r#"has(request.headers.accept)"#, True),
    (r#"has(request.headers.cookie)"#, False),
    (r#"has(request.auth.principal)"#, False),
    (r#"has(request.path)"#, True),
    // A map attribute the request lacks is an empty map.
    (
        r#"response.headers.all(k, false) && size(response.headers) == 0"#,
        True,
    ),
    (r#"response.headers.exists(k, true)"#, False),
    // Macros on lists.
    (r#"["a", "b"].exists(x, x == "b")"#, True),
    (r#"[1, 2, 3].all(x, x > 0)"#, True),
    (r#"[1, 2, 3].exists_one(x, x > 1)"#, False),
    (r#"[1, 2, 3].map(x, x * 2) == [2, 4, 6]"#, True),
    (r#"[1, 2, 3].map(x, x > 1, x) == [2, 3]"#, True),
    (r#"[1, 2, 3].filter(x, x % 2 == 1) == [1, 3]"#, True),
    (r#"request.path.split("/").exists(p, p == "reviews")"#, True),
    // in, index, size.
    (r#""accept" in request.headers"#, True),
    (r#""cookie" in request.headers"#, False),
    (r#"request.method in ["GET", "HEAD"]"#, True),
    (r#"request.headers["x-user"] == "ann@staff""#, True),
    (r#"request.headers.accept == "text/html""#, True),
    (r#"request.headers["cookie"] == "x""#, Fails),
    (
        r#"request.headers[?"cookie"].orValue("none") == "none""#,
        True,
    ),
    (
        r#"request.headers[?"accept"].hasValue() && request.headers[?"accept"].value() == "text/html""#,
        True,
    ),
    (r#"request.headers.?cookie.hasValue()"#, False),
    (r#"[1, 2][5] == 1"#, Fails),
    (
        r#"size(request.headers) == 4 && request.headers.size() == 4"#,
        True,
    ),
    (
        r#"size(request.path) == 17 && size(b"abc") == 3 && [1].size() == 1"#,
        True,
    ),
    (r#"{"a": 1}["a"] == 1 && "a" in {"a": 1}"#, True),
    // Operators.
    (
        r#"request.size + 1 == 1501 && request.size - 500 == 1000 && request.size * 2 == 3000"#,
        True,
    ),
    (
        r#"request.size / 100 == 15 && request.size % 7 == 2 && -request.size < 0"#,
        True,
    ),
    (r#"request.size / 0 == 1"#, Fails),
    (r#"request.size > 1000u"#, True),
    (r#"request.size == 1500.0"#, True),
    (r#"2.5 * 2.0 == 5.0"#, True),
    (r#"request.method == "GET" ? true : false"#, True),
    (r#"request.path < "/b" && "b" >= "a""#, True),
    (r#"request.headers["cookie"] == "x" || true"#, True),
    (r#"request.headers["cookie"] == "x" && false"#, False),
    (
        r#""a" + "b" == "ab" && [1] + [2] == [1, 2] && b"a" + b"b" == b"ab""#,
        True,
    ),
    // Conversions.
    (
        r#"int(request.headers["x-zz-b"]) == 2 && int("-3") == -3 && int(2.9) == 2 && int(3u) == 3"#,
        True,
    ),
    (r#"int(request.headers["x-user"]) == 1"#, Fails),
    (
        r#"uint(request.size) == 1500u && uint("7") == 7u && uint(7.5) == 7u && uint(7u) == 7u"#,
        True,
    ),
    (
        r#"double(request.size) == 1500.0 && double("1.5") == 1.5 && double(2u) == 2.0 && double(1.0) == 1.0"#,
        True,
    ),
    (
        r#"string(request.size) == "1500" && string(true) == "true" && string(2u) == "2" && string(1.5) == "1.5" && string(b"hi") == "hi" && string("s") == "s""#,
        True,
    ),
    (
        r#"string(request.time) == "2026-12-04T13:30:15.25Z" && string(response.duration) == "90.5s""#,
        True,
    ),
    (r#"bool("true") && bool(true)"#, True),
    (r#"int(request.time) == 1796391015"#, True),
    // Strings.
    (
        r#"request.path.startsWith("/api") && request.path.endsWith("/7") && request.path.contains("reviews")"#,
        True,
    ),
    (
        r#"request.path.matches("^/api/v[0-9]+/") && matches(request.method, "^G")"#,
        True,
    ),
    (r#"request.path.matches("reviews")"#, True),
    (r#"request.path.matches("(")"#, Fails),
    (
        r#"request.method.lowerAscii() == "get" && "a".upperAscii() == "A" && "  x ".trim() == "x""#,
        True,
    ),
    (
        r#"request.path.replace("/", "_") == "_api_v1_reviews_7" && "aaa".replace("a", "b", 2) == "bba""#,
        True,
    ),
    (
        r#"request.path.split("/") == ["", "api", "v1", "reviews", "7"] && "a,b,c".split(",", 2) == ["a", "b,c"]"#,
        True,
    ),
    (
        r#"request.path.substring(1, 4) == "api" && "hello".substring(3) == "lo""#,
        True,
    ),
    (r#""abc".substring(5) == """#, Fails),
    (
        r#"request.path.indexOf("/v1") == 4 && "a/b/a".lastIndexOf("a") == 4 && "aXa".indexOf("a", 1) == 2 && "aXa".lastIndexOf("a", 1) == 0"#,
        True,
    ),
    (r#""abc".charAt(1) == "b" && "abc".charAt(3) == """#, True),
    (
        r#"["a", "b"].join() == "ab" && ["a", "b"].join("-") == "a-b""#,
        True,
    ),
    // Timestamps and durations.
    (
        r#"request.time > timestamp("2026-01-01T00:00:00Z") && timestamp(request.time) == request.time"#,
        True,
    ),
    (r#"timestamp(0) == timestamp("1970-01-01T00:00:00Z")"#, True),
    (
        r#"request.time.getFullYear() == 2026 && request.time.getMonth() == 11 && request.time.getDate() == 4 && request.time.getDayOfMonth() == 3"#,
        True,
    ),
    (
        r#"request.time.getDayOfWeek() == 5 && request.time.getDayOfYear() == 337"#,
        True,
    ),
    (
        r#"request.time.getHours() == 13 && request.time.getMinutes() == 30 && request.time.getSeconds() == 15 && request.time.getMilliseconds() == 250"#,
        True,
    ),
    (
        r#"request.time.getHours("Asia/Kolkata") == 19 && request.time.getMinutes("Asia/Kolkata") == 0 && request.time.getFullYear("UTC") == 2026"#,
        True,
    ),
    (
        r#"request.time.getMonth("UTC") == 11 && request.time.getDate("UTC") == 4 && request.time.getDayOfMonth("UTC") == 3 && request.time.getDayOfWeek("UTC") == 5 && request.time.getDayOfYear("UTC") == 337 && request.time.getSeconds("UTC") == 15 && request.time.getMilliseconds("UTC") == 250"#,
        True,
    ),
    (r#"request.time.getHours("Mars/Olympus") == 1"#, Fails),
    (
        r#"response.duration > duration("1m") && duration(response.duration) == response.duration"#,
        True,
    ),
    (
        r#"response.duration.getHours() == 0 && response.duration.getMinutes() == 1 && response.duration.getSeconds() == 90 && response.duration.getMilliseconds() == 90500"#,
        True,
    ),
    (
        r#"request.time + duration("1h") > request.time && request.time - duration("1h") < request.time"#,
        True,
    ),
    (
        r#"request.time - timestamp("2026-12-04T13:00:00Z") == duration("30m15.25s")"#,
        True,
    ),
    (
        r#"duration("1h") + duration("1m") == duration("61m") && duration("0s") - duration("1s") < duration("0s")"#,
        True,
    ),
    (r#"duration("soon") > duration("1s")"#, Fails),
    // IP addresses and prefixes.
    (
        r#"cidr("10.0.0.0/8").containsIP(source.ip) && !cidr("10.0.0.0/8").containsIP(destination.ip)"#,
        True,
    ),
    (
        r#"cidr("10.0.0.0/8").containsIP(ip(source.ip)) && cidr("10.0.0.0/8").containsCIDR("10.1.0.0/16") && !cidr("10.0.0.0/8").containsCIDR(cidr("11.0.0.0/16"))"#,
        True,
    ),
    (
        r#"ip(destination.ip).isLoopback() && !ip(source.ip).isLoopback() && ip(source.ip).family() == 4 && ip("::1").family() == 6"#,
        True,
    ),
    (
        r#"ip("0.0.0.0").isUnspecified() && ip("169.254.1.1").isLinkLocalUnicast() && ip(source.ip).isGlobalUnicast() && !ip("224.0.0.1").isGlobalUnicast()"#,
        True,
    ),
    (
        r#"isIP(source.ip) && !isIP("10.0.0") && isCIDR("fd00::/8") && !isCIDR("10.0.0.0/33")"#,
        True,
    ),
    (
        r#"cidr("10.1.2.3/8").masked() == cidr("10.0.0.0/8") && cidr("10.1.2.3/8").ip() == ip("10.1.2.3") && cidr("10.0.0.0/8").prefixLength() == 8"#,
        True,
    ),
    (
        r#"string(ip(source.ip)) == "10.1.2.3" && string(cidr("fd00::/8")) == "fd00::/8""#,
        True,
    ),
    (r#"cidr("10.0.0.0/8").containsIP("not an ip")"#, Fails),
    (r#"ip("10.0.0.300").family() == 4"#, Fails),
];

/// Expressions the hub must refuse at load time, with a part of the reason.
const REFUSED: &[(&str, &str)] = &[
    (
        r#"request.headers == {"a": "b"}"#,
        "`request.headers` is a map",
    ),
    (
        r#"request.headers.all(k, v, true)"#,
        "two-variable comprehensions are not supported",
    ),
    (
        r#"request.path.frobnicate()"#,
        "unknown function `frobnicate`",
    ),
    (
        r#"request.size.startsWith("1")"#,
        "`startsWith` cannot be called as int.startsWith(string)",
    ),
    (
        r#"request.size + 1.5 > 0.0"#,
        "`+` is not defined for a int and a double",
    ),
    (
        r#"optional.none() == request.headers[?"a"]"#,
        "unsupported function `optional.none`",
    ),
    (
        r#"ip(source.ip) == "10.0.0.1""#,
        "compares a ip with a string",
    ),
    (
        r#"-response.duration < duration("0s")"#,
        "a duration cannot be negated",
    ),
    (
        r#"request.headers["a"].size() > request.auth"#,
        "`request.auth` is not an attribute",
    ),
];

fn policy(i: usize, expr: &str) -> String {
    format!(
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: row-{i}}}\nspec:\n  selector: 'destination.service.name == \"row-{i}\"'\n  rules:\n  - name: r\n    when: {}\n    action: DENY\n    status: {{code: PERMISSION_DENIED, message: \"row-{i} holds\"}}\n",
        serde_json::to_string(expr).expect("json")
    )
}

/// Every function the hub knows is exercised by some row, and every macro on a map attribute and a list.
#[test]
fn the_rows_cover_every_function_and_macro() {
    for f in hub_policy::FUNCTIONS {
        let used = ROWS
            .iter()
            .any(|(e, _)| e.contains(&format!("{}(", f.name)));
        assert!(used, "no row calls `{}`", f.name);
    }
    for m in ["all", "exists", "exists_one", "map", "filter"] {
        for on in ["request.headers.", "]."] {
            assert!(
                ROWS.iter().any(|(e, _)| e.contains(&format!("{on}{m}("))),
                "no row uses `{m}` after `{on}`"
            );
        }
    }
}

/// docs/policies.md documents every function.
#[test]
fn the_docs_list_every_function() {
    let docs = std::fs::read_to_string(common::repo().join("docs/policies.md")).expect("docs");
    for f in hub_policy::FUNCTIONS {
        assert!(
            docs.contains(&format!("`{}`", f.name)),
            "docs/policies.md does not document `{}`",
            f.name
        );
    }
}

#[test]
fn every_macro_and_function_evaluates_through_a_real_hub() {
    let dir = scratch("cel");
    let config: Vec<String> = ROWS
        .iter()
        .enumerate()
        .map(|(i, (e, _))| policy(i, e))
        .collect();
    std::fs::write(dir.join("rows.yaml"), config.join("---\n")).expect("write");
    let hub = Hub::start(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = rt
        .block_on(MixerClient::connect(format!("http://{}", hub.grpc)))
        .expect("connect");
    let mut wrong = Vec::new();
    for (i, (expr, want)) in ROWS.iter().enumerate() {
        let mut attrs = request();
        let service = format!("row-{i}");
        attrs.push(("destination.service.name", s(&service)));
        let status = check_status(&rt, &mut client, attrs);
        let got = match (status.code, status.message.as_str()) {
            (0, _) => False,
            (7, m) if m == format!("row-{i} holds") => True,
            (7, m) if m.contains("could not be evaluated") => Fails,
            _ => {
                wrong.push(format!("{expr}: unexpected status {status:?}"));
                continue;
            }
        };
        if got != *want {
            wrong.push(format!(
                "{expr}: want {want:?}, got {got:?} ({})",
                status.message
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows:\n{}",
        wrong.len(),
        ROWS.len(),
        wrong.join("\n")
    );

    // What cannot be served is refused at load, naming the place: the new policy is left out (it never
    // validated) and the rows keep being decided.
    for (expr, reason) in REFUSED {
        // Written whole (a rename), so the hub never reads a half-written file.
        let failures = || {
            hub.metric("sextant_hub_config_reloads_total{result=\"partial\"}")
                .unwrap_or(0.0)
        };
        let before = failures();
        let tmp = dir.join("refused.tmp");
        std::fs::write(&tmp, policy(999, expr)).expect("write");
        std::fs::rename(&tmp, dir.join("refused.yaml")).expect("rename");
        common::wait_until(
            std::time::Duration::from_secs(30),
            "the hub to refuse the configuration",
            || failures() > before,
        );
        let debug: serde_json::Value = serde_json::from_str(
            &common::get(hub.admin, "/debug/config", &[])
                .expect("debug")
                .body,
        )
        .expect("JSON");
        let rejected = debug["lastRejected"].to_string();
        assert!(
            rejected.contains("refused.yaml:8: Policy default/row-999: spec.rules[0].when:")
                && rejected.contains(&reason.replace('"', "\\\"")),
            "{expr}: {reason:?} not in {rejected}"
        );
        assert!(
            !debug["active"].to_string().contains("row-999"),
            "nothing refused was swapped in"
        );
    }
}

/// The status of a Check of `attrs` (plain attributes).
fn check_status(
    rt: &tokio::runtime::Runtime,
    client: &mut MixerClient<tonic::transport::Channel>,
    attrs: Vec<(&str, V)>,
) -> sextant_proto::google::rpc::Status {
    let values = attrs
        .into_iter()
        .map(|(k, v)| (k.to_string(), mixer::AttributeValue { value: Some(v) }))
        .collect();
    rt.block_on(client.check(mixer::CheckRequest {
        attributes: Some(mixer::Attributes { values }),
        ..Default::default()
    }))
    .expect("check")
    .into_inner()
    .precondition
    .and_then(|p| p.status)
    .expect("a status")
}

fn check_code(
    rt: &tokio::runtime::Runtime,
    client: &mut MixerClient<tonic::transport::Channel>,
    attrs: Vec<(&str, V)>,
) -> (i32, String) {
    let status = check_status(rt, client, attrs);
    (status.code, status.message)
}

#[test]
fn a_deny_rule_that_cannot_be_evaluated_denies_unless_on_error_skip() {
    let dir = scratch("onerror");
    let guard = |on_error: &str| {
        format!(
            "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: guard}}\nspec:\n  selector: 'destination.service.name == \"reviews\"'\n{on_error}  rules:\n  - name: no-guests\n    when: 'request.headers[\"x-user\"] == \"guest\"'\n    action: DENY\n"
        )
    };
    std::fs::write(dir.join("guard.yaml"), guard("")).expect("write");
    let hub = Hub::start(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = rt
        .block_on(MixerClient::connect(format!("http://{}", hub.grpc)))
        .expect("connect");
    let anonymous = || {
        vec![
            ("destination.service.name", s("reviews")),
            ("request.headers", headers(&[("accept", "*/*")])),
        ]
    };
    let failures = || {
        hub.metric("sextant_hub_eval_failures_total{resource=\"default/guard\",field=\"rules[no-guests].when\",kind=\"absent\"}")
            .unwrap_or(0.0)
    };
    let before = failures();
    let (code, message) = check_code(&rt, &mut client, anonymous());
    assert_eq!(code, 7, "{message}");
    assert_eq!(
        message,
        "policy default/guard rule no-guests could not be evaluated (No such key: x-user); denied by its onError: DENY"
    );
    assert_eq!(failures(), before + 1.0, "{}", hub.metrics());

    hub.write_config("guard.yaml", &guard("  onError: SKIP\n"), true);
    let (code, message) = check_code(&rt, &mut client, anonymous());
    assert_eq!(code, 0, "{message}");
    assert_eq!(failures(), before + 2.0, "still counted under SKIP");
    let mut guest = anonymous();
    guest[1] = ("request.headers", headers(&[("x-user", "guest")]));
    assert_eq!(
        check_code(&rt, &mut client, guest).0,
        7,
        "a guest is still denied"
    );
    assert!(
        hub.proc
            .log()
            .contains("an expression could not be evaluated"),
        "{}",
        hub.proc.log()
    );
}
