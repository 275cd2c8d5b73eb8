//! HTTP RBAC on real sockets: a connection manager running `[rbac DENY, rbac ALLOW, router]` (pilot's shape
//! for an inbound HTTP chain) in front of an HTTP backend. DENY refuses paths under `/admin`, ALLOW lets only
//! GET through: denied requests are answered `403 RBAC: access denied` by the proxy, and the backend sees only
//! the allowed request. `http.PREFIX.rbac.allowed`/`denied` count each filter's decisions. Over mTLS, the
//! listener's peer identity reaches the filter: `authenticated` matches the client certificate's SPIFFE ID.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_config::cluster::{Cluster, Discovery, HttpOptions, LbPolicy, Limits, Protocol};
use proxy_config::endpoint::{Endpoint, Locality};
use proxy_config::listener::{ChainMatch, Direction, FilterChain, HttpManager, Listener, Network};
use proxy_config::matcher::{StringMatch, StringMatcher};
use proxy_config::rbac::{Action, HttpRbac, Permission, Policy, Principal, Rules};
use proxy_config::route::{
    self, Clusters, Forward, HeaderMatch, HeaderOps, PathMatch, RouteConfig, RouteMatch,
    ValueMatch, VirtualHost,
};
use proxy_config::tls::{Certificate, DownstreamTls, Source, TlsContext, Validation};
use proxy_route::Router;
use proxy_state::Snapshot;
use proxy_stats::Stats;
use proxy_tls::rustls::pki_types::pem::PemObject;
use proxy_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use proxy_tls::rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tls/tests/fixtures");
const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";
/// Longest any one step may take before the test fails (a guard, never waited out on success).
const PATIENCE: Duration = Duration::from_secs(20);
const MANAGER: &str = "inbound_0.0.0.0_9080";

