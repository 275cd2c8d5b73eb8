//! Upstream connections of one host: HTTP/1.1 connections kept idle between requests, or one multiplexed
//! HTTP/2 connection; each counted against the cluster's connection limit, with requests waiting (pending)
//! for a connection up to the cluster's pending limit.
//!
//! A request whose route overrides the ALPN list of a TLS cluster (`envoy.network.application_protocols`)
//! goes over connections of a pool of its own for that list, as Envoy keys its pools by the transport socket
//! options a request shares with its upstream: a connection whose handshake offered one list never carries a
//! request of another (the server chose its filter chain by it).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_config::cluster::Protocol;

use crate::connect::Alpn;
use crate::{Body, Error, Shared};

/// HTTP/2 flow-control windows upstream (Envoy's defaults are larger still: 256 MiB).
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// The most idle HTTP/1.1 connections kept per host.
const MAX_IDLE_PER_HOST: usize = 256;

/// The most ALPN lists a host keeps pools for; a request with yet another list gets a connection of its own,
/// closed after it (pilot sends two lists at most).
const MAX_ALPN_POOLS: usize = 8;

/// The connections of one host.
#[derive(Debug)]
pub(crate) struct Pool {
    protocol: Protocol,
    idle: Mutex<Vec<Http1Conn>>,
    http2: tokio::sync::Mutex<Option<http2::SendRequest<Body>>>,
    /// The ALPN list its connections offer instead of the cluster's, for the pools of overrides.
    alpn: Option<Alpn>,
    /// The host's pools for requests overriding the cluster's ALPN list, one per list.
    by_alpn: Mutex<Vec<Arc<Pool>>>,
}

/// An HTTP/1.1 connection of a pool.
#[derive(Debug)]
pub(crate) struct Http1Conn {
    /// Sends its requests.
    pub(crate) sender: http1::SendRequest<Body>,
    opened: Instant,
    last_used: Instant,
    /// The requests it has carried.
    pub(crate) requests: u32,
}

/// A connection checked out for one request.
pub(crate) enum Checked {
    Http1(Http1Conn),
    Http2(http2::SendRequest<Body>),
}

impl Pool {
    pub(crate) fn new(protocol: Protocol) -> Pool {
        Pool::offering(protocol, None)
    }

    fn offering(protocol: Protocol, alpn: Option<Alpn>) -> Pool {
        Pool {
            protocol,
            idle: Mutex::new(Vec::new()),
            http2: tokio::sync::Mutex::new(None),
            alpn,
            by_alpn: Mutex::new(Vec::new()),
        }
    }

    /// The pool of connections offering `alpn` (made on first use; past [`MAX_ALPN_POOLS`] lists, a pool
    /// for this one request).
    pub(crate) fn for_alpn(&self, alpn: &Alpn) -> Arc<Pool> {
        let mut pools = self.by_alpn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pools.iter().find(|p| p.alpn.as_ref() == Some(alpn)) {
            return p.clone();
        }
        let pool = Arc::new(Pool::offering(self.protocol, Some(alpn.clone())));
        if pools.len() < MAX_ALPN_POOLS {
            pools.push(pool.clone());
        }
        pool
    }

    /// Takes back `conn` after its request: kept idle for the next one unless it closed, has carried the
    /// cluster's most requests per connection, or the host keeps [`MAX_IDLE_PER_HOST`] already.
    pub(crate) fn give_back(&self, mut conn: Http1Conn, shared: &Shared) {
        let spent = shared
            .http
            .max_requests_per_connection
            .is_some_and(|max| conn.requests >= max);
        if !conn.sender.is_closed() && !spent {
            conn.last_used = Instant::now();
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_PER_HOST {
                idle.push(conn);
            }
        }
    }
}

/// A connection of `pool` to `address` for one request: an idle or new HTTP/1.1 one, or the host's
/// HTTP/2 one.
pub(crate) async fn checkout(
    address: SocketAddr,
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Result<Checked, Error> {
    match pool.protocol {
        Protocol::Http2 => checkout_http2(address, pool, shared)
            .await
            .map(Checked::Http2),
        Protocol::Http1 => checkout_http1(address, pool, shared)
            .await
            .map(Checked::Http1),
    }
}

async fn checkout_http1(
    address: SocketAddr,
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Result<Http1Conn, Error> {
    let mut waited = false;
    loop {
        let released = shared.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        loop {
            let conn = pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(mut conn) = conn else { break };
            let expired = shared
                .http
                .idle_timeout
                .is_some_and(|t| conn.last_used.elapsed() >= t)
                || shared
                    .http
                    .max_connection_duration
                    .is_some_and(|t| conn.opened.elapsed() >= t);
            if conn.sender.is_closed() || expired {
                continue;
            }
            if conn.sender.ready().await.is_ok() {
                return Ok(conn);
            }
        }
        if shared.try_acquire_connection() {
            let (sender, opened) = connect(address, pool.alpn.as_ref(), shared, |io| async move {
                let (sender, conn) = http1::handshake(io).await?;
                Ok((sender, conn))
            })
            .await?;
            return Ok(Http1Conn {
                sender,
                opened,
                last_used: opened,
                requests: 0,
            });
        }
        if !waited {
            shared.stats.cx_overflow.inc();
        }
        // Wait for a connection of the cluster to come back or close, within the pending limit.
        let _pending = shared.pending()?;
        waited = true;
        released.await;
    }
}

async fn checkout_http2(
    address: SocketAddr,
    pool: &Pool,
    shared: &Arc<Shared>,
) -> Result<http2::SendRequest<Body>, Error> {
    let mut slot = pool.http2.lock().await;
    if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
        return Ok(sender.clone());
    }
    *slot = None;
    if !shared.try_acquire_connection() {
        shared.stats.cx_overflow.inc();
        return Err(Error::Overflow("max_connections"));
    }
    let (sender, _) = connect(address, pool.alpn.as_ref(), shared, |io| async move {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // Fixed, large windows: h2 refuses a peer sending many small DATA frames past half the connection
        // window unread ("too_many_data_frames"), and gRPC streams of small messages are exactly that.
        builder
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        let (sender, conn) = builder.handshake(io).await?;
        Ok((sender, conn))
    })
    .await?;
    *slot = Some(sender.clone());
    Ok(sender)
}

/// Opens a connection to `address` within the connect timeout, hands it to `handshake`, and runs the
/// connection's driver until it ends, counting it in the cluster's connections. The caller has acquired a
/// connection slot; it is released when the connection ends or fails to open.
async fn connect<S, F, D>(
    address: SocketAddr,
    alpn: Option<&Alpn>,
    shared: &Arc<Shared>,
    handshake: impl FnOnce(TokioIo<crate::Io>) -> F,
) -> Result<(S, Instant), Error>
where
    F: Future<Output = Result<(S, D), hyper::Error>>,
    D: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    let slot = ConnectionSlot(shared.clone());
    let stream = crate::connect::connect(address, alpn, shared).await?;
    let (sender, driver) = handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::Reset(e.to_string()))?;
    shared.stats.cx_active.inc();
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!(%address, error = %e, "upstream connection ended");
        }
        slot.0.stats.cx_active.dec();
        drop(slot);
    });
    Ok((sender, Instant::now()))
}

/// A connection slot of the cluster, given back (and waiters woken) when dropped.
struct ConnectionSlot(Arc<Shared>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        self.0.released.notify_waiters();
    }
}
