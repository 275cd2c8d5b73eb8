//! One request's exchange with a host: sent over a connection checked out of the host's pool (or of its
//! pool for the request's ALPN list, [`crate::pool`]), tried again on another connection when a pooled one
//! gives it back unsent, and answered with a response body that gives an HTTP/1.1 connection back to its
//! pool when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::connect::Alpn;
use crate::host::Host;
use crate::pool::{Checked, Http1Conn, Pool, checkout};
use crate::{Body, Error, InFlight, Shared};

/// The pool a request's connections come from and go back to.
#[derive(Debug, Clone)]
enum PoolRef {
    /// The host's own: the cluster's ALPN.
    Host(Arc<Host>),
    /// The host's pool for an ALPN list, or one for a single request.
    Alpn(Arc<Pool>),
}

impl PoolRef {
    fn get(&self) -> &Pool {
        match self {
            PoolRef::Host(h) => &h.pool,
            PoolRef::Alpn(p) => p,
        }
    }
}

/// Sends `request` to `host`, over a pooled connection or a new one; with `alpn` (on a cluster originating
/// TLS), over one whose handshake offered that list.
pub(crate) async fn send(
    host: &Arc<Host>,
    shared: &Arc<Shared>,
    mut request: http::Request<Body>,
    in_flight: InFlight,
    alpn: Option<&Alpn>,
) -> Result<http::Response<ResponseBody>, Error> {
    let mut in_flight = Some(in_flight);
    // Plain text has no ALPN: the override changes nothing there, as in Envoy.
    let pool = match alpn.filter(|_| shared.originates_tls) {
        Some(alpn) => PoolRef::Alpn(host.pool.for_alpn(alpn)),
        None => PoolRef::Host(host.clone()),
    };
    // A pooled HTTP/1.1 connection the server closed while idle gives the request back unsent: try another.
    for _ in 0..3 {
        let checked = checkout(host.address, pool.get(), shared).await?;
        match checked {
            Checked::Http1(mut conn) => match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    conn.requests += 1;
                    return Ok(wrap(response, &pool, shared, Some(conn), in_flight.take()));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if conn.requests > 0 => request = unsent,
                    _ => return Err(Error::Reset(e.into_error().to_string())),
                },
            },
            Checked::Http2(mut sender) => match sender.try_send_request(request).await {
                Ok(response) => return Ok(wrap(response, &pool, shared, None, in_flight.take())),
                Err(mut e) => {
                    let refused = is_refused(e.error());
                    match e.take_message() {
                        Some(unsent) if e.error().is_closed() || e.error().is_canceled() => {
                            request = unsent
                        }
                        _ if refused => return Err(Error::RefusedStream),
                        _ => return Err(Error::Reset(e.into_error().to_string())),
                    }
                }
            },
        }
    }
    Err(Error::Reset(
        "the upstream closed three connections in a row before taking the request".into(),
    ))
}

fn is_refused(e: &hyper::Error) -> bool {
    // hyper exposes h2's reason only through the error's description.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("REFUSED_STREAM") || s.to_string().contains("refused stream") {
            return true;
        }
        source = s.source();
    }
    false
}

fn wrap(
    response: http::Response<Incoming>,
    pool: &PoolRef,
    shared: &Arc<Shared>,
    conn: Option<Http1Conn>,
    in_flight: Option<InFlight>,
) -> http::Response<ResponseBody> {
    let guard = Returning {
        pool: pool.clone(),
        shared: shared.clone(),
        conn,
        _in_flight: in_flight,
    };
    response.map(|inner| ResponseBody {
        inner,
        guard: Some(guard),
    })
}

/// A response body from upstream. When it ends or is dropped, its HTTP/1.1 connection goes back to the pool.
#[derive(Debug)]
pub struct ResponseBody {
    inner: Incoming,
    guard: Option<Returning>,
}

#[derive(Debug)]
struct Returning {
    pool: PoolRef,
    shared: Arc<Shared>,
    conn: Option<Http1Conn>,
    _in_flight: Option<InFlight>,
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.get().give_back(conn, &self.shared);
        }
        self.shared.released.notify_waiters();
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            // Ended: the connection is reusable now, not when the downstream side lets go of the body.
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