/// A port on 127.0.0.1 held (bound, never listening) so the proxy can bind it and nothing else takes it.
struct HeldPort {
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl HeldPort {
    fn hold() -> HeldPort {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.set_reuseport(true).expect("SO_REUSEPORT");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let addr = socket.local_addr().expect("held address");
        HeldPort {
            _socket: socket,
            addr,
        }
    }
}

/// An HTTP/1.1 backend answering `200 backend` to every request (bodiless ones: the only kind the proxy
/// lets through here) and recording each request line.
async fn http_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_string();
                        record.lock().expect("not poisoned").push(line);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nbackend";
                        if conn.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn backend_cluster(backend: SocketAddr, stats: &Arc<Stats>) -> Arc<proxy_balance::Cluster> {
    let config = Cluster {
        name: "backend".into(),
        discovery: Discovery::Static(vec![Locality {
            name: Default::default(),
            weight: 1,
            endpoints: vec![Endpoint {
                address: backend,
                weight: 1,
                healthy: true,
            }],
        }]),
        connect_timeout: Duration::from_secs(5),
        lb: LbPolicy::RoundRobin,
        limits: Limits::default(),
        protocol: Protocol::Http1,
        http: HttpOptions::default(),
        outlier: None,
        panic_threshold: 50.0,
        bind: None,
        tls: None,
    };
    Arc::new(proxy_balance::Cluster::new(config, stats))
}

/// Every request to the cluster `backend`.
fn routes() -> RouteConfig {
    RouteConfig {
        name: "9080".into(),
        virtual_hosts: vec![VirtualHost {
            name: "inbound|http|9080".into(),
            domains: vec!["*".into()],
            routes: vec![route::Route {
                name: "default".into(),
                matcher: RouteMatch {
                    path: PathMatch::Prefix("/".into()),
                    case_sensitive: true,
                    headers: vec![],
                    query: vec![],
                },
                action: route::Action::Forward(Forward {
                    clusters: Clusters::One("backend".into()),
                    prefix_rewrite: None,
                    host_rewrite: None,
                    timeout: None,
                    retry: None,
                    mirrors: vec![],
                    hash: vec![],
                    filter_state: None,
                }),
                fault: None,
                cors: None,
                headers: HeaderOps::default(),
            }],
            require_tls: false,
            attempt_count_header: false,
        }],
    }
}

fn string(pattern: StringMatch) -> StringMatcher {
    StringMatcher {
        pattern,
        ignore_case: false,
    }
}

/// DENY `url_path` prefix `/admin`, then ALLOW `:method` GET (its counters under `rules_stat_prefix`).
fn filters() -> Vec<HttpRbac> {
    let one = |action, permission| Rules {
        action,
        policies: vec![Policy {
            name: "ns[default]-policy[p]-rule[0]".into(),
            permissions: vec![permission],
            principals: vec![Principal::Any],
        }],
    };
    vec![
        HttpRbac {
            rules_stat_prefix: String::new(),
            rules: Some(one(
                Action::Deny,
                Permission::UrlPath(string(StringMatch::Prefix("/admin".into()))),
            )),
        },
        HttpRbac {
            rules_stat_prefix: "allow".into(),
            rules: Some(one(
                Action::Allow,
                Permission::Header(HeaderMatch {
                    name: ":method".into(),
                    value: ValueMatch::String(string(StringMatch::Exact("GET".into()))),
                    invert: false,
                }),
            )),
        },
    ]
}

fn listener(address: SocketAddr, rbac: Vec<HttpRbac>, tls: Option<DownstreamTls>) -> Arc<Listener> {
    Arc::new(Listener {
        name: "http".into(),
        address,
        bind: true,
        use_original_dst: false,
        original_dst: false,
        tls_inspector: false,
        http_inspector: false,
        tls_inspector_disabled: None,
        http_inspector_disabled: None,
        listener_filters_timeout: None,
        continue_on_timeout: false,
        direction: Direction::Inbound,
        filter_chains: vec![FilterChain {
            name: "http-chain".into(),
            matcher: ChainMatch::default(),
            rbac: vec![],
            hub: None,
            network: Network::Http(HttpManager {
                stat_prefix: MANAGER.into(),
                route_config: "9080".into(),
                rbac,
                hub: None,
                fault: false,
                cors: false,
                filter_state: None,
                use_remote_address: false,
                strip_any_host_port: false,
            }),
            tls,
        }],
        default_chain: None,
    })
}

/// Waits until `condition` holds, checking again as soon as the runtime has run other tasks for a moment.
async fn wait_for(condition: impl Fn() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the condition held in time");
}

/// Sends one HTTP/1.1 request on a new plain connection (closing it after) and returns the status and body.
async fn request(to: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let conn = TcpStream::connect(to).await.expect("connect");
    request_on(conn, method, path).await
}

/// Sends one HTTP/1.1 request on `conn`, closing it after, and returns the status and body.
async fn request_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    method: &str,
    path: &str,
) -> (u16, String) {
    tokio::time::timeout(PATIENCE, async {
        let body = if method == "POST" { "data" } else { "" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: reviews:9080\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        // A TLS peer may close without close_notify once the response is out; what was read counts.
        let _ = conn.read_to_end(&mut answer).await;
        let answer = String::from_utf8(answer).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_string())
    })
    .await
    .expect("answered in time")
}

/// `snapshot` with `listeners` and the route configuration `9080`.
fn with_listeners(mut snapshot: Snapshot, listeners: Vec<Arc<Listener>>) -> Arc<Snapshot> {
    snapshot.listeners = listeners
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect::<BTreeMap<_, _>>();
    snapshot.routers = HashMap::from([("9080".to_string(), Arc::new(Router::new(routes())))]);
    Arc::new(snapshot)
}

/// Runs the listeners of `snapshot` until the returned sender is dropped; returns once all are bound.
async fn serve(
    snapshot: Snapshot,
    listeners: Vec<Arc<Listener>>,
    stats: &Arc<Stats>,
) -> watch::Sender<bool> {
    let (stop, publish) = serve_updates(snapshot, listeners, stats).await;
    // Holding the publisher keeps the snapshot current for as long as the listeners run.
    tokio::spawn(async move { publish.closed().await });
    stop
}

