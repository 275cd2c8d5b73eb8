//! Workload identity done properly, with real binaries: proxies keep their own keys and have pilot sign
//! their certificates on its secure port (TLS checked against the mesh root, istiod's name), proving who they
//! are with bootstrap tokens from pilot's `tokens/NAMESPACE/SERVICE_ACCOUNT` files; pilot sends them no
//! secrets, and mesh mTLS between them works: two `sextant proxy`s, and a stock Envoy 1.40 beside
//! `sextant agent` (its ADS over TLS to the secure port, its secrets from the agent's SDS socket). A proxy
//! whose token is another identity's is refused (PERMISSION_DENIED, logged by pilot, the proxy saying pilot
//! refused), and one given another root cannot connect.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, DataPlane, Envoy, HeldPort, Proc, addrs_in, get, scratch_config, wait_until,
};

const WAIT: Duration = Duration::from_secs(45);
const WEB_ID: &str = "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local";
const FRONT_ID: &str = "sidecar~127.0.0.1~front-1.shop~shop.svc.cluster.local";
const IMPOSTOR_ID: &str = "sidecar~127.0.0.1~impostor-1.shop~shop.svc.cluster.local";
const WEB_SPIFFE: &str = "spiffe://cluster.local/ns/shop/sa/web";
const FRONT_SPIFFE: &str = "spiffe://cluster.local/ns/shop/sa/front";
const HOST: &str = "web.shop.svc.cluster.local";

