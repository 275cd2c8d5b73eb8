//! The HTTP connection manager (Envoy's `http_connection_manager`): serves HTTP/1.1 and HTTP/2 on a downstream
//! connection, decides each request by its RBAC filters (`rbac`) and the hub filter (`hub`: Check before,
//! Report after), routes it by the route configuration its
//! listener names, runs the fault and CORS filters as the route says, and forwards it (`forward`), or answers it itself (redirects, direct responses,
//! errors, in Envoy's local-reply form).
//!
//! Each request reads the snapshot current when it starts and keeps it to its end. Bounded by construction:
//! header size and count (hyper refuses past them with 431), a header read timeout (slow clients), and a
//! graceful drain when the listener goes away.

mod bag;
mod body;
mod forward;
mod headers;
mod hub;
mod hub_tcp;
mod idle;
mod local;
pub mod rbac;
mod trace;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use proxy_config::listener::HttpManager;
use proxy_config::rbac::PeerIdentity;
use proxy_config::route::{Action, MILLION, PathMatch};
use proxy_state::Snapshots;
use proxy_stats::{Counter, Gauge, Histogram, Scope, Stats};
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::ProxyBody;
pub use hub::Connection;
pub use hub::{
    DESTINATION_NAMESPACE, DESTINATION_WORKLOAD, Hubs, SOURCE_NAMESPACE, SOURCE_VERSION,
    SOURCE_WORKLOAD,
};
pub use hub_tcp::{TcpConnection, TcpHub};

/// The upstream cluster a forwarded response came from (a response extension, for the hub's Report).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamCluster(pub(crate) String);

/// Time limits on downstream connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest wait for a request's headers once the connection or request started (slow clients).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes either way this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}
/// Most headers in a request (Envoy's default).
pub const MAX_HEADERS: usize = 100;
/// Largest request head, in bytes (Envoy's default `max_request_headers_kb`: 60).
pub const MAX_HEADER_BYTES: usize = 60 * 1024;

/// A connection manager's stats (`http.PREFIX.…`).
#[derive(Debug, Clone)]
pub struct ManagerStats {
    /// `downstream_cx_total`.
    pub cx_total: Counter,
    /// `downstream_cx_active`.
    pub cx_active: Gauge,
    /// `downstream_rq_total`.
    pub rq_total: Counter,
    /// `downstream_rq_active`.
    pub rq_active: Gauge,
    /// `downstream_rq_1xx` … `downstream_rq_5xx`.
    pub classes: [Counter; 5],
    /// `no_route`.
    pub no_route: Counter,
    /// `no_cluster`.
    pub no_cluster: Counter,
    /// `rq_timeout` (route timeouts).
    pub rq_timeout: Counter,
    /// `fault.aborts_injected`.
    pub aborts_injected: Counter,
    /// `fault.delays_injected`.
    pub delays_injected: Counter,
    /// `tracing.mirror_dropped`: mirrored requests dropped because too many were in flight.
    pub mirror_dropped: Counter,
    /// `downstream_cx_protocol_error`: malformed requests and oversized heads (answered 400 or 431).
    pub protocol_error: Counter,
    /// `downstream_rq_header_timeout`: connections closed waiting for a request's headers.
    pub header_timeout: Counter,
    /// `downstream_cx_idle_timeout`: connections closed for idleness.
    pub idle_timeout: Counter,
    /// `downstream_rq_time`: from a request's headers to its response's headers (Envoy measures to the
    /// response's end).
    pub rq_time: Histogram,
}

impl ManagerStats {
    fn new(stats: &Stats, prefix: &str) -> ManagerStats {
        let scope = Scope::Http(prefix.to_string());
        let c = |n: &str| stats.counter(&scope, n);
        ManagerStats {
            cx_total: c("downstream_cx_total"),
            cx_active: stats.gauge(&scope, "downstream_cx_active"),
            rq_total: c("downstream_rq_total"),
            rq_active: stats.gauge(&scope, "downstream_rq_active"),
            classes: [1, 2, 3, 4, 5].map(|k| c(&format!("downstream_rq_{k}xx"))),
            no_route: c("no_route"),
            no_cluster: c("no_cluster"),
            rq_timeout: c("rq_timeout"),
            aborts_injected: c("fault.aborts_injected"),
            delays_injected: c("fault.delays_injected"),
            mirror_dropped: c("mirror_dropped"),
            protocol_error: c("downstream_cx_protocol_error"),
            header_timeout: c("downstream_rq_header_timeout"),
            idle_timeout: c("downstream_cx_idle_timeout"),
            rq_time: stats.histogram(&scope, "downstream_rq_time"),
        }
    }
}

/// One connection manager (one per HTTP filter chain).
#[derive(Debug)]
pub struct Manager {
    config: HttpManager,
    stats: ManagerStats,
    rbac: rbac::Filters,
    hub: Option<hub::Filter>,
    mirrors: Arc<AtomicUsize>,
    limits: Limits,
}

