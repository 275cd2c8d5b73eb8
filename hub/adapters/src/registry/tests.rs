use sextant_batch::SampleWriter;

use super::*;

fn family(name: &str, kind: MetricKind, labels: &[&str]) -> FamilyDef {
    FamilyDef {
        name: name.into(),
        help: format!("{name} help"),
        kind,
        label_names: labels.iter().map(|s| s.to_string()).collect(),
        buckets: Vec::new(),
    }
}

fn all(_: u32) -> bool {
    true
}

#[test]
fn counters_gauges_histograms_in_text_format() {
    let r = Registry::new(10, 10);
    let req = r
        .define(family(
            "istio_requests_total",
            MetricKind::Counter,
            &["code"],
        ))
        .expect("define");
    let bytes = r
        .define(family("bytes", MetricKind::Counter, &[]))
        .expect("define");
    let up = r
        .define(family("up", MetricKind::Gauge, &[]))
        .expect("define");
    let mut lat = family("latency_seconds", MetricKind::Histogram, &["op"]);
    lat.buckets = vec![0.1, 1.0];
    let lat = r.define(lat).expect("define");

    let mut s = SampleWriter::new();
    s.sample(req, 2.0, ["200"]);
    s.sample(req, 1.0, ["200"]);
    s.sample(req, 1.0, ["5\"0\n3"]);
    s.sample(bytes, 10.5, std::iter::empty::<&str>());
    s.sample(up, 3.0, std::iter::empty::<&str>());
    s.sample(up, 1.0, std::iter::empty::<&str>());
    s.sample(lat, 0.05, ["get"]);
    s.sample(lat, 0.5, ["get"]);
    s.sample(lat, 7.0, ["get"]);
    let out = r.record(s.as_bytes(), &all).expect("record");
    assert_eq!(
        out,
        RecordOutcome {
            applied: 9,
            skipped: 0
        }
    );

    let text = r.encode();
    for line in [
        "# TYPE istio_requests_total counter",
        "istio_requests_total{code=\"200\"} 3",
        "istio_requests_total{code=\"5\\\"0\\n3\"} 1",
        "# TYPE bytes_total counter",
        "bytes_total 10.5",
        "# TYPE up gauge",
        "up 1",
        "# HELP latency_seconds latency_seconds help",
        "latency_seconds_bucket{op=\"get\",le=\"0.1\"} 1",
        "latency_seconds_bucket{op=\"get\",le=\"1\"} 2",
        "latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 3",
        "latency_seconds_sum{op=\"get\"} 7.55",
        "latency_seconds_count{op=\"get\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let om = r.encode_openmetrics();
    assert!(
        om.contains("# TYPE istio_requests counter\nistio_requests_total{"),
        "{om}"
    );
}

#[test]
fn identical_redefinition_shares_the_handle_and_conflicts_are_refused() {
    let r = Registry::new(2, 10);
    let a = r
        .define(family("a", MetricKind::Counter, &["x"]))
        .expect("define");
    assert_eq!(r.define(family("a", MetricKind::Counter, &["x"])), Ok(a));
    assert!(matches!(
        r.define(family("a", MetricKind::Gauge, &["x"])),
        Err(DefineError::Conflict(_))
    ));
    assert!(matches!(
        r.define(family("a_total", MetricKind::Gauge, &[])),
        Err(DefineError::Conflict(_))
    ));
    assert!(matches!(
        r.define(family("1bad", MetricKind::Gauge, &[])),
        Err(DefineError::InvalidName(_))
    ));
    assert!(matches!(
        r.define(family("h", MetricKind::Histogram, &["le"])),
        Err(DefineError::InvalidLabel { .. })
    ));
    assert!(matches!(
        r.define(family("b", MetricKind::Gauge, &["x", "x"])),
        Err(DefineError::InvalidLabel { .. })
    ));
    r.define(family("b", MetricKind::Gauge, &[]))
        .expect("second family");
    assert_eq!(
        r.define(family("c", MetricKind::Gauge, &[])),
        Err(DefineError::Full(2))
    );
}

#[test]
fn limits_and_invalid_samples_are_counted() {
    let r = Registry::new(10, 2);
    let c = r
        .define(family("c", MetricKind::Counter, &["k"]))
        .expect("define");
    let mut s = SampleWriter::new();
    for k in ["a", "b", "c", "a"] {
        s.sample(c, 1.0, [k]);
    }
    s.sample(c, -1.0, ["a"]);
    s.sample(c, 1.0, ["a", "extra"]);
    s.sample(99, 1.0, ["a"]);
    let out = r.record(s.as_bytes(), &all).expect("record");
    assert_eq!(
        out,
        RecordOutcome {
            applied: 3,
            skipped: 4
        }
    );
    assert_eq!(
        r.dropped(),
        RegistryDrops {
            series_limit: 1,
            invalid: 3
        }
    );
    // A handle the caller does not own is skipped.
    let out = r.record(s.as_bytes(), &|_| false).expect("record");
    assert_eq!(out.applied, 0);
    assert!(r.record(&[0x80], &all).is_err());
}

#[test]
fn label_set_references_reach_the_same_series_within_limits() {
    let r = Registry::new(10, 2);
    let req = r
        .define(family("req", MetricKind::Counter, &["code"]))
        .expect("define");
    let mut lat = family("lat", MetricKind::Histogram, &["code"]);
    lat.buckets = vec![1.0];
    let lat = r.define(lat).expect("define");
    let other = r
        .define(family("other", MetricKind::Gauge, &["a", "b"]))
        .expect("define");

    let mut s = SampleWriter::new();
    let ok = s.sample(req, 1.0, ["200"]);
    s.sample_with(req, 2.0, ok);
    // The same labels in another family: its own series.
    s.sample_with(lat, 0.5, ok);
    s.sample_with(lat, 5.0, ok);
    // Invalid for a counter, whichever way the labels come.
    s.sample_with(req, -1.0, ok);
    // A reference with the wrong label count for the family is skipped.
    s.sample_with(other, 1.0, ok);
    s.sample(req, 1.0, ["503"]);
    // A third series is over the per-family limit of 2, by reference too.
    let third = s.sample(req, 1.0, ["404"]);
    s.sample_with(req, 1.0, third);
    let out = r.record(s.as_bytes(), &all).expect("record");
    assert_eq!(
        out,
        RecordOutcome {
            applied: 5,
            skipped: 4
        }
    );
    assert_eq!(
        r.dropped(),
        RegistryDrops {
            series_limit: 2,
            invalid: 2
        }
    );
    let text = r.encode();
    for line in [
        "req_total{code=\"200\"} 3",
        "req_total{code=\"503\"} 1",
        "lat_bucket{code=\"200\",le=\"1\"} 1",
        "lat_count{code=\"200\"} 2",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("404"), "{text}");
}