/// `web` on `port` (its sidecar's ingress on `ingress`, forwarding to `app`), mesh mTLS to it; `front`
/// imports everything; the impostor's Sidecar imports nothing (it binds no listener of `front`'s).
fn mesh(port: u16, ingress: u16, app: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: shop}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {ingress}}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: shop}}
spec:
  host: {HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - {{port: {{number: {ingress}, protocol: HTTP, name: http}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: "{app}"}}
  egress: [{{hosts: ["~/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: impostor, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: impostor}}}}
  egress: [{{hosts: ["~/*"]}}]
"#
    )
}

/// A running pilot with its secure port.
struct Pilot {
    proc: Proc,
    monitoring: SocketAddr,
    secure: SocketAddr,
    /// The mesh root proxies check pilot and each other against.
    root: PathBuf,
    /// The bootstrap tokens (`NAMESPACE/SERVICE_ACCOUNT` files).
    tokens: PathBuf,
}

/// The mesh with `web`'s workload at `app`, and pilot with a CA directory and tokens for `shop/web` and
/// `shop/front`.
fn start_pilot(dir: &Path, config: &Path, port: u16, ingress: u16, app: SocketAddr) -> Pilot {
    std::fs::write(config.join("mesh.yaml"), mesh(port, ingress, app)).expect("mesh");
    let tokens = config.join("tokens");
    std::fs::create_dir_all(tokens.join("shop")).expect("tokens dir");
    std::fs::write(tokens.join("shop/web"), "web-token-6f1c\n").expect("token");
    std::fs::write(tokens.join("shop/front"), "front-token-93ab\n").expect("token");
    let ca = dir.join("ca");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["pilot", "--config-dir"])
        .arg(config)
        .arg("--ca-dir")
        .arg(&ca)
        .args(["--xds-addr", "127.0.0.1:0"])
        .args(["--secure-xds-addr", "127.0.0.1:0"])
        .args(["--monitoring-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn("pilot", cmd, dir.join("pilot.log"));
    let line = proc.wait_for_line("pilot: xDS on ", WAIT);
    // The secure address comes last, as https://, where readers of the first two do not see it.
    let [_, monitoring] = addrs_in(&line)[..] else {
        panic!("pilot's ready line still names two plain addresses: {line}");
    };
    let secure =
        common::https_addr_in(&line).unwrap_or_else(|| panic!("no secure address in {line}"));
    wait_until(WAIT, "pilot to be ready", || {
        assert!(proc.alive(), "pilot exited:\n{}", proc.log());
        get(monitoring, "/ready", &[]).is_some_and(|r| r.status == 200)
    });
    Pilot {
        proc,
        monitoring,
        secure,
        root: ca.join("root-cert.pem"),
        tokens,
    }
}

impl Pilot {
    /// One series of pilot's /metrics.
    fn metric(&self, series: &str) -> f64 {
        get(self.monitoring, "/metrics", &[])
            .map(|r| r.body)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// What pilot sent proxy `id`, as its config dump.
    fn dump(&self, id: &str) -> String {
        get(
            self.monitoring,
            &format!("/debug/config_dump?proxy={id}"),
            &[],
        )
        .map(|r| r.body)
        .unwrap_or_default()
    }
}

/// `sextant proxy` keeping its own key: xDS and its certificate from pilot's secure port, checked against
/// `root`, its identity proven with `token`; `env` is the pod's. Returns it with its admin address.
fn sextant_proxy(
    dir: &Path,
    pilot: &Pilot,
    root: &Path,
    token: &Path,
    id: &str,
    env: &[(&str, &str)],
) -> (Proc, SocketAddr) {
    sextant_proxy_with(dir, pilot, root, token, id, env, &[])
}

/// [`sextant_proxy`] with more flags.
fn sextant_proxy_with(
    dir: &Path,
    pilot: &Pilot,
    root: &Path,
    token: &Path,
    id: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Proc, SocketAddr) {
    std::fs::create_dir_all(dir).expect("proxy dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["proxy", "--node-id", id])
        .args(args)
        .args(["--xds-addr", &format!("https://{}", pilot.secure)])
        .arg("--root-cert")
        .arg(root)
        .arg("--token-file")
        .arg(token)
        .args(["--admin-addr", "127.0.0.1:0", "--stats-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    let mut proc = Proc::spawn("sextant proxy", cmd, dir.join("proxy.log"));
    let line = proc.wait_for_line("proxy: admin on ", WAIT);
    let admin = *addrs_in(&line)
        .first()
        .unwrap_or_else(|| panic!("an admin address in {line}"));
    (proc, admin)
}

/// The pod environment of a `shop` workload without interception.
fn pod(account: &'static str, app: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("POD_NAMESPACE", "shop".into()),
        ("SERVICE_ACCOUNT", account.into()),
        ("ISTIO_META_INTERCEPTION_MODE", "NONE".into()),
        ("ISTIO_METAJSON_LABELS", format!(r#"{{"app": "{app}"}}"#)),
    ]
}

fn env<'a>(pod: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pod.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `GET /` through `at` for `web`: the status (0 when no response came).
fn status(at: SocketAddr) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "-w",
            "%{http_code}",
            "-H",
        ])
        .arg(format!("Host: {HOST}"))
        .arg(format!("http://{at}/"))
        .output()
        .expect("curl (installed by .ci/peers)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// The SPIFFE IDs of the workload certificates a proxy's `/certs` shows.
fn certificate_ids(admin: SocketAddr) -> Vec<String> {
    // curl: Envoy sends /certs chunked.
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", &format!("http://{admin}/certs")])
        .output()
        .expect("curl");
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut ids: Vec<String> = certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["cert_chain"].as_array()?.first().cloned())
        .flat_map(|leaf| {
            leaf["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["uri"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Pilot sent the proxy no secret: nothing of the SDS type, no key, yet its mesh TLS names the secrets.
fn assert_no_secrets(pilot: &Pilot, id: &str) {
    let dump = pilot.dump(id);
    let v: serde_json::Value = serde_json::from_str(&dump).expect("config dump JSON");
    let secrets: usize = v["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["type_url"]
                .as_str()
                .is_some_and(|t| t.ends_with(".Secret"))
        })
        .map(|c| c["resources"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(secrets, 0, "pilot sent {id} secrets: {dump}");
    assert!(
        !dump.contains("PRIVATE KEY")
            && !dump.contains("[redacted]")
            && !dump.contains("tlsCertificate\""),
        "{dump}"
    );
    assert!(
        dump.contains("\"ROOTCA\""),
        "its mesh TLS names ROOTCA: {dump}"
    );
}

#[test]
fn sextant_proxies_keep_their_keys_and_impostors_are_refused() {
    let (dir, config) = scratch_config("pilot-identity-sextant");
    let app = Backend::answering("the workload");
    let (port, ingress) = (HeldPort::hold(), HeldPort::hold());
    let mut pilot = start_pilot(&dir, &config, port.port(), ingress.port(), app.addr);
    let (root, tokens) = (pilot.root.clone(), pilot.tokens.clone());

    let web_pod = pod("web", "web");
    // A short certificate, renewed within the test (at half its life).
    let (mut web, web_admin) = sextant_proxy_with(
        &dir.join("web"),
        &pilot,
        &root,
        &tokens.join("shop/web"),
        WEB_ID,
        &env(&web_pod),
        &["--cert-lifetime", "10s"],
    );
    let front_pod = pod("front", "front");
    let (mut front, _) = sextant_proxy(
        &dir.join("front"),
        &pilot,
        &root,
        &tokens.join("shop/front"),
        FRONT_ID,
        &env(&front_pod),
    );
    let via_front = SocketAddr::from(([127, 0, 0, 1], port.port()));
    wait_until(WAIT, "front to reach web over mTLS", || {
        assert!(
            web.alive() && front.alive(),
            "a proxy exited:\n{}\n{}",
            web.log(),
            front.log()
        );
        status(via_front) == 200
    });
    // Plain text to web's ingress still works (PERMISSIVE), so the 200 above could be plain: web's
    // certificate is its own, and front's connection was mTLS (web saw a handshake).
    assert_eq!(certificate_ids(web_admin), [WEB_SPIFFE]);
    let handshakes = get(web_admin, "/stats?filter=ssl.handshake$", &[])
        .expect("web stats")
        .body;
    assert!(
        handshakes
            .lines()
            .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
            .sum::<u64>()
            >= 1,
        "front's call reached web over mTLS: {handshakes}"
    );
    for id in [WEB_ID, FRONT_ID] {
        assert_no_secrets(&pilot, id);
    }
    assert!(pilot.metric("pilot_ca_csr_total{result=\"signed\"}") >= 2.0);

    // Renewal: web's certificate is replaced at half its life with a fresh key, and a connection open
    // across it goes on (front's pooled mTLS connection to web too).
    let mut open = std::net::TcpStream::connect(via_front).expect("connect to front");
    let ask = |s: &mut std::net::TcpStream| {
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.1\r\nhost: web.shop.svc.cluster.local\r\n\r\n")
            .expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("the workload") {
            let n = s.read(&mut buf).expect("read the answer");
            assert!(
                n > 0,
                "the connection closed: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    };
    ask(&mut open);
    let issued = |admin| {
        get(admin, "/stats?filter=workload_cert.issued", &[])
            .map(|r| r.body)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("workload_cert.issued: ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    wait_until(WAIT, "web's certificate to be renewed", || {
        issued(web_admin) >= 2
    });
    ask(&mut open);
    assert_eq!(
        status(via_front),
        200,
        "new connections take the new certificate"
    );

    // Straight to pilot's ADS on the secure port: a node keeping its own key asking for the secrets gets
    // none; the same node without it gets its key (what pilot still does for proxies that ask).
    let root_pem = std::fs::read(&root).expect("root");
    assert_eq!(ads_secrets(pilot.secure, &root_pem, true), (0, false));
    assert_eq!(ads_secrets(pilot.secure, &root_pem, false), (2, true));
    // The certificate API without a known token: UNAUTHENTICATED, counted.
    let refused = create_certificate(pilot.secure, &root_pem, "Bearer not-a-token");
    assert_eq!(refused, Some(tonic::Code::Unauthenticated));
    assert!(pilot.metric("pilot_ca_csr_total{result=\"unauthenticated\"}") >= 1.0);

    // A proxy saying it is web with front's token: pilot refuses and says so; the proxy installs nothing.
    let impostor_pod = vec![
        ("POD_NAMESPACE", "shop".to_string()),
        ("SERVICE_ACCOUNT", "web".into()),
        ("ISTIO_META_INTERCEPTION_MODE", "NONE".into()),
        ("ISTIO_METAJSON_LABELS", r#"{"app": "impostor"}"#.into()),
    ];
    let (mut impostor, impostor_admin) = sextant_proxy(
        &dir.join("impostor"),
        &pilot,
        &root,
        &tokens.join("shop/front"),
        IMPOSTOR_ID,
        &env(&impostor_pod),
    );
    let line = pilot.proc.wait_for_line("PERMISSION_DENIED", WAIT);
    assert!(
        line.contains(WEB_SPIFFE) && line.contains(FRONT_SPIFFE),
        "pilot names the identity asked for and the token's: {line}"
    );
    let said = impostor.wait_for_line("pilot refused the certificate", WAIT);
    assert!(said.contains("ermission"), "{said}");
    assert!(pilot.metric("pilot_ca_csr_total{result=\"denied\"}") >= 1.0);
    assert!(
        certificate_ids(impostor_admin).is_empty(),
        "the impostor holds no certificate"
    );

    // Another root: the proxy cannot connect to pilot (TLS fails before any request), and says so.
    let signed = pilot.metric("pilot_ca_csr_total{result=\"signed\"}");
    let other = dir.join("other-ca");
    pilot_ca::Authority::from_dir(&other, "cluster.local", pilot_ca::DEFAULT_WORKLOAD_TTL)
        .expect("another CA");
    let (mut stranger, stranger_admin) = sextant_proxy(
        &dir.join("stranger"),
        &pilot,
        &other.join("root-cert.pem"),
        &tokens.join("shop/web"),
        "sidecar~127.0.0.1~stranger-1.shop~shop.svc.cluster.local",
        &env(&impostor_pod),
    );
    // The log says why: pilot's certificate is not one the given root signed.
    let line = stranger.wait_for_line("cannot reach pilot's certificate service", WAIT);
    assert!(line.contains("invalid peer certificate"), "{line}");
    stranger.wait_for_line("xDS stream ended", WAIT);
    assert!(certificate_ids(stranger_admin).is_empty());
    assert_eq!(
        pilot.metric("pilot_ca_csr_total{result=\"signed\"}"),
        signed,
        "nothing was asked of pilot"
    );
    assert_eq!(status(via_front), 200, "front still reaches web");
    drop((impostor, stranger, web, front, pilot, port, ingress));
}

#[test]
fn envoy_beside_the_agent_keeps_its_key_and_reaches_web_over_mtls() {
    let (dir, config) = scratch_config("pilot-identity-envoy");
    let app = Backend::answering("the workload");
    let (port, ingress) = (HeldPort::hold(), HeldPort::hold());
    let pilot = start_pilot(&dir, &config, port.port(), ingress.port(), app.addr);
    let (root, tokens) = (pilot.root.clone(), pilot.tokens.clone());
    let web_pod = pod("web", "web");
    let (mut web, web_admin) = sextant_proxy(
        &dir.join("web"),
        &pilot,
        &root,
        &tokens.join("shop/web"),
        WEB_ID,
        &env(&web_pod),
    );

    let front_dir = dir.join("front");
    std::fs::create_dir_all(&front_dir).expect("front dir");
    let socket = front_dir.join("sds.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["agent", "--sds-socket"])
        .arg(&socket)
        .args(["--ca-addr", &format!("https://{}", pilot.secure)])
        .arg("--root-cert")
        .arg(&root)
        .arg("--token-file")
        .arg(tokens.join("shop/front"))
        .env("POD_NAMESPACE", "shop")
        .env("SERVICE_ACCOUNT", "front")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut agent = Proc::spawn("sextant agent", cmd, front_dir.join("agent.log"));
    agent.wait_for_line("agent: SDS on unix:", WAIT);
    agent.wait_for_line("workload certificate installed", WAIT);
    let node = format!(
        "{{id: \"{FRONT_ID}\", cluster: front.shop, metadata: {{INTERCEPTION_MODE: NONE, NAMESPACE: shop, SERVICE_ACCOUNT: front, LABELS: {{app: front}}, SEXTANT_LOCAL_CERT: \"true\"}}}}"
    );
    let bootstrap = common::agent_bootstrap(pilot.secure, 0, &node, &root, &socket);
    let envoy = Envoy::start(&front_dir, &bootstrap);

    let via_front = SocketAddr::from(([127, 0, 0, 1], port.port()));
    wait_until(WAIT, "Envoy to reach web over mTLS", || {
        assert!(
            web.alive() && agent.alive(),
            "web or the agent exited:\n{}\n{}",
            web.log(),
            agent.log()
        );
        status(via_front) == 200
    });
    let cluster = format!("cluster.outbound|{}||{HOST}", port.port());
    assert!(
        envoy.stat(&format!("{cluster}.ssl.handshake")).unwrap_or(0) >= 1,
        "Envoy originated mesh mTLS"
    );
    assert_eq!(
        certificate_ids(envoy.admin),
        [FRONT_SPIFFE],
        "Envoy's certificate is from the agent"
    );
    assert_eq!(certificate_ids(web_admin), [WEB_SPIFFE]);
    assert_no_secrets(&pilot, FRONT_ID);
    assert!(
        pilot.dump(FRONT_ID).contains("sds-grpc"),
        "Envoy's mesh TLS reads its secrets from the agent's cluster"
    );
    assert_eq!(envoy.rejected_updates(), 0, "Envoy refused a push");
    drop((envoy, agent, web, pilot, port, ingress));
}

/// TLS to pilot's secure port, trusting `root_pem` only.
fn channel(
    rt: &tokio::runtime::Runtime,
    secure: SocketAddr,
    root_pem: &[u8],
) -> tonic::transport::Channel {
    let tls = proxy_xds::PilotTls::new(root_pem, "istiod.istio-system.svc").expect("pilot TLS");
    rt.block_on(proxy_xds::connect::channel(
        &format!("https://{secure}"),
        None,
        Some(&tls),
    ))
    .expect("connect to the secure port")
}

/// `CreateCertificate` with `authorization` and a CSR naming web: the refusal's code, or None when signed.
fn create_certificate(
    secure: SocketAddr,
    root_pem: &[u8],
    authorization: &str,
) -> Option<tonic::Code> {
    use sextant_proto::istio_ca::IstioCertificateRequest;
    use sextant_proto::istio_ca::istio_certificate_service_client::IstioCertificateServiceClient;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = IstioCertificateServiceClient::new(channel(&rt, secure, root_pem));
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr: "not a CSR".into(),
        validity_duration: 0,
        metadata: None,
    });
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().expect("header"));
    rt.block_on(client.create_certificate(request))
        .err()
        .map(|s| s.code())
}

/// Asks pilot's ADS on the secure port, as a `shop/probe` sidecar keeping its own key (`local`) or not, for
/// the secrets `default` and `ROOTCA` and then the clusters: (secrets received before the clusters, whether
/// one held a private key).
fn ads_secrets(secure: SocketAddr, root_pem: &[u8], local: bool) -> (usize, bool) {
    use prost::Message;
    use sextant_proto::envoy::config::core::v3::Node;
    use sextant_proto::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use sextant_proto::envoy::service::discovery::v3::DiscoveryRequest;
    use sextant_proto::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use sextant_proto::google::protobuf::{Struct, Value, value::Kind};
    const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = AggregatedDiscoveryServiceClient::new(channel(&rt, secure, root_pem));
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    let mut fields: std::collections::BTreeMap<String, Value> = [
        ("NAMESPACE", text("shop")),
        ("SERVICE_ACCOUNT", text("probe")),
        ("INTERCEPTION_MODE", text("NONE")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if local {
        fields.insert(pilot_translate::LOCAL_CERT_METADATA.into(), text("true"));
    }
    let node = Node {
        id: format!("sidecar~127.0.0.1~probe-{local}.shop~shop.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    };
    let requests = vec![
        DiscoveryRequest {
            node: Some(node),
            type_url: SECRET.into(),
            resource_names: vec!["default".into(), "ROOTCA".into()],
            ..Default::default()
        },
        DiscoveryRequest {
            type_url: CLUSTER.into(),
            ..Default::default()
        },
    ];
    // The stream stays open (pilot would end it with the request stream) until the clusters came.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for r in requests {
        tx.try_send(r).expect("queued");
    }
    rt.block_on(async move {
        let mut responses = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("ADS stream")
            .into_inner();
        let (mut secrets, mut keys) = (0, false);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, responses.message()).await;
            let response = next
                .expect("pilot answers in time")
                .expect("stream")
                .expect("a response");
            if response.type_url == CLUSTER {
                drop(tx);
                return (secrets, keys);
            }
            for any in response.resources.iter().filter(|r| r.type_url == SECRET) {
                secrets += 1;
                let s = Secret::decode(any.value.as_slice()).expect("Secret");
                if let Some(secret::Type::TlsCertificate(c)) = s.r#type {
                    keys |= c.private_key.is_some();
                }
            }
        }
    })
}
