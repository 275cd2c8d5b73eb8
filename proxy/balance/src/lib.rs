//! Clusters at run time: their hosts (from the cluster itself or from EDS), load balancing, circuit breakers
//! and upstream connection pools, with Envoy's cluster stats.
//!
//! A [`Cluster`] outlives configuration updates that do not change it: an EDS update swaps its host set and
//! keeps the connections of hosts still present; a changed Cluster resource makes a new one, and the old one
//! finishes the requests it has.

mod body;
mod connect;
pub mod dns;
mod exchange;
pub mod grpc;
mod hash;
mod host;
mod host_set;
mod lb;
mod outlier;
mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use proxy_config::cluster::{self as config, Discovery, HttpOptions, Limits};
use proxy_config::endpoint::Locality;
use proxy_stats::{Counter, Gauge, Histogram, Scope, Stats};
use tokio::sync::Notify;

pub use body::{Body, Recording};
pub use connect::{Alpn, Io, set_upstream_mark};
pub use exchange::ResponseBody;
pub use hash::hash_bytes;
pub use host::Host;
pub use host_set::HostSet;
pub use outlier::Outcome;

/// The most original-destination hosts a cluster keeps (their pools included).
const MAX_ORIGINAL_DST_HOSTS: usize = 4096;

/// Why a request could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A circuit breaker is open (which limit).
    #[error("circuit breaker open: {0}")]
    Overflow(&'static str),
    /// The cluster has no host to send to.
    #[error("no healthy upstream")]
    NoHost,
    /// The connection could not be made.
    #[error("upstream connect error: {0}")]
    ConnectFailure(String),
    /// The connection or stream was reset before a response.
    #[error("upstream reset before response: {0}")]
    Reset(String),
    /// The HTTP/2 stream was refused.
    #[error("upstream refused the stream")]
    RefusedStream,
}

/// A cluster's stats (Envoy's names), held so the data path only adds.
#[derive(Debug, Clone)]
pub struct ClusterStats {
    /// `upstream_cx_total`.
    pub cx_total: Counter,
    /// `upstream_cx_active`.
    pub cx_active: Gauge,
    /// `upstream_cx_connect_fail`.
    pub cx_connect_fail: Counter,
    /// `upstream_cx_connect_timeout`.
    pub cx_connect_timeout: Counter,
    /// `ssl.handshake`: TLS handshakes completed with hosts.
    pub ssl_handshake: Counter,
    /// `ssl.connection_error`: TLS handshakes that failed.
    pub ssl_connection_error: Counter,
    /// `ssl.fail_verify_san`: hosts refused because no SAN matched.
    pub ssl_fail_verify_san: Counter,
    /// `upstream_cx_overflow`.
    pub cx_overflow: Counter,
    /// `upstream_rq_total`.
    pub rq_total: Counter,
    /// `upstream_rq_active`.
    pub rq_active: Gauge,
    /// `upstream_rq_pending_total`.
    pub rq_pending_total: Counter,
    /// `upstream_rq_pending_active`.
    pub rq_pending_active: Gauge,
    /// `upstream_rq_pending_overflow` (pending or request limit reached).
    pub rq_pending_overflow: Counter,
    /// `upstream_rq_retry`.
    pub rq_retry: Counter,
    /// `upstream_rq_retry_overflow`.
    pub rq_retry_overflow: Counter,
    /// `upstream_rq_timeout`.
    pub rq_timeout: Counter,
    /// `upstream_rq_per_try_timeout`.
    pub rq_per_try_timeout: Counter,
    /// `upstream_cx_none_healthy` … Envoy's `upstream_cx_none_healthy`.
    pub none_healthy: Counter,
    /// `upstream_rq_1xx` … `upstream_rq_5xx`.
    classes: [Counter; 5],
    /// `upstream_rq_completed`.
    pub rq_completed: Counter,
    /// `upstream_rq_time`: from sending an attempt to its response's headers (Envoy measures to the
    /// response's end).
    pub rq_time: Histogram,
    /// `update_failure`: failed resolutions of a DNS cluster's names.
    pub update_failure: Counter,
    stats: Arc<Stats>,
    scope: Scope,
    /// `upstream_rq_100` … `upstream_rq_599`, registered on first use.
    codes: Box<[std::sync::OnceLock<Counter>]>,
}

