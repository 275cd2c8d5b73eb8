use std::path::Path;

use hub_attributes::{Bag, Span, Time, Value};
use hub_config::load_texts;
use sextant_batch::{Batch, MetricKind};

use super::*;

fn bag(pairs: &[(&str, Value)]) -> Bag {
    let mut b = Bag::new();
    for (k, v) in pairs {
        b.set_by_name(k, v.clone()).unwrap();
    }
    b
}

fn http_bag(code: i64) -> Bag {
    bag(&[
        (
            "source.workload.name",
            Value::String("productpage-v1".into()),
        ),
        (
            "destination.service.host",
            Value::String("reviews.default.svc.cluster.local".into()),
        ),
        ("destination.service.name", Value::String("reviews".into())),
        (
            "destination.labels",
            Value::StringMap([("version".to_string(), "v2".to_string())].into()),
        ),
        ("context.reporter.kind", Value::String("inbound".into())),
        ("request.protocol", Value::String("http".into())),
        ("request.method", Value::String("GET".into())),
        ("request.url_path", Value::String("/reviews/1".into())),
        ("response.code", Value::Int64(code)),
        (
            "response.duration",
            Value::Duration(Span {
                seconds: 0,
                nanos: 25_000_000,
            }),
        ),
        (
            "response.time",
            Value::Timestamp(Time {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        ),
        (
            "request.time",
            Value::Timestamp(Time {
                seconds: 1_699_999_999,
                nanos: 975_000_000,
            }),
        ),
        ("connection.mtls", Value::Bool(true)),
    ])
}

fn rules_of(extra: &str) -> Result<Rules, String> {
    let set = load_texts([
        (Path::new(DEFAULT_TELEMETRY_FILE), DEFAULT_TELEMETRY),
        (Path::new("extra.yaml"), extra),
    ])
    .map_err(|e| e.to_string())?;
    validate(&set).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

#[test]
fn default_telemetry_makes_istio_standard_metrics() {
    let rules = rules_of("").unwrap();
    assert_eq!(rules.adapters, ["sextant-system/prometheus"]);
    let mut batches = rules.batches();
    let stats = rules.record(&http_bag(200), 0, &mut batches);
    assert_eq!(stats.metrics, 4, "{stats:?}");
    assert_eq!(stats.failures, 0);
    let segs = batches.take();
    assert_eq!(segs.len(), 1);
    let b = Batch::parse(&segs[0].bytes).unwrap();
    let m: Vec<_> = b.metrics().collect();
    let requests = m
        .iter()
        .find(|m| m.family().name() == "istio_requests_total")
        .unwrap();
    let labels: std::collections::HashMap<_, _> = requests.labels().collect();
    assert_eq!(labels["reporter"], "destination");
    assert_eq!(labels["source_workload"], "productpage-v1");
    assert_eq!(labels["destination_version"], "v2");
    assert_eq!(labels["response_code"], "200");
    assert_eq!(labels["response_flags"], "-");
    assert_eq!(labels["connection_security_policy"], "mutual_tls");
    assert_eq!(
        labels["source_principal"], "unknown",
        "absent attributes are `unknown`"
    );
    assert_eq!(requests.time_nanos(), 1_700_000_000_000_000_000);
    let duration = m
        .iter()
        .find(|m| m.family().name() == "istio_request_duration_milliseconds")
        .unwrap();
    assert_eq!(duration.family().kind(), MetricKind::Histogram);
    assert_eq!(duration.value(), 25.0);

    // A TCP report makes TCP metrics only.
    let tcp = bag(&[
        ("connection.event", Value::String("open".into())),
        ("connection.sent.bytes", Value::Int64(10)),
        ("destination.service.name", Value::String("mongodb".into())),
    ]);
    let stats = rules.record(&tcp, 5, &mut batches);
    assert_eq!(stats.metrics, 3, "sent, received and opened: {stats:?}");
}

#[test]
fn default_expressions_take_the_fast_path_and_agree_with_cel() {
    let rules = rules_of("").unwrap();
    let bags = [
        http_bag(503),
        bag(&[("connection.event", Value::String("close".into()))]),
        Bag::new(),
    ];
    for t in &rules.telemetry {
        let exprs = t.selector.iter().chain(t.dims.iter()).chain(
            t.metrics
                .iter()
                .flat_map(|m| m.value.iter().chain(m.when.iter())),
        );
        for e in exprs {
            assert!(e.is_fast(), "{} runs in cel", e.source);
            for b in &bags {
                let reads = hub_policy::ReadSet::default();
                let resolver = hub_policy::BagResolver::new(b, &reads);
                let mut scope = CelScope::new(&resolver);
                let fast = e.eval(b, &mut scope).map(|o| o.text().into_owned());
                let cel = e.eval_with_cel(&mut scope).map(|o| o.text().into_owned());
                assert_eq!(fast, cel, "{}", e.source);
            }
        }
    }
}

#[test]
fn logs_and_spans_with_cel_fields() {
    let rules = rules_of(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {name: sink}
spec: {module: builtin:logs}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {name: access}
spec:
  adapters: [sink]
  logs:
  - name: accesslog
    severity: 'response.code >= 500 ? "ERROR" : "INFO"'
    fields: {path: request.url_path, code: response.code, who: 'source.workload.name + "!"', gone: source.principal}
  traces:
    tags: {http.status_code: response.code}
"#,
    )
    .unwrap();
    let mut b = http_bag(503);
    b.set_by_name(
        "request.headers",
        Value::StringMap(
            [(
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            )]
            .into(),
        ),
    )
    .unwrap();
    let mut batches = rules.batches();
    let stats = rules.record(&b, 0, &mut batches);
    assert_eq!((stats.logs, stats.spans), (1, 1), "{stats:?}");
    let segs = batches.take();
    let sink = rules
        .adapters
        .iter()
        .position(|a| a == "default/sink")
        .unwrap();
    let logs = segs
        .iter()
        .find(|s| s.adapter == sink && s.kind == sextant_batch::BatchKind::Logs)
        .unwrap();
    let parsed = Batch::parse(&logs.bytes).unwrap();
    let l = parsed.logs().next().unwrap();
    assert_eq!(l.severity(), sextant_batch::Severity::Error);
    let fields: Vec<_> = l.fields().map(|f| f.key).collect();
    assert_eq!(
        fields,
        ["code", "path", "who"],
        "an absent field is left out"
    );
    let spans = segs
        .iter()
        .find(|s| s.kind == sextant_batch::BatchKind::Spans)
        .unwrap();
    let parsed = Batch::parse(&spans.bytes).unwrap();
    let s = parsed.spans().next().unwrap().span();
    assert_eq!(s.name, "GET /reviews/1");
    assert_eq!(s.service, "reviews");
    assert_eq!(s.peer_service, "productpage-v1");
    assert_eq!(s.end_nanos - s.start_nanos, 25_000_000);
    assert_eq!(
        s.flags & sextant_batch::SPAN_ERROR,
        sextant_batch::SPAN_ERROR
    );
}

#[test]
fn invalid_telemetry_is_reported_with_its_field() {
    let err = rules_of(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {name: bad}
spec:
  adapters: [prometheus-typo]
  metrics:
  - name: istio_requests_total
    kind: GAUGE
    value: request.path
    dimensions: {code: response.cod}
  - name: "9bad"
    kind: COUNTER
"#,
    )
    .unwrap_err();
    assert!(
        err.contains("extra.yaml:6") && err.contains("no Adapter named default/prometheus-typo"),
        "{err}"
    );
    assert!(
        err.contains("spec.metrics[0].name")
            && err.contains("also defined by sextant-system/istio-http"),
        "{err}"
    );
    assert!(err.contains("9bad"), "{err}");
}