/// [`serve`], with the publisher of later snapshots.
async fn serve_updates(
    snapshot: Snapshot,
    listeners: Vec<Arc<Listener>>,
    stats: &Arc<Stats>,
) -> (watch::Sender<bool>, watch::Sender<Arc<Snapshot>>) {
    let count = listeners.len() as i64;
    let (publish, snapshots) = watch::channel(with_listeners(snapshot, listeners));
    let (stop, stopped) = watch::channel(false);
    let run_stats = stats.clone();
    // Idle connections are not cut while a test waits on them: only a drain closes them.
    let options = proxy_listen::Options {
        http: proxy_http::Limits {
            header_read_timeout: PATIENCE * 6,
            ..Default::default()
        },
        ..Default::default()
    };
    tokio::spawn(proxy_listen::run(snapshots, run_stats, options, stopped));
    wait_for(|| stats.value("listener_manager.total_listeners_active") == Some(count)).await;
    (stop, publish)
}

/// Sends `GET path` on a kept-alive `conn` and reads the one response: its status.
async fn keep_alive_get(conn: &mut TcpStream, path: &str) -> u16 {
    tokio::time::timeout(PATIENCE, async {
        let head = format!("GET {path} HTTP/1.1\r\nhost: reviews:9080\r\n\r\n");
        conn.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the connection closed before answering");
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a content-length");
                if body.len() >= length {
                    return head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("a status");
                }
            }
        }
    })
    .await
    .expect("answered in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_policy_holds_for_the_next_request_of_an_open_connection() {
    let stats = Stats::new();
    let (backend, _) = http_backend().await;
    let held = HeldPort::hold();
    let snapshot = || Snapshot {
        clusters: HashMap::from([("backend".to_string(), backend_cluster(backend, &stats))]),
        ..Default::default()
    };
    let (_stop, publish) =
        serve_updates(snapshot(), vec![listener(held.addr, vec![], None)], &stats).await;
    let mut open = TcpStream::connect(held.addr).await.expect("connect");
    assert_eq!(
        keep_alive_get(&mut open, "/admin").await,
        200,
        "no policy yet"
    );

    // The listener now denies /admin: the open connection is drained (closed, nothing in flight) ...
    publish.send_replace(with_listeners(
        snapshot(),
        vec![listener(held.addr, filters(), None)],
    ));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, open.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the connection under the old chains was closed: {closed:?}"
    );
    // ... and the client's next connection is under the new policy.
    let (status, _) = request(held.addr, "GET", "/admin").await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_requests_get_403_and_only_the_allowed_one_reaches_the_backend() {
    let stats = Stats::new();
    let (backend, seen) = http_backend().await;
    let held = HeldPort::hold();
    let snapshot = Snapshot {
        clusters: HashMap::from([("backend".to_string(), backend_cluster(backend, &stats))]),
        ..Default::default()
    };
    let _stop = serve(snapshot, vec![listener(held.addr, filters(), None)], &stats).await;

    // Denied by the DENY filter (its path), whatever the method.
    let (status, body) = request(held.addr, "GET", "/admin").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let (status, body) = request(held.addr, "GET", "/admin/users?x=1").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    // Denied by the ALLOW filter: not a GET.
    let (status, body) = request(held.addr, "POST", "/").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    // Allowed by both: forwarded.
    let (status, body) = request(held.addr, "GET", "/?q=/admin").await;
    assert_eq!((status, body.as_str()), (200, "backend"));

    assert_eq!(
        *seen.lock().expect("not poisoned"),
        vec!["GET /?q=/admin HTTP/1.1".to_string()],
        "the backend saw only the allowed request"
    );
    assert_eq!(stats.value("cluster.backend.upstream_rq_total"), Some(1));
    // Envoy's names: the DENY filter denied two and let two by; the ALLOW filter (prefix `allow`) saw those.
    let value = |name: &str| stats.value(&format!("http.{MANAGER}.{name}"));
    assert_eq!(value("rbac.denied"), Some(2));
    assert_eq!(value("rbac.allowed"), Some(2));
    assert_eq!(value("rbac.allow.allowed"), Some(1));
    assert_eq!(value("rbac.allow.denied"), Some(1));
    assert_eq!(value("rbac.shadow_allowed"), Some(0));
    assert_eq!(value("downstream_rq_4xx"), Some(3));
    let prom = stats.prometheus();
    for line in [
        "envoy_http_rbac_denied{envoy_http_conn_manager_prefix=\"inbound_0.0.0.0_9080\"} 2\n",
        "envoy_http_rbac_allowed{envoy_rbac_http_prefix=\"allow\",envoy_http_conn_manager_prefix=\"inbound_0.0.0.0_9080\"} 1\n",
    ] {
        assert!(prom.contains(line), "{line} missing from\n{prom}");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("a fixture (see fixtures/gen.sh)")
}

fn server_tls() -> DownstreamTls {
    DownstreamTls {
        context: TlsContext {
            certificate: Some(Certificate::Pair {
                chain: Source::Inline(fixture("server.pem")),
                key: Source::Inline(fixture("server.key")),
            }),
            validation: Some(Validation {
                roots: Source::Inline(fixture("ca.pem")),
                sans: Vec::new(),
            }),
            alpn: Vec::new(),
        },
        require_client_certificate: true,
    }
}

/// An mTLS connection to `to` presenting the fixture certificate `client` (`sleep`, `intruder`).
async fn mtls(client: &str, to: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&fixture("ca.pem")).expect("CA"))
        .expect("a root");
    let chain = vec![
        CertificateDer::from_pem_slice(&fixture(&format!("{client}.pem"))).expect("certificate"),
    ];
    let key = PrivateKeyDer::from_pem_slice(&fixture(&format!("{client}.key"))).expect("key");
    let provider = Arc::new(proxy_tls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(to).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("a name");
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_matches_the_client_certificate_of_an_mtls_chain() {
    let stats = Stats::new();
    let (backend, seen) = http_backend().await;
    let (tls, plain) = (HeldPort::hold(), HeldPort::hold());
    let allow_sleep = || {
        vec![HttpRbac {
            rules_stat_prefix: String::new(),
            rules: Some(Rules {
                action: Action::Allow,
                policies: vec![Policy {
                    name: "allow-sleep".into(),
                    permissions: vec![Permission::Any],
                    principals: vec![Principal::Authenticated(Some(string(StringMatch::Exact(
                        SLEEP.into(),
                    ))))],
                }],
            }),
        }]
    };
    let tls_listener = listener(tls.addr, allow_sleep(), Some(server_tls()));
    let mut plain_listener = (*listener(plain.addr, allow_sleep(), None)).clone();
    plain_listener.name = "plain".into();
    let mut snapshot = Snapshot {
        clusters: HashMap::from([("backend".to_string(), backend_cluster(backend, &stats))]),
        ..Default::default()
    };
    let server = proxy_tls::server_config(&server_tls(), &BTreeMap::new(), Default::default())
        .expect("server TLS");
    snapshot
        .downstream_tls
        .insert(tls_listener.name.clone(), vec![Some(server)]);
    let _stop = serve(
        snapshot,
        vec![tls_listener, Arc::new(plain_listener)],
        &stats,
    )
    .await;

    let (status, body) = request_on(mtls("sleep", tls.addr).await, "GET", "/sleep").await;
    assert_eq!((status, body.as_str()), (200, "backend"));
    let (status, body) = request_on(mtls("intruder", tls.addr).await, "GET", "/intruder").await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    // Plain text is never authenticated.
    let (status, _) = request(plain.addr, "GET", "/plain").await;
    assert_eq!(status, 403);
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        vec!["GET /sleep HTTP/1.1".to_string()],
        "only sleep's request reached the backend"
    );
    assert_eq!(
        stats.value(&format!("http.{MANAGER}.rbac.allowed")),
        Some(1)
    );
    assert_eq!(stats.value(&format!("http.{MANAGER}.rbac.denied")), Some(2));
}
