use sextant_adapter_sdk::testing::{self, Harness};
use sextant_adapter_sdk::{BatchKind, BatchWriter, Family, MetricKind};

use super::Prometheus;

#[test]
fn compliance() {
    testing::compliance::<Prometheus>("{}");
    testing::compliance::<Prometheus>(r#"{"prefix": "mesh_"}"#);
}

#[test]
fn records_every_sample_in_one_call_and_defines_each_family_once() {
    let mut h = Harness::<Prometheus>::new("").unwrap();
    h.handle_metrics(&testing::metrics_batch()).unwrap();
    h.handle_metrics(&testing::metrics_batch()).unwrap();
    assert_eq!(h.record_calls(), 2);
    let families = h.families();
    assert_eq!(families.len(), 3);
    assert_eq!(families[2].kind, MetricKind::Histogram);
    assert_eq!(families[2].buckets, vec![0.005, 0.05, 0.5, 5.0]);
    assert_eq!(
        families[0].label_names,
        vec!["destination", "response_code"]
    );
    let samples = h.samples();
    assert_eq!(samples.len(), 10);
    let errors: f64 = samples
        .iter()
        .filter(|s| s.family == "requests" && s.label("response_code") == Some("503"))
        .map(|s| s.value)
        .sum();
    assert_eq!(errors, 2.0);
    assert_eq!(h.skipped_samples(), 0);
}

#[test]
fn prefix_applies_to_family_names() {
    let mut h = Harness::<Prometheus>::new(r#"{"prefix": "mesh_"}"#).unwrap();
    h.handle_metrics(&testing::metrics_batch()).unwrap();
    assert_eq!(h.families()[0].name, "mesh_requests");
    assert_eq!(h.samples()[0].family, "mesh_requests");
}

fn requests_batch(labels: &[&str]) -> Vec<u8> {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&Family {
        name: "requests",
        kind: MetricKind::Counter,
        help: "",
        label_names: labels,
        buckets: &[],
    });
    let ok = w.family(&Family {
        name: "other",
        kind: MetricKind::Gauge,
        help: "",
        label_names: &[],
        buckets: &[],
    });
    w.metric(f, 1.0, 0, labels.iter().copied());
    w.metric(ok, 2.0, 0, []);
    w.finish()
}

#[test]
fn a_refused_redefinition_is_permanent_but_other_families_are_recorded() {
    let mut h = Harness::<Prometheus>::new("{}").unwrap();
    h.handle_metrics(&requests_batch(&["code"])).unwrap();
    let e = h
        .handle_metrics(&requests_batch(&["code", "method"]))
        .unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.message.contains("requests"), "{}", e.message);
    assert_eq!(
        h.samples().iter().filter(|s| s.family == "other").count(),
        2
    );
    assert!(!h.logs().is_empty());
}

#[test]
fn bad_config_is_refused() {
    let e = Harness::<Prometheus>::new(r#"{"prefx": "x"}"#).unwrap_err();
    assert!(e.contains("prefx"), "{e}");
}

#[test]
fn a_series_repeated_in_a_batch_keeps_its_labels_and_values() {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let labels = ["code", "dest"];
    let f = w.family(&Family {
        name: "requests",
        kind: MetricKind::Counter,
        help: "",
        label_names: &labels,
        buckets: &[],
    });
    let h = w.family(&Family {
        name: "latency",
        kind: MetricKind::Histogram,
        help: "",
        label_names: &labels,
        buckets: &[1.0],
    });
    for (v, code) in [(1.0, "200"), (2.0, "503"), (3.0, "200")] {
        w.metric(f, v, 0, [code, "reviews"]);
        w.metric(h, v / 10.0, 0, [code, "reviews"]);
    }
    let mut h2 = Harness::<Prometheus>::new("{}").unwrap();
    h2.handle_metrics(&w.finish()).unwrap();
    assert_eq!(h2.record_calls(), 1);
    let samples = h2.samples();
    let got: Vec<(String, Option<&str>, f64)> = samples
        .iter()
        .map(|s| (s.family.clone(), s.label("code"), s.value))
        .collect();
    assert_eq!(
        got,
        [
            ("requests".to_string(), Some("200"), 1.0),
            ("latency".to_string(), Some("200"), 0.1),
            ("requests".to_string(), Some("503"), 2.0),
            ("latency".to_string(), Some("503"), 0.2),
            ("requests".to_string(), Some("200"), 3.0),
            ("latency".to_string(), Some("200"), 0.3),
        ]
    );
    assert!(samples.iter().all(|s| s.label("dest") == Some("reviews")));
}