impl Manager {
    /// A manager for `config`, its stats in `stats`, its hub filter's clients from `hubs` (without
    /// them, a hub filter in `config` is left out, with a warning).
    pub fn new(config: HttpManager, stats: &Stats, limits: Limits, hubs: Option<&Hubs>) -> Manager {
        let stats_handles = ManagerStats::new(stats, &config.stat_prefix);
        let rbac = rbac::Filters::new(&config.rbac, &config.stat_prefix, stats);
        let hub = match (&config.hub, hubs) {
            (Some(filter), Some(hubs)) => Some(hubs.filter(filter)),
            (Some(_), None) => {
                tracing::warn!(prefix = %config.stat_prefix, "no hub clients: the hub filter is left out");
                None
            }
            (None, _) => None,
        };
        Manager {
            config,
            stats: stats_handles,
            rbac,
            hub,
            mirrors: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// Its stats.
    pub fn stats(&self) -> &ManagerStats {
        &self.stats
    }

    /// Whether its RBAC filters match the names in a peer certificate (so the listener must read them into
    /// [`Downstream::identity`]).
    pub fn reads_certificates(&self) -> bool {
        self.rbac.reads_certificates() || self.hub.is_some()
    }

    fn mirror_slot(&self) -> Option<MirrorSlot> {
        let taken = self
            .mirrors
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < forward::MAX_MIRRORS_IN_FLIGHT).then_some(n + 1)
            });
        if taken.is_err() {
            self.stats.mirror_dropped.inc();
            return None;
        }
        Some(MirrorSlot(self.mirrors.clone()))
    }
}

struct MirrorSlot(Arc<AtomicUsize>);

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The downstream connection a request came on.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// Where the client meant to connect, for connections redirected to the proxy.
    pub original_dst: Option<SocketAddr>,
    /// Where the connection went: `original_dst`, else the address it arrived on (RBAC's destination).
    pub destination: Option<SocketAddr>,
    /// The SNI the TLS inspector read; empty when none (RBAC's `requested_server_name`).
    pub server_name: Arc<str>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The peer certificate's names on a TLS connection (`None` for plain text); empty unless some RBAC
    /// principal reads them (`Manager::reads_certificates`).
    pub identity: Option<Arc<PeerIdentity>>,
}

