use std::path::Path;

use hub_config::load_texts;
use sextant_attributes::{Bag, Span, Time, Value};
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

/// Bags as a delta-encoded Report carries them: each differs from the one before in a few attributes.
fn changing_bags(n: usize) -> Vec<Bag> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut b = http_bag(200);
    let mut out = Vec::new();
    for _ in 0..n {
        let r = next();
        if r % 3 == 0 {
            let codes = [200, 404, 503];
            b.set_by_name("response.code", Value::Int64(codes[(r / 3 % 3) as usize]))
                .unwrap();
        }
        if r % 5 == 0 {
            let d = ["reviews", "ratings", "details"][(r / 5 % 3) as usize];
            b.set_by_name("destination.service.name", Value::String(d.into()))
                .unwrap();
        }
        if r % 7 == 0 {
            let v = ["v1", "v2"][(r / 7 % 2) as usize];
            let m = [("version".to_string(), v.to_string())].into();
            b.set_by_name("destination.labels", Value::StringMap(m))
                .unwrap();
        }
        if r % 11 == 0 {
            let p = if r / 11 % 2 == 0 { "http" } else { "grpc" };
            b.set_by_name("request.protocol", Value::String(p.into()))
                .unwrap();
        }
        if r % 13 == 0 {
            let id = sextant_attributes::lookup("context.proxy_error_code").unwrap();
            if b.get(id).is_some() {
                b.remove(id);
            } else {
                b.set(id, Value::String("UF".into())).unwrap();
            }
        }
        b.set_by_name(
            "response.duration",
            Value::Duration(Span {
                seconds: 0,
                nanos: i32::try_from(r % 1_000_000_000).unwrap(),
            }),
        )
        .unwrap();
        out.push(b.clone());
    }
    out
}

/// The attributes that differ between two bags.
fn changed_between(prev: &Bag, next: &Bag) -> sextant_attributes::AttrSet {
    let mut set = sextant_attributes::AttrSet::new();
    for i in 0..sextant_attributes::VOCABULARY.len() {
        let id = sextant_attributes::AttrId(u16::try_from(i).unwrap());
        if prev.get(id) != next.get(id) {
            set.insert(id);
        }
    }
    set
}

#[test]
fn delta_aware_recording_writes_what_full_evaluation_writes() {
    // The defaults (fast shapes) plus cel dimensions and a cel selector that read several attributes.
    let rules = rules_of(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {name: cel-dims, namespace: sextant-system}
spec:
  selector: 'request.protocol == "http" || response.code >= 500'
  adapters: [prometheus]
  metrics:
  - name: routed_total
    kind: COUNTER
    dimensions:
      route: 'destination.service.name + "/" + destination.labels["version"]'
      class: 'response.code >= 500 ? "error" : (has(context.proxy_error_code) ? "flagged" : "ok")'
      slow: 'response.duration > duration("500ms") ? "slow" : "fast"'
      tag: '"fixed"'
"#,
    )
    .unwrap();
    let bags = changing_bags(300);
    let mut full = rules.batches();
    let mut delta = rules.batches();
    for (i, b) in bags.iter().enumerate() {
        let full_stats = rules.record(b, 7, &mut full);
        let delta_stats = if i == 0 {
            rules.record_changed(b, sextant_attributes::Changes::All, 7, &mut delta)
        } else {
            let set = changed_between(&bags[i - 1], b);
            rules.record_changed(b, sextant_attributes::Changes::Only(&set), 7, &mut delta)
        };
        assert_eq!(full_stats, delta_stats, "bag {i}");
        // A segment boundary in the middle: what was kept must not survive it.
        if i == 150 {
            let (f, d) = (full.take(), delta.take());
            assert_eq!(f.len(), d.len());
            for (f, d) in f.iter().zip(&d) {
                assert_eq!(f.bytes, d.bytes, "segments up to bag {i}");
            }
        }
    }
    let (f, d) = (full.take(), delta.take());
    assert!(!f.is_empty());
    assert_eq!(
        f.len(),
        d.len(),
        "as many segments from full bags as from deltas"
    );
    for (f, d) in f.iter().zip(&d) {
        assert_eq!(f.records, d.records);
        assert_eq!(f.bytes, d.bytes, "the same records, strings and order");
    }
}

#[test]
fn expressions_know_what_they_read() {
    let e = |src: &str| Eval::compile(src, Want::Scalar).unwrap();
    let names = |e: &Eval| -> Option<Vec<&str>> {
        e.reads().map(|r| r.iter().map(|id| id.name()).collect())
    };
    assert_eq!(
        names(&e(
            r#"context.reporter.kind == "outbound" ? "source" : "destination""#
        )),
        Some(vec!["context.reporter.kind"])
    );
    assert_eq!(
        names(&e(r#"destination.labels["version"]"#)),
        Some(vec!["destination.labels"])
    );
    assert_eq!(names(&e(r#""tcp""#)), Some(vec![]));
    let mut both = names(&e(
        r#"request.headers.exists(k, k == source.workload.name) ? "y" : "n""#,
    ))
    .unwrap();
    both.sort_unstable();
    assert_eq!(both, ["request.headers", "source.workload.name"]);
}
