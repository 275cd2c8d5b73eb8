//! Listeners from LDS: each bound listener accepts connections and hands each to the filter chain that
//! matches it, an HTTP connection manager or a TCP proxy. A capture listener (`use_original_dst`) hands a
//! redirected connection to the listener of its original destination, bound or not. Before a chain is
//! chosen, the listener's filters read what the connection starts with, by peeking (`inspect.rs`): a TLS
//! ClientHello's SNI and ALPN, or on plain text whether it is HTTP (`http_inspector.rs`); the chain is then
//! chosen by destination port, SNI, transport and application protocol as Envoy chooses (`select.rs`). A
//! chain's network RBAC filters (`rbac.rs`) then decide on the connection, after TLS is terminated and
//! before its HTTP connection manager or TCP proxy sees it: a denied connection is closed and never reaches
//! an upstream.
//!
//! Updates never cut requests: a listener whose address is unchanged keeps its socket and serves new
//! connections with the new chains, and its HTTP connections on the chains it had are drained gracefully
//! (in-flight requests finish, then the connection closes, and the client's next requests come on a new
//! connection under the new chains: a changed AuthorizationPolicy or PeerAuthentication holds for every
//! request after the update, as Envoy's drain of an updated listener's connections does; a TCP connection
//! keeps the chain it was accepted on until it closes); a removed listener closes its socket and drains the
//! same way. A flood of connections is bounded by one limit over
//! all listeners, each refusal counted.

mod http_inspector;
mod inspect;
mod rbac;
mod select;
mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use proxy_config::listener::{ChainMatch, Listener, Network};
use proxy_http::{Downstream, Manager};
use proxy_state::{Snapshot, Snapshots};
use proxy_stats::{Counter, Gauge, Scope, Stats};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Limits on what listeners accept, and what their connection managers share.
#[derive(Debug, Clone)]
pub struct Options {
    /// Open downstream connections over all listeners; past it new connections are closed at once.
    pub max_connections: usize,
    /// Time limits on HTTP connections.
    pub http: proxy_http::Limits,
    /// The hub clients of HTTP connection managers with a hub filter (none: such filters are left out).
    pub hubs: Option<proxy_http::Hubs>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_connections: 100_000,
            http: proxy_http::Limits::default(),
            hubs: None,
        }
    }
}

/// A listener prepared for connections: its chains with their managers and stats.
struct Prepared {
    listener: Arc<Listener>,
    chains: Vec<Chain>,
    default: Option<Chain>,
    stats: ListenerStats,
    /// Turned true when an update replaces or removes it: its HTTP connections drain.
    retired: watch::Sender<bool>,
}

struct Chain {
    matcher: ChainMatch,
    /// Its network RBAC filters, which decide before the runner sees the connection.
    rbac: rbac::Filters,
    runner: Runner,
    /// Whether it terminates TLS (its server configuration is in the snapshot).
    tls: bool,
}

enum Runner {
    Http(Arc<Manager>),
    /// A TCP proxy, its stats, and its hub filter.
    Tcp(
        proxy_config::listener::TcpProxy,
        tcp::TcpStats,
        Option<proxy_http::TcpHub>,
    ),
}

impl Chain {
    /// Whether an RBAC principal of its network filters or its HTTP manager's reads peer certificates.
    fn reads_certificates(&self) -> bool {
        self.rbac.reads_certificates()
            || matches!(&self.runner, Runner::Http(m) if m.reads_certificates())
            || matches!(&self.runner, Runner::Tcp(_, _, Some(_)))
    }
}

#[derive(Clone)]
struct ListenerStats {
    cx_total: Counter,
    cx_active: Gauge,
    cx_overflow: Counter,
    no_chain: Counter,
    filters: inspect::FilterStats,
    ssl_handshake: Counter,
    ssl_connection_error: Counter,
    ssl_no_certificate: Counter,
}

/// All listeners, by name and by address.
#[derive(Default)]
struct Table {
    by_name: HashMap<String, Arc<Prepared>>,
    by_address: HashMap<SocketAddr, Arc<Prepared>>,
}