struct Ctx {
    manager: Arc<Manager>,
    snapshots: Snapshots,
    downstream: Downstream,
    activity: Arc<idle::Activity>,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `io` until the client closes it or `drain` completes,
/// after which in-flight requests finish and the connection closes gracefully.
pub async fn serve<I>(
    io: I,
    downstream: Downstream,
    manager: Arc<Manager>,
    snapshots: Snapshots,
    drain: impl Future<Output = ()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    manager.stats.cx_total.inc();
    manager.stats.cx_active.inc();
    let ctx_peer = downstream.peer;
    let activity = idle::Activity::new();
    let ctx = Arc::new(Ctx {
        manager: manager.clone(),
        snapshots,
        downstream,
        activity: activity.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(manager.limits.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .max_concurrent_streams(1024)
        // Fixed, large windows, as upstream: many small DATA frames (gRPC streams) stay within h2's budget.
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(16 << 20);
    let service = hyper::service::service_fn(move |request| {
        let ctx = ctx.clone();
        // Boxed: the request's future is large, and hyper moves it into each HTTP/2 stream's task by value
        // (a profile showed 12 % of the proxy's CPU in memcpy without the box).
        Box::pin(async move { Ok::<_, Infallible>(handle(request, &ctx).await) })
    });
    let io = idle::Tracked {
        io,
        activity: activity.clone(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        r = connection.as_mut() => r,
        () = drain => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        _ = activity.idle_for(manager.limits.idle_timeout) => {
            manager.stats.idle_timeout.inc();
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        count_error(&manager.stats, e.as_ref());
        tracing::debug!(peer = %ctx_peer, error = %e, "downstream connection ended with an error");
    }
    manager.stats.cx_active.dec();
}

/// Counts why hyper ended a connection: a malformed or oversized request, or a header timeout.
fn count_error(stats: &ManagerStats, e: &(dyn std::error::Error + 'static)) {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_too_large() {
                stats.protocol_error.inc();
            } else if h.is_timeout() {
                stats.header_timeout.inc();
            }
            return;
        }
        source = s.source();
    }
}

async fn handle(request: Request<Incoming>, ctx: &Ctx) -> Response<ProxyBody> {
    let stats = &ctx.manager.stats;
    stats.rq_total.inc();
    stats.rq_active.inc();
    ctx.activity.in_flight.fetch_add(1, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let response = route(request, ctx).await;
    stats.rq_time.record(started.elapsed());
    ctx.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Some(class) = stats
        .classes
        .get(usize::from(response.status().as_u16() / 100).wrapping_sub(1))
    {
        class.inc();
    }
    stats.rq_active.dec();
    response
}

async fn route(request: Request<Incoming>, ctx: &Ctx) -> Response<ProxyBody> {
    let manager = &ctx.manager;
    let snapshot = ctx.snapshots.borrow().clone();
    let (mut parts, body) = request.into_parts();
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => match parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(h) => h.to_string(),
            None => return local::response(400, "missing host header"),
        },
    };
    let host = if manager.config.strip_any_host_port {
        local::split_port(&authority).0
    } else {
        authority.as_str()
    };
    let scheme = if ctx.downstream.tls { "https" } else { "http" };
    // Envoy's RBAC filters decode before the router: a denied request never reaches routing.
    if !manager.rbac.is_empty() {
        let d = &ctx.downstream;
        let cx = proxy_route::rbac::Context {
            peer: d.peer,
            destination: d.destination,
            server_name: &d.server_name,
            tls: d.identity.as_deref(),
            http: Some(proxy_route::rbac::HttpRequest {
                authority: &authority,
                method: parts.method.as_str(),
                path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                scheme,
                headers: &parts.headers,
            }),
        };
        if !manager.rbac.allow(&cx) {
            tracing::debug!(peer = %d.peer, path = %parts.uri.path(), "request denied by RBAC");
            return local::response(403, rbac::DENIED_BODY);
        }
    }
    let Some(hub) = &manager.hub else {
        return dispatch(parts, body, ctx, &snapshot, &authority, host, scheme).await;
    };
    let d = &ctx.downstream;
    let pending = hub.begin(&hub::Seen {
        parts: &parts,
        authority: &authority,
        scheme,
        connection: hub::Connection {
            peer: d.peer,
            destination: d.destination,
            server_name: &d.server_name,
            peer_uris: d.identity.as_deref().map(|i| i.uri_sans.as_slice()),
        },
    });
    hub.rewrite(&pending, &mut parts.headers);
    let (response, on_response) = match hub.check(&pending, &snapshot, &mut parts.headers).await {
        Ok(on_response) => (
            dispatch(parts, body, ctx, &snapshot, &authority, host, scheme).await,
            on_response,
        ),
        Err(refused) => (refused, http::HeaderMap::new()),
    };
    hub.finish(pending, response, on_response)
}

/// The rest of a request's way once the filters before the router let it through: routing, redirects, CORS,
/// faults, and forwarding.
async fn dispatch(
    parts: http::request::Parts,
    body: Incoming,
    ctx: &Ctx,
    snapshot: &proxy_state::Snapshot,
    authority: &str,
    host: &str,
    scheme: &str,
) -> Response<ProxyBody> {
    let manager = &ctx.manager;
    let Some(router) = snapshot.routers.get(&manager.config.route_config).cloned() else {
        manager.stats.no_route.inc();
        return local::response(404, "");
    };
    let view = proxy_route::Request {
        host,
        method: parts.method.as_str(),
        scheme,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let Some((vh, route)) = router.route(&view) else {
        manager.stats.no_route.inc();
        return local::response(404, "");
    };
    let matched_prefix = match &route.matcher.path {
        PathMatch::Prefix(p) => Some(p.as_str()),
        _ => None,
    };
    if vh.require_tls && !ctx.downstream.tls {
        let to_https = proxy_config::route::Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: None,
            status: 301,
            strip_query: false,
        };
        return local::redirect(
            &to_https,
            scheme,
            authority,
            parts.uri.path(),
            parts.uri.query(),
            None,
        );
    }

    let cors = route.cors.as_ref().filter(|_| manager.config.cors);
    let origin: Option<HeaderValue> = cors.and_then(|c| {
        parts
            .headers
            .get(header::ORIGIN)
            .filter(|o| o.to_str().is_ok_and(|o| local::origin_allowed(c, o)))
            .cloned()
    });
    if let (Some(cors), Some(origin)) = (cors, &origin)
        && parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return local::preflight(cors, origin);
    }

    if manager.config.fault
        && let Some(fault) = &route.fault
    {
        if let Some((delay, share)) = fault.delay
            && chance(share)
        {
            manager.stats.delays_injected.inc();
            tokio::time::sleep(delay).await;
        }
        if let Some((status, share)) = fault.abort
            && chance(share)
        {
            manager.stats.aborts_injected.inc();
            let mut response = local::response(status, "fault filter abort");
            if let (Some(cors), Some(origin)) = (cors, &origin) {
                local::decorate(cors, origin, response.headers_mut());
            }
            return response;
        }
    }

    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let mut response = match &route.action {
        Action::Direct(d) => local::response(d.status, d.body.clone()),
        Action::Redirect(r) => local::redirect(
            r,
            scheme,
            authority,
            &path,
            query.as_deref(),
            matched_prefix,
        ),
        Action::Forward(f) => {
            let target = forward::Target {
                forward: f,
                route,
                vh,
                authority,
                scheme,
            };
            forward::forward(parts, body, target, snapshot, ctx).await
        }
    };
    headers::apply(&route.headers, response.headers_mut(), false);
    if let (Some(cors), Some(origin)) = (cors, &origin) {
        local::decorate(cors, origin, response.headers_mut());
    }
    response
}

/// True with probability `per_million` ÷ 1 000 000.
fn chance(per_million: u32) -> bool {
    per_million >= MILLION || fastrand::u32(..MILLION) < per_million
}
