//! Forwarding a routed request: cluster choice, the upstream request, timeouts, retries and mirrors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use proxy_balance::{Body, Cluster, Error, Host, Outcome as HostOutcome, Recording};
use proxy_config::cluster::Protocol;
use proxy_config::route::{
    Clusters, Forward, HashInput, HashPolicy, PathMatch, RetryPolicy, Route, VirtualHost,
};
use proxy_state::Snapshot;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::local::response;
use crate::{Ctx, headers};

/// Request bodies up to this size are held before sending when mirrors need a copy; larger ones stream.
const MAX_BUFFERED_BODY: u64 = 64 * 1024;
/// A streamed request body is kept for retries up to this size (Envoy's default buffer limit).
const RETRY_BUFFER_LIMIT: usize = 1024 * 1024;
/// Mirrored requests in flight per connection manager; more are dropped and counted.
pub(crate) const MAX_MIRRORS_IN_FLIGHT: usize = 256;

const ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
const EXPECTED_TIMEOUT: HeaderName = HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const OVERLOADED: HeaderName = HeaderName::from_static("x-envoy-overloaded");
const RATE_LIMITED: HeaderName = HeaderName::from_static("x-envoy-ratelimited");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What one request needs to be sent again: everything but the body.
struct Outgoing {
    method: http::Method,
    authority: String,
    path_and_query: String,
    headers: HeaderMap,
}

/// A routed request's destination: the route's forwarding and where the request was addressed.
pub(crate) struct Target<'a> {
    /// The forwarding action.
    pub forward: &'a Forward,
    /// The route that matched.
    pub route: &'a Route,
    /// Its virtual host.
    pub vh: &'a VirtualHost,
    /// The request's host, as sent (with any port).
    pub authority: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
}

pub(crate) async fn forward(
    parts: Parts,
    body: Incoming,
    target: Target<'_>,
    snapshot: &Snapshot,
    ctx: &Ctx,
) -> Response<ProxyBody> {
    let Target {
        forward: f,
        route,
        vh,
        authority,
        scheme,
    } = target;
    let (cluster_name, cluster_ops) = match &f.clusters {
        Clusters::One(name) => (name.as_str(), None),
        Clusters::Weighted(list) => match proxy_route::pick_weighted(list, fastrand::u64(..)) {
            Some(c) => (c.name.as_str(), Some(&c.headers)),
            None => return response(503, ""),
        },
    };
    let Some(cluster) = snapshot.clusters.get(cluster_name).cloned() else {
        ctx.manager.stats.no_cluster.inc();
        return response(503, "");
    };

    let hash = request_hash(
        &f.hash,
        &parts.headers,
        parts.uri.query(),
        ctx.downstream.peer,
    );
    let mut headers = parts.headers;
    headers::strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    if let Some(ops) = cluster_ops {
        headers::apply(ops, &mut headers, true);
    }
    headers::apply(&route.headers, &mut headers, true);
    if !headers.contains_key(&FORWARDED_PROTO) {
        headers.insert(
            FORWARDED_PROTO,
            HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }),
        );
    }
    if !headers.contains_key(&REQUEST_ID)
        && let Ok(v) = HeaderValue::from_str(&request_id())
    {
        headers.insert(REQUEST_ID, v);
    }
    if ctx.manager.config.use_remote_address
        && let Ok(v) = HeaderValue::from_str(&ctx.downstream.peer.ip().to_string())
    {
        headers.append(FORWARDED_FOR, v);
    }
    if let Some(t) = f.timeout
        && let Ok(v) = HeaderValue::from_str(&t.as_millis().to_string())
    {
        headers.insert(EXPECTED_TIMEOUT, v);
    }
    let path = parts.uri.path();
    let path = match (&f.prefix_rewrite, &route.matcher.path) {
        (Some(new), PathMatch::Prefix(old)) => match path.get(old.len()..) {
            Some(rest) if path.len() >= old.len() => format!("{new}{rest}"),
            _ => path.to_string(),
        },
        _ => path.to_string(),
    };
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let outgoing = Outgoing {
        method: parts.method,
        authority: f
            .host_rewrite
            .clone()
            .unwrap_or_else(|| authority.to_string()),
        path_and_query,
        headers,
    };

    let body = match take_body(body, !f.mirrors.is_empty(), f.retry.is_some()).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(error = %e, "downstream request body failed");
            return response(400, "request body could not be read");
        }
    };
    for mirror in &f.mirrors {
        if fastrand::u32(..proxy_config::route::MILLION) < mirror.per_million
            && let (Some(copy), Some(target)) =
                (body.try_clone(), snapshot.clusters.get(&mirror.cluster))
        {
            spawn_mirror(ctx, target.clone(), &outgoing, copy);
        }
    }

    // The set-filter-state filter's values, the listener's then the route's, when the manager runs it.
    let alpn = (ctx.manager.config.filter_state.as_ref())
        .and_then(|own| own.then(f.filter_state.as_deref()).application_protocols);
    let mut response = attempts(&cluster, &outgoing, body, f, vh, ctx, hash, alpn.as_ref()).await;
    if ctx.manager.hub.is_some() {
        let upstream = crate::UpstreamCluster(cluster_name.to_string());
        response.extensions_mut().insert(upstream);
    }
    headers::strip_hop_by_hop(response.headers_mut());
    if let Some(ops) = cluster_ops {
        headers::apply(ops, response.headers_mut(), false);
    }
    response
}