impl ClusterStats {
    fn new(stats: &Arc<Stats>, name: &str) -> ClusterStats {
        let scope = Scope::Cluster(name.to_string());
        let c = |n: &str| stats.counter(&scope, n);
        let g = |n: &str| stats.gauge(&scope, n);
        ClusterStats {
            cx_total: c("upstream_cx_total"),
            cx_active: g("upstream_cx_active"),
            cx_connect_fail: c("upstream_cx_connect_fail"),
            cx_connect_timeout: c("upstream_cx_connect_timeout"),
            ssl_handshake: c("ssl.handshake"),
            ssl_connection_error: c("ssl.connection_error"),
            ssl_fail_verify_san: c("ssl.fail_verify_san"),
            cx_overflow: c("upstream_cx_overflow"),
            rq_total: c("upstream_rq_total"),
            rq_active: g("upstream_rq_active"),
            rq_pending_total: c("upstream_rq_pending_total"),
            rq_pending_active: g("upstream_rq_pending_active"),
            rq_pending_overflow: c("upstream_rq_pending_overflow"),
            rq_retry: c("upstream_rq_retry"),
            rq_retry_overflow: c("upstream_rq_retry_overflow"),
            rq_timeout: c("upstream_rq_timeout"),
            rq_per_try_timeout: c("upstream_rq_per_try_timeout"),
            none_healthy: c("upstream_cx_none_healthy"),
            classes: [1, 2, 3, 4, 5].map(|k| c(&format!("upstream_rq_{k}xx"))),
            rq_completed: c("upstream_rq_completed"),
            rq_time: stats.histogram(&scope, "upstream_rq_time"),
            update_failure: c("update_failure"),
            stats: stats.clone(),
            scope,
            codes: (100..600).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }

    /// Counts a response status (`upstream_rq_NNN`, `upstream_rq_Nxx`, `upstream_rq_completed`).
    pub fn response(&self, status: u16) {
        if let Some(class) = self.classes.get(usize::from(status / 100).wrapping_sub(1)) {
            class.inc();
        }
        // Status codes are bounded (100-599), so per-code stats are too; each is looked up in the registry
        // once, not on every response.
        if let Some(slot) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.codes.get(i))
        {
            slot.get_or_init(|| {
                self.stats
                    .counter(&self.scope, &format!("upstream_rq_{status}"))
            })
            .inc();
        }
        self.rq_completed.inc();
    }
}

/// What the cluster's hosts and pools share: limits, live counts, stats.
#[derive(Debug)]
pub(crate) struct Shared {
    limits: Limits,
    connect_timeout: Duration,
    http: HttpOptions,
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    /// Woken when a connection comes back to a pool or closes.
    released: Notify,
    stats: ClusterStats,
    /// Whether the cluster originates TLS; then `tls` holds its client configuration once its secrets came.
    originates_tls: bool,
    tls: RwLock<Option<Arc<rustls::ClientConfig>>>,
    /// The SNI sent (none when empty).
    sni: String,
    /// The source address of its connections.
    bind: Option<std::net::IpAddr>,
}

impl Shared {
    fn try_acquire_connection(&self) -> bool {
        acquire(&self.connections, self.limits.max_connections)
    }

    fn pending(self: &Arc<Self>) -> Result<Pending, Error> {
        if !acquire(&self.pending, self.limits.max_pending_requests) {
            self.stats.rq_pending_overflow.inc();
            return Err(Error::Overflow("max_pending_requests"));
        }
        self.stats.rq_pending_total.inc();
        self.stats.rq_pending_active.inc();
        Ok(Pending(self.clone()))
    }
}

fn acquire(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

struct Pending(Arc<Shared>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
        self.0.stats.rq_pending_active.dec();
    }
}