fn prepare(listener: &Arc<Listener>, stats: &Stats, options: &Options) -> Prepared {
    let chain = |c: &proxy_config::listener::FilterChain| Chain {
        matcher: c.matcher.clone(),
        rbac: rbac::Filters::new(&c.rbac, stats),
        tls: c.tls.is_some(),
        runner: match &c.network {
            Network::Http(h) => Runner::Http(Arc::new(Manager::new(
                h.clone(),
                stats,
                options.http,
                options.hubs.as_ref(),
            ))),
            Network::Tcp(t) => Runner::Tcp(
                t.clone(),
                tcp::TcpStats::new(stats, &t.stat_prefix),
                match (&c.hub, &options.hubs) {
                    (Some(filter), Some(hubs)) => Some(hubs.tcp(filter)),
                    _ => None,
                },
            ),
        },
    };
    let scope = Scope::Listener(listener.stat_name());
    Prepared {
        listener: listener.clone(),
        chains: listener.filter_chains.iter().map(chain).collect(),
        default: listener.default_chain.as_ref().map(chain),
        stats: ListenerStats {
            cx_total: stats.counter(&scope, "downstream_cx_total"),
            cx_active: stats.gauge(&scope, "downstream_cx_active"),
            cx_overflow: stats.counter(&scope, "downstream_cx_overflow"),
            no_chain: stats.counter(&scope, "no_filter_chain_match"),
            filters: inspect::FilterStats::new(stats, &scope),
            ssl_handshake: stats.counter(&scope, "ssl.handshake"),
            ssl_connection_error: stats.counter(&scope, "ssl.connection_error"),
            ssl_no_certificate: stats.counter(&scope, "ssl.no_certificate"),
        },
        retired: watch::Sender::new(false),
    }
}

/// One bound listener's accept loop.
struct Running {
    address: SocketAddr,
    /// Turned true to stop accepting and drain the listener's connections.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the listeners of each snapshot until `shutdown` turns true, then drains them all: listeners stop
/// accepting, HTTP connections finish their requests and close, and this returns once no connection is left.
pub async fn run(
    mut snapshots: Snapshots,
    stats: Arc<Stats>,
    options: Options,
    mut shutdown: watch::Receiver<bool>,
) {
    let (table_tx, table_rx) = watch::channel(Arc::new(Table::default()));
    let limit = Arc::new(Semaphore::new(options.max_connections));
    let bind_failures = stats.counter(&Scope::Server, "listener_manager.listener_create_failure");
    let active = stats.gauge(&Scope::Server, "listener_manager.total_listeners_active");
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        // Listeners the update left alone (the same `Arc`) keep their managers, stats handles and mirror
        // budgets; only new or changed ones are prepared again.
        let previous = table_rx.borrow().clone();
        let mut table = Table::default();
        for (name, listener) in &snapshot.listeners {
            let kept = previous
                .by_name
                .get(name)
                .filter(|p| Arc::ptr_eq(&p.listener, listener));
            let prepared = match kept {
                Some(p) => p.clone(),
                None => Arc::new(prepare(listener, &stats, &options)),
            };
            table.by_address.insert(listener.address, prepared.clone());
            table.by_name.insert(name.clone(), prepared);
        }
        // What the update replaced or removed: its connections move to the new chains by draining.
        for (name, old) in &previous.by_name {
            if !table.by_name.get(name).is_some_and(|p| Arc::ptr_eq(p, old)) {
                old.retired.send_replace(true);
            }
        }
        table_tx.send_replace(Arc::new(table));

        // Stop what went away or moved; start what is new.
        running.retain(|name, r| {
            let keep = snapshot.listeners.get(name).is_some_and(|l| l.bind && l.address == r.address);
            if !keep {
                tracing::info!(listener = %name, address = %r.address, "listener removed; draining its connections");
                r.stop.send_replace(true);
            }
            keep
        });
        for (name, listener) in snapshot.listeners.iter().filter(|(_, l)| l.bind) {
            if running.contains_key(name) {
                continue;
            }
            match bind(listener.address) {
                Ok(socket) => {
                    let (stop, stopped) = watch::channel(false);
                    let ctx = AcceptCtx {
                        name: name.clone(),
                        table: table_rx.clone(),
                        snapshots: snapshots.clone(),
                        limit: limit.clone(),
                        stopped,
                    };
                    let task = tokio::spawn(accept(socket, ctx));
                    running.insert(
                        name.clone(),
                        Running {
                            address: listener.address,
                            stop,
                            task,
                        },
                    );
                }
                Err(e) => {
                    bind_failures.inc();
                    tracing::error!(listener = %name, address = %listener.address, error = %e, "cannot bind listener");
                }
            }
        }
        active.set(i64::try_from(running.len()).unwrap_or(i64::MAX));

        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, r) in running.drain() {
        r.stop.send_replace(true);
        let _ = r.task.await;
    }
    // Every connection gives its permit back when it ends: holding them all means none is left.
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    let _ = limit.acquire_many(all).await;
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if address.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

struct AcceptCtx {
    name: String,
    table: watch::Receiver<Arc<Table>>,
    snapshots: Snapshots,
    limit: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

async fn accept(socket: TcpListener, mut ctx: AcceptCtx) {
    loop {
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = ctx.stopped.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: the listener stays; the next accept may succeed.
                tracing::warn!(listener = %ctx.name, error = %e, "accept failed");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Some(prepared) = ctx.table.borrow().by_name.get(&ctx.name).cloned() else {
            continue;
        };
        let Ok(permit) = ctx.limit.clone().try_acquire_owned() else {
            prepared.stats.cx_overflow.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let table = ctx.table.borrow().clone();
        let snapshot = ctx.snapshots.borrow().clone();
        let snapshots = ctx.snapshots.clone();
        let drain = ctx.stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, peer, prepared, &table, snapshot, snapshots, drain).await;
        });
    }
}

