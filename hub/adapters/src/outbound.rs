//! `http.send`: outbound plain-HTTP requests of adapters, through the allowlist, with a timeout bounded by
//! the call's deadline and a capped response body.
//!
//! The guest calls `send` synchronously from inside a wasm call, which runs on the adapter's worker thread
//! (never a tokio worker), so the host blocks that thread on the hub's tokio runtime until the response, the
//! timeout or the deadline: no deadlock, and the runtime's threads stay free.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;

use crate::allowlist::Allowlist;
use crate::bindings::sextant::adapter::http::{Error, Request, Response};
use crate::metrics::AdapterCounters;

/// Default timeout of an outbound request that gives none.
pub(crate) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The client all adapters share (connection pooling per host).
type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// What every adapter's outbound requests share: the pooled client, the runtime they wait on and the cap on
/// a response's body.
pub(crate) struct Outbound {
    client: Client,
    tokio: tokio::runtime::Handle,
    max_response_bytes: usize,
}

/// The adapter sending a request: its name, allowlist and counters.
pub(crate) struct Sender<'a> {
    /// The adapter's name.
    pub(crate) adapter: &'a str,
    /// The hosts it may reach.
    pub(crate) allowlist: &'a Allowlist,
    /// Its counters (denied and failed requests).
    pub(crate) counters: &'a AdapterCounters,
}

impl Outbound {
    /// Outbound HTTP waiting on `tokio`, reading at most `max_response_bytes` of a response's body.
    pub(crate) fn new(tokio: tokio::runtime::Handle, max_response_bytes: usize) -> Self {
        Outbound {
            client: client(),
            tokio,
            max_response_bytes,
        }
    }
}

/// A client for plain HTTP.
fn client() -> Client {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(DEFAULT_HTTP_TIMEOUT));
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

impl Outbound {
    /// Sends `req` for `state`'s adapter, waiting at most `left` (what remains of its call's deadline).
    pub(crate) fn send(
        &self,
        state: Sender<'_>,
        req: Request,
        left: Duration,
    ) -> Result<Response, Error> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| Error::Denied(format!("invalid URL {:?}: {e}", req.url)))?;
        if uri.scheme_str() != Some("http") {
            let message = format!("{}: only http:// URLs are supported", req.url);
            state.counters.http_denied();
            state
                .counters
                .failed(format!("outbound request refused: {message}"));
            return Err(Error::Denied(message));
        }
        let Some(host) = uri.host() else {
            return Err(Error::Denied(format!("{}: no host", req.url)));
        };
        let port = uri.port_u16().unwrap_or(80);
        if !state.allowlist.allows(host, port) {
            state.counters.http_denied();
            tracing::warn!(
                adapter = state.adapter,
                host,
                port,
                "outbound request denied by allowedHosts"
            );
            let message = format!("{host}:{port} is not in allowedHosts");
            state
                .counters
                .failed(format!("outbound request refused: {message}"));
            return Err(Error::Denied(message));
        }
        let asked = match req.timeout_ms {
            0 => DEFAULT_HTTP_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        // Leave the guest a moment after a timeout to return an error (retryable) before its epoch deadline
        // interrupts it (a crash and a restart).
        let margin = (left / 10).clamp(Duration::from_millis(20), Duration::from_millis(200));
        let timeout = asked.min(left.saturating_sub(margin));
        if timeout.is_zero() {
            return Err(Error::Timeout);
        }
        let method = http::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| Error::Other(format!("invalid method {:?}", req.method)))?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(req.body)))
            .map_err(|e| Error::Other(format!("invalid request: {e}")))?;

        let client = self.client.clone();
        let cap = self.max_response_bytes;
        let exchange = async move {
            let response = client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    Error::Connect(format!("{e}: {}", source_chain(&e)))
                } else {
                    Error::Other(format!("{e}: {}", source_chain(&e)))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, cap)
                .collect()
                .await
                .map_err(|e| {
                    Error::Other(format!("reading the response: {e} (limit {cap} bytes)"))
                })?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            Ok(Response {
                status: parts.status.as_u16(),
                headers,
                body: body.to_vec(),
            })
        };
        self.tokio
            .block_on(async move { tokio::time::timeout(timeout, exchange).await })
            .unwrap_or(Err(Error::Timeout))
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