/// A request counted against the cluster's request limit and its host's load until it ends.
#[derive(Debug)]
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    host: Arc<Host>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.requests.fetch_sub(1, Ordering::AcqRel);
        self.shared.stats.rq_active.dec();
        self.host.end();
    }
}

/// A retry counted against the cluster's retry limit until it ends.
#[derive(Debug)]
pub struct RetryPermit(Arc<Shared>);

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A cluster at run time.
#[derive(Debug)]
pub struct Cluster {
    config: config::Cluster,
    hosts: RwLock<Arc<HostSet>>,
    original_dst: Mutex<HashMap<SocketAddr, Arc<Host>>>,
    cursor: lb::Cursor,
    shared: Arc<Shared>,
    detector: Option<outlier::Detector>,
}

impl Cluster {
    /// A cluster for `config`, its stats registered in `stats`. STATIC hosts are set now; EDS ones come with
    /// [`Cluster::set_endpoints`].
    pub fn new(config: config::Cluster, stats: &Arc<Stats>) -> Cluster {
        let shared = Arc::new(Shared {
            limits: config.limits,
            connect_timeout: config.connect_timeout,
            http: config.http,
            connections: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            retries: AtomicU32::new(0),
            released: Notify::new(),
            stats: ClusterStats::new(stats, &config.name),
            originates_tls: config.tls.is_some(),
            tls: RwLock::new(None),
            sni: config
                .tls
                .as_ref()
                .map(|t| t.sni.clone())
                .unwrap_or_default(),
            bind: config.bind,
        });
        let cluster = Cluster {
            hosts: RwLock::new(Arc::new(HostSet::default())),
            original_dst: Mutex::new(HashMap::new()),
            cursor: lb::Cursor::default(),
            shared,
            detector: config
                .outlier
                .map(|o| outlier::Detector::new(o, stats, &config.name)),
            config,
        };
        if let Discovery::Static(localities) = &cluster.config.discovery {
            let localities = localities.clone();
            cluster.set_endpoints(&localities);
        }
        cluster
    }

    /// Its configuration.
    pub fn config(&self) -> &config::Cluster {
        &self.config
    }

    /// Its stats.
    pub fn stats(&self) -> &ClusterStats {
        &self.shared.stats
    }

    fn shape(&self) -> host_set::Shape {
        host_set::Shape {
            lb: self.config.lb,
            panic_threshold: self.config.panic_threshold,
        }
    }

    /// Replaces its hosts, keeping the connections (and outlier state) of those still present.
    pub fn set_endpoints(&self, localities: &[Locality]) {
        let protocol = self.config.protocol;
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        let new_pool = || pool::Pool::new(protocol);
        *hosts = Arc::new(HostSet::new(localities, &hosts, new_pool, self.shape()));
        self.shared
            .stats
            .stats
            .gauge(&self.shared.stats.scope, "membership_total")
            .set(hosts.all().len() as i64);
        self.shared
            .stats
            .stats
            .gauge(&self.shared.stats.scope, "membership_healthy")
            .set(hosts.all().iter().filter(|h| h.healthy).count() as i64);
    }

