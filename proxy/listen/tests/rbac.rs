//! Network RBAC on real sockets: listeners whose chains run `[rbac DENY, rbac ALLOW, tcp_proxy]` (pilot's
//! shape) in front of an echo backend. An allowed connection reaches the backend; a denied one is closed
//! without the backend ever seeing a connection, and `PREFIX.rbac.allowed`/`denied` count each decision.
//! Over mTLS, `authenticated.principal_name` matches the client certificate's SPIFFE ID (exact and regex).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proxy_config::cluster::{Cluster, Discovery, HttpOptions, LbPolicy, Limits, Protocol};
use proxy_config::endpoint::{Endpoint, Locality};
use proxy_config::listener::{ChainMatch, Direction, FilterChain, Listener, Network, TcpProxy};
use proxy_config::matcher::{StringMatch, StringMatcher};
use proxy_config::rbac::{Action, Cidr, Permission, Policy, Principal, Rbac, Rules};
use proxy_config::tls::{Certificate, DownstreamTls, Source, TlsContext, Validation};
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

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("a fixture (see fixtures/gen.sh)")
}

/// A port on 127.0.0.1 held (bound, never listening, `SO_REUSEADDR`) so the proxy can bind it and nothing
/// else takes it meanwhile.
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

/// An echo server counting the connections it accepted.
async fn echo_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, accepted)
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

/// A snapshot holding the cluster `backend`.
fn with_backend(backend: SocketAddr, stats: &Arc<Stats>) -> Snapshot {
    Snapshot {
        clusters: HashMap::from([("backend".to_string(), backend_cluster(backend, stats))]),
        ..Default::default()
    }
}

fn cidr(address: &str, prefix_len: u8) -> Cidr {
    Cidr {
        address: address.parse().expect("an IP"),
        prefix_len,
    }
}

fn filter(stat_prefix: &str, action: Action, policy: Policy) -> Rbac {
    Rbac {
        stat_prefix: stat_prefix.into(),
        rules: Some(Rules {
            action,
            policies: vec![policy],
        }),
    }
}

fn listener(
    name: &str,
    address: SocketAddr,
    rbac: Vec<Rbac>,
    tls: Option<DownstreamTls>,
) -> Arc<Listener> {
    Arc::new(Listener {
        name: name.into(),
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
            name: format!("{name}-chain"),
            matcher: ChainMatch::default(),
            rbac,
            hub: None,
            network: Network::Tcp(TcpProxy {
                stat_prefix: name.into(),
                clusters: vec![("backend".into(), 1)],
            }),
            tls,
        }],
        default_chain: None,
    })
}