/// The request's hash for consistent-hash balancing: its policies' inputs combined in order, stopping after a
/// terminal one that was present; `None` when no input was present (any host then, as in Envoy).
fn request_hash(
    policies: &[HashPolicy],
    headers: &HeaderMap,
    query: Option<&str>,
    peer: std::net::SocketAddr,
) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let value: Option<String> = match &p.input {
            HashInput::Header(name) => {
                let values: Vec<&str> = headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                (!values.is_empty()).then(|| values.join(","))
            }
            HashInput::Cookie { name, .. } => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string()),
            HashInput::SourceIp => Some(peer.ip().to_string()),
            HashInput::Query(name) => query.and_then(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.to_string())
            }),
        };
        if let Some(value) = value {
            let h = proxy_balance::hash_bytes(value.as_bytes());
            hash = Some(hash.map_or(h, |old| old.rotate_left(1) ^ h));
            if p.terminal {
                break;
            }
        }
    }
    hash
}

/// The body to send: empty; held whole before sending when mirrors need a copy and it is small; else
/// streamed, a copy kept for retries when the route retries.
async fn take_body(body: Incoming, mirrors: bool, retries: bool) -> Result<Body, hyper::Error> {
    if body.is_end_stream() {
        return Ok(Body::Empty);
    }
    let small = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_BUFFERED_BODY);
    if !(mirrors && small) {
        let recording = retries.then(|| Recording::new(RETRY_BUFFER_LIMIT));
        return Ok(Body::Streaming(body, recording));
    }
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    let data = if bytes.is_empty() {
        VecDeque::new()
    } else {
        VecDeque::from([bytes])
    };
    Ok(Body::Full(data, trailers))
}

/// The bodies of successive attempts: copies of a body held whole, or the streamed body once and then its
/// recording, when it was streamed to its end within the retry buffer.
struct Bodies {
    copyable: Option<Body>,
    first: Option<Body>,
    recording: Option<Arc<Recording>>,
}

impl Bodies {
    fn new(body: Body) -> Bodies {
        if body.try_clone().is_some() {
            return Bodies {
                copyable: Some(body),
                first: None,
                recording: None,
            };
        }
        let recording = match &body {
            Body::Streaming(_, recording) => recording.clone(),
            _ => None,
        };
        Bodies {
            copyable: None,
            first: Some(body),
            recording,
        }
    }

    /// The body for the next attempt, if one can be sent.
    fn next(&mut self) -> Option<Body> {
        if let Some(body) = &self.copyable {
            return body.try_clone();
        }
        if let Some(body) = self.first.take() {
            return Some(body);
        }
        self.recording.as_ref()?.replay()
    }

    /// Whether another attempt can have a body.
    fn again(&self) -> bool {
        self.copyable.is_some()
            || self.first.is_some()
            || self.recording.as_ref().is_some_and(|r| r.replayable())
    }
}