    /// Sets the TLS client configuration (built from the cluster's context and the secrets held); `None`
    /// while its secrets have not come, when connections fail.
    pub fn set_tls(&self, config: Option<Arc<rustls::ClientConfig>>) {
        *self
            .shared
            .tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Its hosts now.
    pub fn hosts(&self) -> Arc<HostSet> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Builds the host set again from the same hosts (after an ejection or a return).
    fn regroup(&self) {
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        *hosts = Arc::new(HostSet::from_hosts(hosts.all().to_vec(), self.shape()));
    }

    /// Records what an attempt to `host` came to, for outlier detection.
    pub fn record(&self, host: &Arc<Host>, outcome: Outcome) {
        if let Some(detector) = &self.detector
            && detector.record(host, &self.hosts(), outcome)
        {
            self.regroup();
        }
    }

    /// Chooses a host: for ORIGINAL_DST clusters the connection's original destination, else by the cluster's
    /// load balancing (by `hash` for consistent hashing), trying `attempts` times to find one `avoid` does not
    /// reject.
    pub fn choose(
        &self,
        original_dst: Option<SocketAddr>,
        hash: Option<u64>,
        attempts: u32,
        avoid: impl Fn(&Host) -> bool,
    ) -> Result<Arc<Host>, Error> {
        if let Some(detector) = &self.detector
            && detector.review(&self.hosts())
        {
            self.regroup();
        }
        let chosen = if matches!(self.config.discovery, Discovery::OriginalDst) {
            original_dst.map(|a| self.original_dst_host(a))
        } else {
            let hosts = self.hosts();
            lb::pick(self.config.lb, &hosts, &self.cursor, hash, attempts, avoid)
        };
        chosen.ok_or_else(|| {
            self.shared.stats.none_healthy.inc();
            Error::NoHost
        })
    }

    fn original_dst_host(&self, address: SocketAddr) -> Arc<Host> {
        let mut hosts = self
            .original_dst
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = hosts.get(&address) {
            return h.clone();
        }
        if hosts.len() >= MAX_ORIGINAL_DST_HOSTS {
            // Forget hosts nobody is using (their idle connections close with them).
            hosts.retain(|_, h| Arc::strong_count(h) > 1);
        }
        let host = Arc::new(Host::new(
            address,
            1,
            true,
            pool::Pool::new(self.config.protocol),
        ));
        if hosts.len() < MAX_ORIGINAL_DST_HOSTS {
            hosts.insert(address, host.clone());
        }
        host
    }

    /// Sends an HTTP request to `host` (its URI's authority is kept for `:authority`/`Host`), counting it
    /// against the request limit; the response body keeps the request counted until it ends.
    pub async fn send(
        &self,
        host: &Arc<Host>,
        request: http::Request<Body>,
    ) -> Result<http::Response<ResponseBody>, Error> {
        self.send_offering(host, request, None).await
    }

    /// [`Cluster::send`], over a connection whose TLS handshake offered `alpn` instead of the cluster's ALPN
    /// list when given (the filter state's `envoy.network.application_protocols`); connections offering
    /// one list are pooled apart from the others. Plain-text clusters ignore it.
    pub async fn send_offering(
        &self,
        host: &Arc<Host>,
        request: http::Request<Body>,
        alpn: Option<&Alpn>,
    ) -> Result<http::Response<ResponseBody>, Error> {
        let shared = &self.shared;
        if !acquire(&shared.requests, shared.limits.max_requests) {
            shared.stats.rq_pending_overflow.inc();
            return Err(Error::Overflow("max_requests"));
        }
        host.begin();
        shared.stats.rq_total.inc();
        shared.stats.rq_active.inc();
        let in_flight = InFlight {
            shared: shared.clone(),
            host: host.clone(),
        };
        exchange::send(host, shared, request, in_flight, alpn).await
    }

    /// A permit for one retry, or `None` (counted) when the retry limit is reached.
    pub fn retry_permit(&self) -> Option<RetryPermit> {
        if acquire(&self.shared.retries, self.shared.limits.max_retries) {
            self.shared.stats.rq_retry.inc();
            Some(RetryPermit(self.shared.clone()))
        } else {
            self.shared.stats.rq_retry_overflow.inc();
            None
        }
    }

    /// Opens a TCP connection to `host` (for the TCP proxy), counted in the cluster's connection stats and
    /// limit; the slot is held until the returned guard drops.
    pub async fn connect(&self, host: &Arc<Host>) -> Result<(Io, ConnectionGuard), Error> {
        if !self.shared.try_acquire_connection() {
            self.shared.stats.cx_overflow.inc();
            return Err(Error::Overflow("max_connections"));
        }
        let guard = ConnectionGuard(self.shared.clone());
        let stream = connect::connect(host.address, None, &self.shared).await?;
        self.shared.stats.cx_active.inc();
        Ok((stream, guard))
    }
}

/// A TCP proxy connection's slot in its cluster.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
        self.0.stats.cx_active.dec();
        self.0.released.notify_waiters();
    }
}
