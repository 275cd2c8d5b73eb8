//! One blocking HTTP/1.1 GET with `Connection: close`, for readiness (pilot's, a proxy's and the hub's admin
//! `/ready`, the first request that makes it through a proxy) and admin reads (`/stats`, `/metrics`) — never
//! on the measured path.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long [`get`] waits for the whole response.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status and body (as text).
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded (chunked framing is not undone).
    pub body: String,
}

/// GETs `path` from `addr` with `Host: host`, waiting up to 5 s for the response; `None` if the connection
/// or the read fails.
pub fn get(addr: SocketAddr, path: &str, host: &str) -> Option<Reply> {
    get_within(addr, path, host, READ_TIMEOUT)
}

/// [`get`], waiting up to `read_timeout` for the response.
pub fn get_within(
    addr: SocketAddr,
    path: &str,
    host: &str,
    read_timeout: Duration,
) -> Option<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_string());
    Some(Reply { status, body })
}