/// Sends `outgoing` with `body` until a response is final: retried as the route's policy says, each attempt
/// within the per-try timeout and all within the route's timeout; over connections offering `alpn` when
/// given.
#[expect(
    clippy::too_many_arguments,
    reason = "one request's forwarding, each argument read by every attempt"
)]
async fn attempts(
    cluster: &Arc<Cluster>,
    outgoing: &Outgoing,
    body: Body,
    f: &Forward,
    vh: &VirtualHost,
    ctx: &Ctx,
    hash: Option<u64>,
    alpn: Option<&proxy_balance::Alpn>,
) -> Response<ProxyBody> {
    let deadline = f.timeout.map(|t| Instant::now() + t);
    let policy = f.retry.as_ref();
    let max_attempts = 1 + policy.map_or(0, |p| p.num_retries);
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut bodies = Bodies::new(body);
    let mut _permit = None;
    let mut attempt = 1u32;
    loop {
        let Some(this_body) = bodies.next() else {
            return response(503, "upstream request body could not be sent again");
        };
        let avoid_tried = policy.is_some_and(|p| p.other_hosts);
        let attempts_to_pick = policy.map_or(1, |p| p.host_selection_attempts);
        let host = match cluster.choose(ctx.downstream.original_dst, hash, attempts_to_pick, |h| {
            avoid_tried && tried.iter().any(|t| t.address == h.address)
        }) {
            Ok(h) => h,
            Err(e) => return failure(&e),
        };
        tried.push(host.clone());
        let request = upstream_request(
            outgoing,
            this_body,
            cluster.config().protocol,
            attempt,
            vh.attempt_count_header,
        );
        let per_try = policy.and_then(|p| p.per_try_timeout);
        let budget = match (per_try, deadline) {
            (Some(t), Some(d)) => Some((Instant::now() + t).min(d)),
            (Some(t), None) => Some(Instant::now() + t),
            (None, d) => d,
        };
        let started = Instant::now();
        let sent = cluster.send_offering(&host, request, alpn);
        let outcome = match budget {
            Some(at) => match tokio::time::timeout_at(at, sent).await {
                Ok(r) => Outcome::Sent(r),
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    cluster.record(&host, HostOutcome::LocalFailure);
                    cluster.stats().rq_timeout.inc();
                    ctx.manager.stats.rq_timeout.inc();
                    return response(504, "upstream request timeout");
                }
                Err(_) => {
                    cluster.stats().rq_per_try_timeout.inc();
                    Outcome::PerTryTimeout
                }
            },
            None => Outcome::Sent(sent.await),
        };
        match &outcome {
            Outcome::Sent(Ok(r)) => {
                cluster.stats().rq_time.record(started.elapsed());
                cluster.record(&host, HostOutcome::Status(r.status().as_u16()))
            }
            Outcome::Sent(Err(Error::Overflow(_) | Error::NoHost)) => {}
            Outcome::Sent(Err(_)) | Outcome::PerTryTimeout => {
                cluster.record(&host, HostOutcome::LocalFailure)
            }
        }
        let retriable = match (&outcome, policy) {
            (_, None) => false,
            (Outcome::PerTryTimeout, Some(p)) => {
                p.on.server_error || p.on.gateway_error || p.on.reset
            }
            (Outcome::Sent(Ok(r)), Some(p)) => {
                retriable_response(p, r.status().as_u16(), r.headers())
            }
            (Outcome::Sent(Err(e)), Some(p)) => retriable_error(p, e),
        };
        let can_retry = retriable
            && attempt < max_attempts
            && bodies.again()
            && deadline.is_none_or(|d| Instant::now() < d);
        let permit = if can_retry {
            cluster.retry_permit()
        } else {
            None
        };
        if permit.is_none() {
            return match outcome {
                Outcome::Sent(Ok(r)) => {
                    cluster.stats().response(r.status().as_u16());
                    r.map(ProxyBody::Upstream)
                }
                Outcome::Sent(Err(e)) => failure(&e),
                Outcome::PerTryTimeout => response(504, "upstream request timeout"),
            };
        }
        if let Outcome::Sent(Ok(r)) = &outcome {
            cluster.stats().response(r.status().as_u16());
        }
        drop(outcome);
        _permit = permit;
        let wait = backoff(policy, attempt);
        match deadline {
            Some(d) if Instant::now() + wait >= d => {
                tokio::time::sleep_until(d).await;
                cluster.stats().rq_timeout.inc();
                ctx.manager.stats.rq_timeout.inc();
                return response(504, "upstream request timeout");
            }
            _ => tokio::time::sleep(wait).await,
        }
        attempt += 1;
    }
}