/// The original destination of a redirected connection (`SO_ORIGINAL_DST`), if it differs from where it
/// arrived.
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = socket2::SockRef::from(stream);
    let found = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    found.ok()?.as_socket().filter(|a| *a != local)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut prepared: Arc<Prepared>,
    table: &Table,
    snapshot: Arc<Snapshot>,
    snapshots: Snapshots,
    drain: watch::Receiver<bool>,
) {
    let dst = if prepared.listener.original_dst {
        original_dst(&stream)
    } else {
        None
    };
    if prepared.listener.use_original_dst
        && let Some(dst) = dst
    {
        let any = if dst.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        let target = table
            .by_address
            .get(&dst)
            .or_else(|| table.by_address.get(&SocketAddr::new(any, dst.port())));
        if let Some(target) = target.filter(|t| !Arc::ptr_eq(t, &prepared)) {
            prepared = target.clone();
        }
    }
    prepared.stats.cx_total.inc();
    prepared.stats.cx_active.inc();
    let listener = &prepared.listener;
    // Where the connection was going: its original destination when redirected, else where it arrived.
    let destination = dst.or_else(|| stream.local_addr().ok());
    let destination_port = destination.map_or(0, |a| a.port());
    let Some(detected) =
        inspect::listener_filters(&stream, listener, destination_port, &prepared.stats.filters)
            .await
    else {
        prepared.stats.cx_active.dec();
        return;
    };
    let chains: Vec<&Chain> = prepared
        .chains
        .iter()
        .chain(prepared.default.as_ref())
        .collect();
    let connection = select::Connection {
        destination_port,
        detected: &detected,
    };
    let index = select::select_chain(prepared.chains.iter().map(|c| &c.matcher), connection)
        .or(prepared.default.as_ref().map(|_| prepared.chains.len()));
    let Some((index, chain)) = index.and_then(|i| Some((i, *chains.get(i)?))) else {
        prepared.stats.no_chain.inc();
        prepared.stats.cx_active.dec();
        return;
    };
    let facts = rbac::Facts {
        peer,
        destination,
        server_name: detected.server_name.as_deref().unwrap_or(""),
        tls: None,
    };
    let mut retired = prepared.retired.subscribe();
    let mut stopped = drain;
    // Drained when its listener stops or an update retires the chains it was served by.
    let drain = async move {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => {}
            _ = retired.wait_for(|r| *r) => {}
        }
    };
    let run = Run {
        peer,
        dst,
        destination,
        server_name: detected.server_name.as_deref().unwrap_or(""),
        runner: &chain.runner,
        snapshot,
        snapshots,
        drain,
    };
    if !chain.tls {
        if chain.rbac.allow(&facts) {
            run.serve(stream, None).await;
        } else {
            tracing::debug!(%peer, listener = %listener.name, "connection denied by RBAC");
        }
    } else {
        let config = snapshot_tls(&run.snapshot, &listener.name, index);
        match config {
            // Its certificate's secret has not come: the connection cannot be served.
            None => prepared.stats.ssl_connection_error.inc(),
            Some(config) => {
                let accept = async {
                    let start =
                        tokio_rustls::LazyConfigAcceptor::new(Default::default(), stream).await?;
                    let chosen = config.for_client(start.client_hello().alpn());
                    start.into_stream(chosen).await
                };
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(tls)) => {
                        prepared.stats.ssl_handshake.inc();
                        let certificates = tls.get_ref().1.peer_certificates();
                        if certificates.is_none_or(<[_]>::is_empty) {
                            prepared.stats.ssl_no_certificate.inc();
                        }
                        // Only read when some principal (network or HTTP) matches the names in it.
                        let peer_identity = Arc::new(if chain.reads_certificates() {
                            proxy_tls::peer_identity(certificates)
                        } else {
                            proxy_tls::PeerIdentity::default()
                        });
                        let facts = rbac::Facts {
                            tls: Some(&peer_identity),
                            ..facts
                        };
                        if chain.rbac.allow(&facts) {
                            run.serve(tls, Some(peer_identity.clone())).await;
                        } else {
                            tracing::debug!(%peer, listener = %listener.name, "TLS connection denied by RBAC");
                        }
                    }
                    Ok(Err(e)) => {
                        prepared.stats.ssl_connection_error.inc();
                        tracing::debug!(%peer, error = %e, "downstream TLS handshake failed");
                    }
                    Err(_) => prepared.stats.ssl_connection_error.inc(),
                }
            }
        }
    }
    prepared.stats.cx_active.dec();
}

