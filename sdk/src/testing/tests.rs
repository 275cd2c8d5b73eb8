use super::*;
use crate::{Batch, FamilyHandle, Host, MetricKind, SampleWriter, testing};

/// Records every metric as a sample of a family defined per name, and posts a line per log entry.
struct Echo {
    handles: Vec<(String, FamilyHandle)>,
    url: String,
}

impl Adapter for Echo {
    fn init(config: &str, host: &Host) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Cfg {
            url: String,
        }
        let cfg: Cfg = crate::parse_config(config)?;
        host.log(Level::Info, "echo ready");
        Ok(Self {
            handles: Vec::new(),
            url: cfg.url,
        })
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::METRICS | Capabilities::LOGS
    }

    fn handle_metrics(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let mut samples = SampleWriter::new();
        for m in batch.metrics() {
            let f = m.family();
            let handle = match self.handles.iter().find(|(n, _)| n == f.name()) {
                Some((_, h)) => *h,
                None => {
                    let fam = MetricFamily::new(f.name(), f.help(), f.kind(), f.label_names())
                        .with_buckets(f.buckets());
                    let h = host
                        .metrics()
                        .define(&fam)
                        .map_err(AdapterError::permanent)?;
                    self.handles.push((f.name().to_owned(), h));
                    h
                }
            };
            samples.sample(handle.0, m.value(), m.label_values());
        }
        host.metrics()
            .record(&samples)
            .map_err(AdapterError::permanent)?;
        Ok(())
    }

    fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        for l in batch.logs() {
            let resp = host.http().post(&self.url, "text/plain", l.name())?;
            resp.error_for_status("echo")?;
        }
        Ok(())
    }
}

#[test]
fn harness_records_families_samples_and_requests() {
    let mut h = Harness::<Echo>::new(r#"{"url": "http://sink:8080/in"}"#).unwrap();
    assert_eq!(h.logs(), vec![(Level::Info, "echo ready".to_owned())]);
    h.handle_metrics(&testing::metrics_batch()).unwrap();
    assert_eq!(h.families().len(), 3);
    assert_eq!(h.record_calls(), 1);
    let samples = h.samples();
    assert_eq!(samples.len(), 5);
    assert_eq!(samples[1].family, "requests");
    assert_eq!(samples[1].kind, MetricKind::Counter);
    assert_eq!(samples[1].label("response_code"), Some("503"));
    assert_eq!(h.families()[2].buckets, vec![0.005, 0.05, 0.5, 5.0]);

    h.handle_logs(&testing::logs_batch()).unwrap();
    let reqs = h.take_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header_value("Content-Type"), Some("text/plain"));
    assert_eq!(reqs[0].body, b"accesslog");
}

#[test]
fn scripted_responses_and_allowlist() {
    let mut h = Harness::<Echo>::builder()
        .allow_host("sink:8080")
        .respond(Ok(Response::status(503)))
        .respond(Err(HttpError::Timeout))
        .build::<Echo>(r#"{"url": "http://sink:8080/in"}"#)
        .unwrap();
    assert!(
        h.handle_logs(&testing::logs_batch())
            .unwrap_err()
            .is_retryable()
    );
    assert!(
        h.handle_logs(&testing::logs_batch())
            .unwrap_err()
            .is_retryable()
    );
    h.handle_logs(&testing::logs_batch()).unwrap();

    let mut denied = Harness::<Echo>::builder()
        .allow_host("other:80")
        .build::<Echo>(r#"{"url": "http://sink:8080/in"}"#)
        .unwrap();
    let e = denied.handle_logs(&testing::logs_batch()).unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert_eq!(denied.requests().len(), 1);
}

#[test]
fn malformed_batches_are_permanent_errors() {
    let mut h = Harness::<Echo>::new(r#"{"url": "http://sink/"}"#).unwrap();
    for bad in testing::malformed_batches() {
        let e = h.handle_metrics(&bad).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Permanent);
    }
    assert_eq!(h.record_calls(), 0);
}

#[test]
fn echo_passes_compliance() {
    testing::compliance::<Echo>(r#"{"url": "http://sink/"}"#);
}

struct Panicky;

impl Adapter for Panicky {
    fn init(_: &str, _: &Host) -> Result<Self, String> {
        Ok(Self)
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::SPANS
    }
    fn handle_logs(&mut self, _: &Batch<'_>, _: &Host) -> Result<(), AdapterError> {
        panic!("undeclared handler panics")
    }
}

#[test]
fn compliance_catches_panics_in_undeclared_handlers() {
    let r = std::panic::catch_unwind(|| testing::compliance::<Panicky>("{}"));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("handle-logs panicked"), "{msg}");
}

struct Silent;

impl Adapter for Silent {
    fn init(_: &str, _: &Host) -> Result<Self, String> {
        Ok(Self)
    }
}

#[test]
fn compliance_requires_a_capability() {
    let r = std::panic::catch_unwind(|| testing::compliance::<Silent>("{}"));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("declares no capability"), "{msg}");
}

#[test]
fn authority_of_urls() {
    use super::host::authority;
    assert_eq!(
        authority("http://a:9411/api/v2/spans").as_deref(),
        Some("a:9411")
    );
    assert_eq!(authority("http://a/x").as_deref(), Some("a:80"));
    assert_eq!(
        authority("http://[::1]:4318").as_deref(),
        Some("[::1]:4318")
    );
    assert_eq!(authority("https://a/"), None);
}
