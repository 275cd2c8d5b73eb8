//! One blocking HTTP/1.1 GET with `Connection: close`, for readiness (admin `/ready`, the first request that
//! makes it through a proxy) and admin reads (`/stats`) — never on the measured path.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status and body (as text).
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, lossily decoded (chunked framing is not undone).
    pub body: String,
}

/// GETs `path` from `addr` with `Host: host`; `None` if the connection or the read fails.
pub fn get(addr: SocketAddr, path: &str, host: &str) -> Option<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
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

/// The sum of the counters in an admin `/stats` text body (`name: value` lines) whose name contains `part`.
pub fn sum_stats(body: &str, part: &str) -> u64 {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| name.contains(part))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_name_and_histograms_skipped() {
        let body = "cluster.a.update_rejected: 1\nlistener.x.update_rejected: 2\n\
                    cluster.a.upstream_cx_total: 7\nhttp.x.downstream_rq_time: P0(nan,1) P25(nan,2)\n";
        assert_eq!(sum_stats(body, "update_rejected"), 3);
        assert_eq!(sum_stats(body, "downstream_rq_time"), 0);
    }
}
