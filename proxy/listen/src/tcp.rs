//! `tcp_proxy`: a connection's bytes to a host of a (weighted) cluster and back.

use std::sync::Arc;

use proxy_config::listener::TcpProxy;
use proxy_state::Snapshot;
use proxy_stats::{Counter, Gauge, Scope, Stats};

/// A TCP proxy's stats (`tcp.PREFIX.…`).
#[derive(Debug, Clone)]
pub(crate) struct TcpStats {
    cx_total: Counter,
    cx_active: Gauge,
    no_route: Counter,
    rx_bytes: Counter,
    tx_bytes: Counter,
}

impl TcpStats {
    pub(crate) fn new(stats: &Stats, prefix: &str) -> TcpStats {
        let scope = Scope::Tcp(prefix.to_string());
        TcpStats {
            cx_total: stats.counter(&scope, "downstream_cx_total"),
            cx_active: stats.gauge(&scope, "downstream_cx_active"),
            no_route: stats.counter(&scope, "downstream_cx_no_route"),
            rx_bytes: stats.counter(&scope, "downstream_cx_rx_bytes_total"),
            tx_bytes: stats.counter(&scope, "downstream_cx_tx_bytes_total"),
        }
    }
}

/// Proxies `downstream` to a host of `config`'s cluster until either side closes; the bytes received from
/// the client and sent to it.
pub(crate) async fn proxy<I>(
    mut downstream: I,
    original_dst: Option<std::net::SocketAddr>,
    config: &TcpProxy,
    stats: &TcpStats,
    snapshot: &Arc<Snapshot>,
) -> (u64, u64)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut carried = (0, 0);
    stats.cx_total.inc();
    stats.cx_active.inc();
    let total: u64 = config.clusters.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut point = fastrand::u64(..total.max(1));
    let name = config.clusters.iter().find(|(_, w)| {
        let w = u64::from(*w);
        point < w || {
            point -= w;
            false
        }
    });
    let cluster = name.and_then(|(n, _)| snapshot.clusters.get(n));
    match cluster {
        None => stats.no_route.inc(),
        Some(cluster) => match cluster.choose(original_dst, None, 1, |_| false) {
            Err(e) => {
                tracing::debug!(cluster = %cluster.config().name, error = %e, "no host for a TCP connection")
            }
            Ok(host) => match cluster.connect(&host).await {
                Err(e) => {
                    tracing::debug!(cluster = %cluster.config().name, error = %e, "TCP upstream connect failed")
                }
                Ok((mut upstream, _slot)) => {
                    match tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
                        Ok((rx, tx)) => {
                            stats.rx_bytes.add(rx);
                            stats.tx_bytes.add(tx);
                            carried = (rx, tx);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "TCP proxy connection ended with an error")
                        }
                    }
                }
            },
        },
    }
    stats.cx_active.dec();
    carried
}
