//! The in-memory host behind [`crate::Host`] in native builds: it keeps what the adapter did so tests can
//! inspect it, and answers HTTP requests from a script.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sextant_batch::{MetricKind, SampleReader};

use crate::{HttpError, Level, MetricFamily, Request, Response};

/// One sample the adapter recorded, resolved against its family.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSample {
    /// The family's name.
    pub family: String,
    /// The family's type.
    pub kind: MetricKind,
    /// (label name, label value) pairs, in the family's order.
    pub labels: Vec<(String, String)>,
    /// The value: an increment, a gauge value or an observation.
    pub value: f64,
}

impl RecordedSample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The state of a test host.
#[derive(Debug)]
pub(crate) struct TestHost {
    pub(crate) families: Vec<MetricFamily>,
    pub(crate) samples: Vec<RecordedSample>,
    pub(crate) record_calls: usize,
    pub(crate) skipped_samples: usize,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) requests: Vec<Request>,
    pub(crate) responses: VecDeque<Result<Response, HttpError>>,
    pub(crate) default_response: Result<Response, HttpError>,
    /// `host:port` entries; `None` allows every host.
    pub(crate) allowed_hosts: Option<Vec<String>>,
    pub(crate) clock: Option<u64>,
    started: Instant,
}

impl Default for TestHost {
    fn default() -> Self {
        Self {
            families: Vec::new(),
            samples: Vec::new(),
            record_calls: 0,
            skipped_samples: 0,
            logs: Vec::new(),
            requests: Vec::new(),
            responses: VecDeque::new(),
            default_response: Ok(Response::status(200)),
            allowed_hosts: None,
            clock: None,
            started: Instant::now(),
        }
    }
}

impl TestHost {
    pub(crate) fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    pub(crate) fn now_unix_nanos(&self) -> u64 {
        self.clock.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    }

    pub(crate) fn monotonic_nanos(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Like the hub: an identical family returns its handle, a different one under the same name is refused.
    pub(crate) fn define(&mut self, family: &MetricFamily) -> Result<u32, String> {
        if let Some(i) = self.families.iter().position(|f| f.name == family.name) {
            if self.families[i] == *family {
                return Ok(i as u32);
            }
            return Err(format!(
                "metric family {} is already defined differently",
                family.name
            ));
        }
        let valid = family.name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if family.name.is_empty() || !valid {
            return Err(format!("invalid metric name {:?}", family.name));
        }
        self.families.push(family.clone());
        Ok(self.families.len() as u32 - 1)
    }

    /// Like the hub: samples naming unknown handles or with a wrong label count are skipped and counted.
    pub(crate) fn record(&mut self, bytes: &[u8]) -> Result<u32, String> {
        self.record_calls += 1;
        let mut applied = 0;
        for sample in SampleReader::new(bytes) {
            let s = sample.map_err(|e| e.to_string())?;
            let Some(f) = self.families.get(s.handle as usize) else {
                self.skipped_samples += 1;
                continue;
            };
            if f.label_names.len() != s.label_values.len() {
                self.skipped_samples += 1;
                continue;
            }
            self.samples.push(RecordedSample {
                family: f.name.clone(),
                kind: f.kind,
                labels: f
                    .label_names
                    .iter()
                    .cloned()
                    .zip(s.label_values.iter().map(|v| (*v).to_owned()))
                    .collect(),
                value: s.value,
            });
            applied += 1;
        }
        Ok(applied)
    }

    pub(crate) fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        let verdict = self.allowed(&request.url);
        self.requests.push(request);
        verdict?;
        self.responses
            .pop_front()
            .unwrap_or_else(|| self.default_response.clone())
    }

    fn allowed(&self, url: &str) -> Result<(), HttpError> {
        let authority =
            authority(url).ok_or_else(|| HttpError::Denied(format!("invalid URL {url:?}")))?;
        match &self.allowed_hosts {
            Some(list) if !list.iter().any(|h| h.eq_ignore_ascii_case(&authority)) => Err(
                HttpError::Denied(format!("{authority} is not in the allowed hosts")),
            ),
            _ => Ok(()),
        }
    }
}

/// `host:port` of an absolute `http://` URL (port 80 when none is given).
pub(crate) fn authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    if auth.is_empty() || auth.contains('@') {
        return None;
    }
    let has_port = match auth.rfind(':') {
        Some(i) => !auth[i..].contains(']'),
        None => false,
    };
    Some(if has_port {
        auth.to_owned()
    } else {
        format!("{auth}:80")
    })
}

thread_local! {
    static CURRENT: RefCell<Rc<RefCell<TestHost>>> = RefCell::new(Rc::default());
}

/// Runs `f` on the thread's current test host.
pub(crate) fn with_host<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    let host = CURRENT.with(|c| c.borrow().clone());
    let mut h = host.borrow_mut();
    f(&mut h)
}

/// Runs `f` with `host` as the thread's current test host, then restores the previous one.
pub(crate) fn enter<R>(host: &Rc<RefCell<TestHost>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Rc<RefCell<TestHost>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
    }
    let prev = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), host.clone()));
    let _restore = Restore(Some(prev));
    f()
}