/// The longest a downstream TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn snapshot_tls(snapshot: &Snapshot, listener: &str, chain: usize) -> Option<proxy_tls::ServerTls> {
    snapshot.downstream_tls.get(listener)?.get(chain)?.clone()
}

/// What a chosen chain runs a connection with; `drain` completes when its HTTP connections should drain.
struct Run<'a, D> {
    peer: SocketAddr,
    dst: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    server_name: &'a str,
    runner: &'a Runner,
    snapshot: Arc<Snapshot>,
    snapshots: Snapshots,
    drain: D,
}

impl<D: std::future::Future<Output = ()>> Run<'_, D> {
    /// Runs the chain on `io`; `identity` is the peer's on a connection whose TLS the chain terminated.
    async fn serve<I>(self, io: I, identity: Option<Arc<proxy_tls::PeerIdentity>>)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match self.runner {
            Runner::Http(manager) => {
                let downstream = Downstream {
                    peer: self.peer,
                    original_dst: self.dst,
                    destination: self.destination,
                    server_name: self.server_name.into(),
                    tls: identity.is_some(),
                    identity,
                };
                proxy_http::serve(io, downstream, manager.clone(), self.snapshots, self.drain)
                    .await;
            }
            Runner::Tcp(config, stats, hub) => {
                let connection = match hub {
                    None => None,
                    Some(hub) => {
                        let seen = proxy_http::Connection {
                            peer: self.peer,
                            destination: self.destination,
                            server_name: self.server_name,
                            peer_uris: identity.as_deref().map(|i| i.uri_sans.as_slice()),
                        };
                        match hub.open(&seen, &self.snapshot).await {
                            Some(c) => Some(c),
                            // Refused: closed before any upstream connection.
                            None => return,
                        }
                    }
                };
                let (received, sent) =
                    tcp::proxy(io, self.dst, config, stats, &self.snapshot).await;
                if let Some(c) = connection {
                    c.close(received, sent);
                }
            }
        }
    }
}