#[expect(
    clippy::large_enum_variant,
    reason = "a value on the stack of one attempt, never stored or moved in bulk"
)]
enum Outcome {
    Sent(Result<Response<proxy_balance::ResponseBody>, Error>),
    PerTryTimeout,
}

/// Envoy's fully jittered exponential backoff: uniform in [0, base × 2^(n-1)], capped at the maximum.
fn backoff(policy: Option<&RetryPolicy>, attempt: u32) -> Duration {
    let Some(p) = policy else {
        return Duration::ZERO;
    };
    let (base, max) = p.backoff;
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(..=nanos))
}

fn retriable_response(p: &RetryPolicy, status: u16, headers: &HeaderMap) -> bool {
    (p.on.server_error && status >= 500)
        || (p.on.gateway_error && matches!(status, 502..=504))
        || (p.on.retriable_4xx && status == 409)
        || (p.on.status_codes && p.status_codes.contains(&status))
        || (p.on.rate_limited && headers.contains_key(&RATE_LIMITED))
        || (!p.on.grpc.is_empty()
            && headers
                .get(&GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|code| p.on.grpc.contains(&code)))
}

fn retriable_error(p: &RetryPolicy, e: &Error) -> bool {
    let any_failure = p.on.server_error || p.on.gateway_error;
    match e {
        Error::ConnectFailure(_) => {
            any_failure || p.on.connect_failure || p.on.reset || p.on.reset_before_request
        }
        Error::Reset(_) => any_failure || p.on.reset,
        Error::RefusedStream => any_failure || p.on.reset || p.on.refused_stream,
        Error::Overflow(_) | Error::NoHost => false,
    }
}

/// Envoy's local reply for a request that got no upstream response.
fn failure(e: &Error) -> Response<ProxyBody> {
    match e {
        Error::NoHost => response(503, "no healthy upstream"),
        Error::Overflow(_) => {
            let mut r = response(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            );
            r.headers_mut()
                .insert(OVERLOADED, HeaderValue::from_static("true"));
            r
        }
        Error::ConnectFailure(_) => response(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        Error::Reset(_) | Error::RefusedStream => response(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
        ),
    }
}

fn upstream_request(
    o: &Outgoing,
    body: Body,
    protocol: Protocol,
    attempt: u32,
    count_attempts: bool,
) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = o.method.clone();
    *request.headers_mut() = o.headers.clone();
    match protocol {
        Protocol::Http2 => {
            *request.version_mut() = Version::HTTP_2;
            *request.uri_mut() =
                Uri::try_from(format!("http://{}{}", o.authority, o.path_and_query))
                    .unwrap_or_default();
        }
        Protocol::Http1 => {
            *request.version_mut() = Version::HTTP_11;
            *request.uri_mut() = Uri::try_from(o.path_and_query.as_str()).unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&o.authority) {
                request.headers_mut().insert(header::HOST, v);
            }
        }
    }
    if count_attempts {
        request
            .headers_mut()
            .insert(ATTEMPT_COUNT, HeaderValue::from(attempt));
    }
    request
}

fn spawn_mirror(ctx: &Ctx, cluster: Arc<Cluster>, o: &Outgoing, body: Body) {
    let Some(slot) = ctx.manager.mirror_slot() else {
        return;
    };
    // Envoy's shadow requests carry the host with "-shadow" appended.
    let (host, port) = crate::local::split_port(&o.authority);
    let authority = match port {
        Some(p) => format!("{host}-shadow:{p}"),
        None => format!("{host}-shadow"),
    };
    let copy = Outgoing {
        method: o.method.clone(),
        authority,
        path_and_query: o.path_and_query.clone(),
        headers: o.headers.clone(),
    };
    let original_dst = ctx.downstream.original_dst;
    tokio::spawn(async move {
        let _slot = slot;
        let Ok(host) = cluster.choose(original_dst, None, 1, |_| false) else {
            return;
        };
        let request = upstream_request(&copy, body, cluster.config().protocol, 1, false);
        if let Ok(response) = cluster.send(&host, request).await {
            cluster.stats().response(response.status().as_u16());
            // Read to the end so the connection can be reused.
            let _ = response.into_body().collect().await;
        }
    });
}

/// A random request id in UUID v4 form.
fn request_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}
