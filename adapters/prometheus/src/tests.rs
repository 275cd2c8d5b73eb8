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
