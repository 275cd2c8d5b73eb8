//! The listener filters that read a new connection before a chain takes it: the TLS inspector, then, on a
//! connection that is not TLS, the HTTP inspector. Both peek (the bytes stay in the socket) within one
//! deadline, `listener_filters_timeout`, as Envoy's listener filters share one timer.

use std::time::Duration;

use proxy_config::listener::Listener;
use proxy_stats::{Counter, Scope, Stats};
use proxy_tls::Hello;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::http_inspector::{FIRST_PEEK_BYTES, Found, MAX_INSPECT_BYTES, Sniffer};

/// How often the socket is peeked again while what it holds does not tell yet (a peek returns at once
/// while any bytes wait, so waiting for more is polling).
const PEEK_AGAIN: Duration = Duration::from_millis(2);

/// What the listener filters found: what filter chain matches read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    /// The SNI of a ClientHello, lower case.
    pub server_name: Option<String>,
    /// `tls` or `raw_buffer`.
    pub transport: &'static str,
    /// The ALPN protocols of a ClientHello, or the protocol the HTTP inspector found.
    pub application_protocols: Vec<String>,
}

impl Detected {
    /// Plain text, nothing more known.
    pub(crate) fn plain() -> Detected {
        Detected {
            server_name: None,
            transport: "raw_buffer",
            application_protocols: Vec::new(),
        }
    }
}

/// Why the listener filters ended the connection instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unfinished {
    /// `listener_filters_timeout` passed.
    TimedOut,
    /// The client closed the connection.
    Closed,
    /// The socket failed.
    Failed,
    /// The HTTP inspector read 64 KiB without the end of a request line.
    TooLong,
}

/// Envoy's stats of listener filters: the listener's (`listener.ADDRESS.…`) and the HTTP inspector's
/// (`http_inspector.…`, process-wide as in Envoy).
#[derive(Debug, Clone)]
pub(crate) struct FilterStats {
    timeout: Counter,
    remote_close: Counter,
    error: Counter,
    http10_found: Counter,
    http11_found: Counter,
    http2_found: Counter,
    http_not_found: Counter,
    read_error: Counter,
}

impl FilterStats {
    pub(crate) fn new(stats: &Stats, listener: &Scope) -> FilterStats {
        let http = |name: &str| stats.counter(&Scope::Server, &format!("http_inspector.{name}"));
        FilterStats {
            timeout: stats.counter(listener, "downstream_pre_cx_timeout"),
            remote_close: stats.counter(listener, "downstream_listener_filter_remote_close"),
            error: stats.counter(listener, "downstream_listener_filter_error"),
            http10_found: http("http10_found"),
            http11_found: http("http11_found"),
            http2_found: http("http2_found"),
            http_not_found: http("http_not_found"),
            read_error: http("read_error"),
        }
    }
}

/// Runs `listener`'s inspectors on `stream` (to `destination_port`: an inspector whose `filter_disabled`
/// matches it is left out): what they found, or `None` when the connection ends here (it closed or failed,
/// the request line ran past 64 KiB, or the filters timed out without `continue_on_listener_filters_timeout`;
/// a timeout with it goes on as plain text, as Envoy's does).
pub(crate) async fn listener_filters(
    stream: &TcpStream,
    listener: &Listener,
    destination_port: u16,
    stats: &FilterStats,
) -> Option<Detected> {
    let runs = |enabled: bool, disabled: &Option<proxy_config::listener::Predicate>| {
        enabled
            && disabled
                .as_ref()
                .is_none_or(|p| !p.matches(destination_port))
    };
    let inspectors = Inspectors {
        tls: runs(listener.tls_inspector, &listener.tls_inspector_disabled),
        http: runs(listener.http_inspector, &listener.http_inspector_disabled),
    };
    if !inspectors.tls && !inspectors.http {
        return Some(Detected::plain());
    }
    let deadline = listener
        .listener_filters_timeout
        .map(|t| Instant::now() + t);
    match inspect(stream, inspectors, deadline, stats).await {
        Ok(detected) => Some(detected),
        Err(Unfinished::TimedOut) => {
            stats.timeout.inc();
            listener.continue_on_timeout.then(Detected::plain)
        }
        Err(Unfinished::Closed) => {
            stats.remote_close.inc();
            None
        }
        Err(Unfinished::Failed) => {
            stats.error.inc();
            None
        }
        Err(Unfinished::TooLong) => {
            stats.read_error.inc();
            None
        }
    }
}

/// The inspectors that run on one connection.
#[derive(Debug, Clone, Copy)]
struct Inspectors {
    tls: bool,
    http: bool,
}

async fn inspect(
    stream: &TcpStream,
    listener: Inspectors,
    deadline: Option<Instant>,
    stats: &FilterStats,
) -> Result<Detected, Unfinished> {
    if listener.tls {
        let max = proxy_tls::MAX_HELLO_BYTES;
        let hello = peek_until(stream, deadline, max, max, proxy_tls::client_hello).await?;
        if let Hello::Tls { sni, alpn } = hello {
            return Ok(Detected {
                server_name: sni,
                transport: "tls",
                application_protocols: alpn,
            });
        }
    }
    let mut detected = Detected::plain();
    if listener.http {
        let mut sniffer = Sniffer::default();
        let found = peek_until(
            stream,
            deadline,
            FIRST_PEEK_BYTES,
            MAX_INSPECT_BYTES,
            |first| sniffer.feed(first),
        )
        .await?;
        match found {
            Found::Http10 => stats.http10_found.inc(),
            Found::Http11 => stats.http11_found.inc(),
            Found::H2c => stats.http2_found.inc(),
            Found::NotHttp => stats.http_not_found.inc(),
            Found::TooLong => return Err(Unfinished::TooLong),
        }
        detected.application_protocols = found
            .application_protocol()
            .map(String::from)
            .into_iter()
            .collect();
    }
    Ok(detected)
}

/// Peeks at `stream` until `decide` answers for the bytes it holds (each time more of them, into a buffer of
/// `first_peek` bytes doubled up to `max` while full; `decide` must answer once given `max` bytes), or
/// `deadline` passes.
async fn peek_until<T>(
    stream: &TcpStream,
    deadline: Option<Instant>,
    first_peek: usize,
    max: usize,
    mut decide: impl FnMut(&[u8]) -> Option<T>,
) -> Result<T, Unfinished> {
    let mut buf = vec![0u8; first_peek.min(max)];
    let mut seen = 0;
    loop {
        let peeked = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, stream.peek(&mut buf))
                .await
                .map_err(|_| Unfinished::TimedOut)?,
            None => stream.peek(&mut buf).await,
        };
        let n = peeked.map_err(|_| Unfinished::Failed)?;
        if n == 0 {
            return Err(Unfinished::Closed);
        }
        if n > seen {
            seen = n;
            if let Some(answer) = decide(&buf[..n]) {
                return Ok(answer);
            }
            if n == buf.len() && n < max {
                // More may be waiting already: peek again at once into a larger buffer.
                buf.resize((2 * n).min(max), 0);
                continue;
            }
        }
        // The peek returns the same bytes until more arrive.
        if deadline.is_some_and(|d| Instant::now() + PEEK_AGAIN >= d) {
            return Err(Unfinished::TimedOut);
        }
        tokio::time::sleep(PEEK_AGAIN).await;
    }
}

#[cfg(test)]
mod tests;