/// Runs the listeners of `snapshot` until the returned sender is dropped or set; returns once all are
/// bound.
async fn serve(
    mut snapshot: Snapshot,
    listeners: Vec<Arc<Listener>>,
    stats: &Arc<Stats>,
) -> watch::Sender<bool> {
    let count = listeners.len() as i64;
    snapshot.listeners = listeners
        .into_iter()
        .map(|l| (l.name.clone(), l))
        .collect::<BTreeMap<_, _>>();
    let (publish, snapshots) = watch::channel(Arc::new(snapshot));
    let (stop, stopped) = watch::channel(false);
    let stats_for_run = stats.clone();
    tokio::spawn(async move {
        // Holding the publisher keeps the snapshot current for as long as the listeners run.
        let _publish = publish;
        proxy_listen::run(snapshots, stats_for_run, Default::default(), stopped).await;
    });
    wait_for(|| stats.value("listener_manager.total_listeners_active") == Some(count)).await;
    stop
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

/// A plain connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Sends `ping` and reads: `Some(echo)` when the bytes came back, `None` when the proxy closed the
/// connection (end of stream or reset) instead.
async fn ping<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S) -> Option<Vec<u8>> {
    tokio::time::timeout(PATIENCE, async move {
        // A write to a connection the proxy already closed may fail; the read tells.
        let _ = conn.write_all(b"ping").await;
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 4 {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        Some(got)
    })
    .await
    .expect("the connection answered or closed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_lets_allowed_connections_reach_the_backend_and_closes_denied_ones_before_it() {
    let stats = Stats::new();
    let (backend, accepted) = echo_backend().await;
    let (held_a, held_b) = (HeldPort::hold(), HeldPort::hold());
    // DENY 127.0.0.3, then ALLOW port A from 127.0.0.0/30 (127.0.0.1–3).
    let chain = || {
        vec![
            filter(
                "deny_policy",
                Action::Deny,
                Policy {
                    name: "deny-3".into(),
                    permissions: vec![Permission::Any],
                    principals: vec![Principal::RemoteIp(cidr("127.0.0.3", 32))],
                },
            ),
            filter(
                "allow_policy",
                Action::Allow,
                Policy {
                    name: "allow-a".into(),
                    permissions: vec![Permission::DestinationPort(held_a.addr.port())],
                    principals: vec![Principal::RemoteIp(cidr("127.0.0.0", 30))],
                },
            ),
        ]
    };
    let snapshot = with_backend(backend, &stats);
    let _stop = serve(
        snapshot,
        vec![
            listener("a", held_a.addr, chain(), None),
            listener("b", held_b.addr, chain(), None),
        ],
        &stats,
    )
    .await;

    // Allowed by both filters: the bytes go to the backend and back.
    let echoed = ping(connect_from([127, 0, 0, 1], held_a.addr).await).await;
    assert_eq!(echoed.as_deref(), Some(&b"ping"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Denied by the DENY filter (its principal), by the ALLOW filter (a principal outside the range), and
    // by the ALLOW filter (another destination port): each closed, the backend never connected to.
    assert_eq!(
        ping(connect_from([127, 0, 0, 3], held_a.addr).await).await,
        None
    );
    assert_eq!(
        ping(connect_from([127, 0, 0, 5], held_a.addr).await).await,
        None
    );
    assert_eq!(
        ping(connect_from([127, 0, 0, 1], held_b.addr).await).await,
        None
    );
    assert_eq!(
        stats.value("cluster.backend.upstream_cx_total"),
        Some(1),
        "no upstream connection for a denied one"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the backend saw only the allowed connection"
    );

    // Envoy's names: the DENY filter allowed three and denied one; the ALLOW filter saw the three it let by.
    let value = |name: &str| stats.value(name);
    assert_eq!(value("deny_policy.rbac.allowed"), Some(3));
    assert_eq!(value("deny_policy.rbac.denied"), Some(1));
    assert_eq!(value("allow_policy.rbac.allowed"), Some(1));
    assert_eq!(value("allow_policy.rbac.denied"), Some(2));
    assert_eq!(value("allow_policy.rbac.shadow_denied"), Some(0));
    let prom = stats.prometheus();
    for line in [
        "envoy_rbac_allowed{envoy_rbac_prefix=\"deny_policy\"} 3\n",
        "envoy_rbac_denied{envoy_rbac_prefix=\"allow_policy\"} 2\n",
    ] {
        assert!(prom.contains(line), "{line} missing from\n{prom}");
    }
    // The tcp_proxy never saw the denied connections.
    assert_eq!(value("tcp.a.downstream_cx_total"), Some(1));
    assert_eq!(value("tcp.b.downstream_cx_total"), Some(0));
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
    let ca = CertificateDer::from_pem_slice(&fixture("ca.pem")).expect("CA");
    roots.add(ca).expect("a root");
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
async fn authenticated_principal_names_match_the_client_certificates_spiffe_id() {
    let stats = Stats::new();
    let (backend, accepted) = echo_backend().await;
    let (exact, regex) = (HeldPort::hold(), HeldPort::hold());
    let allow = |prefix: &str, name: StringMatcher| {
        vec![filter(
            prefix,
            Action::Allow,
            Policy {
                name: "allow-sleep".into(),
                permissions: vec![Permission::Any],
                principals: vec![Principal::Authenticated(Some(name))],
            },
        )]
    };
    let by_exact = StringMatcher {
        pattern: StringMatch::Exact(SLEEP.into()),
        ignore_case: false,
    };
    let by_regex = StringMatcher::full_regex(r"spiffe://cluster\.local/ns/default/sa/[a-z]+")
        .expect("a valid regex");
    let listeners = vec![
        listener(
            "exact",
            exact.addr,
            allow("exact.", by_exact),
            Some(server_tls()),
        ),
        listener(
            "regex",
            regex.addr,
            allow("regex.", by_regex),
            Some(server_tls()),
        ),
    ];
    let mut snapshot = with_backend(backend, &stats);
    for l in &listeners {
        let tls = l.filter_chains[0].tls.as_ref().expect("a TLS chain");
        let config = proxy_tls::server_config(tls, &BTreeMap::new(), Default::default())
            .expect("server TLS");
        snapshot
            .downstream_tls
            .insert(l.name.clone(), vec![Some(config)]);
    }
    let _stop = serve(snapshot, listeners, &stats).await;

    for to in [exact.addr, regex.addr] {
        let echoed = ping(mtls("sleep", to).await).await;
        assert_eq!(echoed.as_deref(), Some(&b"ping"[..]), "sleep to {to}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    for to in [exact.addr, regex.addr] {
        assert_eq!(
            ping(mtls("intruder", to).await).await,
            None,
            "intruder to {to}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no intruder reached the backend"
    );
    for prefix in ["exact", "regex"] {
        assert_eq!(stats.value(&format!("{prefix}.rbac.allowed")), Some(1));
        assert_eq!(stats.value(&format!("{prefix}.rbac.denied")), Some(1));
    }
    let handshakes: i64 = [exact.addr, regex.addr]
        .iter()
        .filter_map(|a| stats.value(&format!("listener.127.0.0.1_{}.ssl.handshake", a.port())))
        .sum();
    assert_eq!(
        handshakes, 4,
        "every client completed its handshake before RBAC decided"
    );
}
