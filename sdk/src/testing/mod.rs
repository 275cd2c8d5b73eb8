//! Running an adapter natively, without Wasm: a [`Harness`] plays the hub (it calls `init`, hands over
//! batches the way the exports do, and records what the adapter does through [`crate::Host`]), and
//! [`compliance`] checks what every adapter must do.
//!
//! ```
//! use sextant_adapter_sdk::testing::{self, Harness};
//! # use sextant_adapter_sdk::{Adapter, Capabilities, Host};
//! # struct Nop;
//! # impl Adapter for Nop {
//! #     fn init(_: &str, _: &Host) -> Result<Self, String> { Ok(Nop) }
//! #     fn capabilities(&self) -> Capabilities { Capabilities::LOGS }
//! # }
//! let mut h = Harness::<Nop>::new("{}").unwrap();
//! h.handle_logs(&testing::logs_batch()).unwrap();
//! testing::compliance::<Nop>("{}");
//! ```

mod batches;
mod compliance;
mod host;

use std::cell::RefCell;
use std::rc::Rc;

pub use batches::{
    T0, attributes_batch, logs_batch, malformed_batches, metrics_batch, spans_batch,
};
pub use compliance::{compliance, compliance_with};
pub use host::RecordedSample;
pub(crate) use host::with_host;
use host::{TestHost, enter};
use sextant_batch::BatchKind;

use crate::{
    Adapter, AdapterError, Capabilities, CheckDecision, HttpError, Level, MetricFamily, Request,
    Response, dispatch,
};

/// Configures the test host before the adapter's `init` runs.
#[derive(Debug, Default)]
pub struct HarnessBuilder {
    host: TestHost,
}

impl HarnessBuilder {
    /// Restricts outbound HTTP to the listed `host:port` entries, like the `Adapter`'s `spec.allowedHosts`
    /// (call once per entry). Without any, every `http://` URL is allowed.
    pub fn allow_host(mut self, host_port: &str) -> Self {
        self.host
            .allowed_hosts
            .get_or_insert_with(Vec::new)
            .push(host_port.to_owned());
        self
    }

    /// Queues the answer to the next HTTP request that has no queued answer yet.
    pub fn respond(mut self, answer: Result<Response, HttpError>) -> Self {
        self.host.responses.push_back(answer);
        self
    }

    /// The answer once the queue is empty (by default `200` with an empty body).
    pub fn default_response(mut self, answer: Result<Response, HttpError>) -> Self {
        self.host.default_response = answer;
        self
    }

    /// Fixes the wall clock at `unix_nanos` (by default the real time).
    pub fn clock(mut self, unix_nanos: u64) -> Self {
        self.host.clock = Some(unix_nanos);
        self
    }

    /// Runs the adapter's `init` with `config` (JSON text).
    pub fn build<A: Adapter>(self, config: &str) -> Result<Harness<A>, String> {
        let host = Rc::new(RefCell::new(self.host));
        let adapter = enter(&host, || A::init(config, &crate::Host::new()))?;
        let capabilities = adapter.capabilities();
        Ok(Harness {
            adapter,
            capabilities,
            host,
        })
    }
}

/// One adapter instance on an in-memory host.
#[derive(Debug)]
pub struct Harness<A> {
    adapter: A,
    capabilities: Capabilities,
    host: Rc<RefCell<TestHost>>,
}

impl<A: Adapter> Harness<A> {
    /// Initializes the adapter with `config` on a host that allows every HTTP URL and answers `200`.
    pub fn new(config: &str) -> Result<Self, String> {
        HarnessBuilder::default().build(config)
    }

    /// A host to configure first (allowlist, scripted responses, clock).
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The adapter.
    pub fn adapter(&self) -> &A {
        &self.adapter
    }

    /// What `init` returned as capabilities.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Calls `handle-metrics` with encoded bytes, as the hub does.
    pub fn handle_metrics(&mut self, batch: &[u8]) -> Result<(), AdapterError> {
        self.handle(BatchKind::Metrics, batch)
    }

    /// Calls `handle-logs` with encoded bytes.
    pub fn handle_logs(&mut self, batch: &[u8]) -> Result<(), AdapterError> {
        self.handle(BatchKind::Logs, batch)
    }

    /// Calls `handle-spans` with encoded bytes.
    pub fn handle_spans(&mut self, batch: &[u8]) -> Result<(), AdapterError> {
        self.handle(BatchKind::Spans, batch)
    }

    /// Calls the handler of `kind` (metrics, logs or spans) with encoded bytes.
    pub fn handle(&mut self, kind: BatchKind, batch: &[u8]) -> Result<(), AdapterError> {
        let adapter = &mut self.adapter;
        enter(&self.host, || dispatch::handle(adapter, kind, batch))
    }

    /// Calls `check` with an encoded attributes batch.
    pub fn check(&mut self, attributes: &[u8]) -> Result<CheckDecision, AdapterError> {
        let adapter = &mut self.adapter;
        enter(&self.host, || dispatch::check(adapter, attributes))
    }

    /// Families the adapter defined, in order (a family's handle is its index).
    pub fn families(&self) -> Vec<MetricFamily> {
        self.host.borrow().families.clone()
    }

    /// Samples the adapter recorded, in order.
    pub fn samples(&self) -> Vec<RecordedSample> {
        self.host.borrow().samples.clone()
    }

    /// Number of `metrics.record` calls.
    pub fn record_calls(&self) -> usize {
        self.host.borrow().record_calls
    }

    /// Samples the host skipped (unknown handle or wrong label count).
    pub fn skipped_samples(&self) -> usize {
        self.host.borrow().skipped_samples
    }

    /// HTTP requests the adapter sent, denied ones included, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.host.borrow().requests.clone()
    }

    /// Returns the HTTP requests sent so far and forgets them.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.host.borrow_mut().requests)
    }

    /// Lines the adapter wrote to the hub's log.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.host.borrow().logs.clone()
    }

    /// Queues the answer to a coming HTTP request.
    pub fn respond(&self, answer: Result<Response, HttpError>) {
        self.host.borrow_mut().responses.push_back(answer);
    }

    /// Sets the answer used once the queue is empty.
    pub fn set_default_response(&self, answer: Result<Response, HttpError>) {
        self.host.borrow_mut().default_response = answer;
    }

    /// Fixes the wall clock.
    pub fn set_clock(&self, unix_nanos: u64) {
        self.host.borrow_mut().clock = Some(unix_nanos);
    }
}

#[cfg(test)]
mod tests;
