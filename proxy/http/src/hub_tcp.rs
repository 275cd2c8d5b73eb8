//! The hub filter of a TCP chain (`sextant.filters.network.mixer`, before `tcp_proxy`): a connection is
//! checked when it opens (a refusal closes it before any upstream connection) and reported when it opens
//! and when it closes, with its bytes each way and its duration (`istio_tcp_*` from the default Telemetry).

use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy_check::Verdict;
use proxy_config::mixer::HubFilter;
use proxy_report::Reporter;
use sextant_attributes::{Bag, Span, Value, attr};

use crate::bag::{now, put};
use crate::hub::{Connection, Filter, Hubs};

/// A TCP chain's hub filter.
#[derive(Debug)]
pub struct TcpHub(Filter);

/// A connection the filter let through: reported again when it closes.
#[derive(Debug)]
pub struct TcpConnection {
    bag: Bag,
    started: Instant,
    reporter: Option<Arc<Reporter>>,
}

impl Hubs {
    /// The clients a TCP chain's hub filter uses.
    pub fn tcp(&self, config: &HubFilter) -> TcpHub {
        TcpHub(self.filter(config))
    }
}

impl TcpHub {
    /// Checks (and reports) a connection opening: `None` when the hub (or, without it, the failure policy)
    /// refuses it.
    pub async fn open(
        &self,
        seen: &Connection<'_>,
        snapshot: &proxy_state::Snapshot,
    ) -> Option<TcpConnection> {
        let filter = &self.0;
        let mut bag = (*filter.config.attributes).clone();
        let s = |v: &str| Value::String(v.to_string());
        crate::hub::connection_attributes(&mut bag, &filter.config, seen);
        put(&mut bag, attr!("context.protocol", String), s("tcp"));
        put(
            &mut bag,
            attr!("connection.id", String),
            s(&format!("{:016x}", fastrand::u64(..))),
        );
        let time = now();
        put(
            &mut bag,
            attr!("context.time", Timestamp),
            Value::Timestamp(time),
        );
        if let Some(checker) = &filter.checker {
            let cluster = snapshot.clusters.get(&filter.config.cluster);
            let verdict = checker
                .check(
                    cluster,
                    &bag,
                    filter.config.check_timeout,
                    filter.config.on_failure,
                    None,
                )
                .await;
            if let Verdict::Refuse(r) = verdict {
                tracing::debug!(peer = %seen.peer, status = r.status, "TCP connection refused by the hub");
                return None;
            }
        }
        let connection = TcpConnection {
            bag,
            started: Instant::now(),
            reporter: filter.reporter.clone(),
        };
        connection.report("open", 0, 0);
        Some(connection)
    }
}

impl TcpConnection {
    /// Reports the connection closed, having carried `received` bytes from the client and `sent` to it.
    pub fn close(self, received: u64, sent: u64) {
        self.report("close", received, sent);
    }

    fn report(&self, event: &str, received: u64, sent: u64) {
        let Some(reporter) = &self.reporter else {
            return;
        };
        let mut bag = self.bag.clone();
        let bytes = |n: u64| Value::Int64(i64::try_from(n).unwrap_or(i64::MAX));
        put(
            &mut bag,
            attr!("connection.event", String),
            Value::String(event.to_string()),
        );
        put(
            &mut bag,
            attr!("connection.received.bytes", Int64),
            bytes(received),
        );
        put(&mut bag, attr!("connection.sent.bytes", Int64), bytes(sent));
        put(
            &mut bag,
            attr!("connection.received.bytes_total", Int64),
            bytes(received),
        );
        put(
            &mut bag,
            attr!("connection.sent.bytes_total", Int64),
            bytes(sent),
        );
        put(
            &mut bag,
            attr!("connection.duration", Duration),
            Value::Duration(span_of(self.started.elapsed())),
        );
        put(
            &mut bag,
            attr!("context.time", Timestamp),
            Value::Timestamp(now()),
        );
        reporter.report(bag);
    }
}

fn span_of(d: Duration) -> Span {
    Span {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
