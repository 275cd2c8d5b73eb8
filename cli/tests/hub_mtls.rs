//! The hub's gRPC port over mutual TLS (`--tls-cert-file`, `--tls-key-file`, `--tls-client-ca-file`): plain text
//! and clients without a certificate of the mesh CA are refused at the handshake, and the attributes that name
//! the calling workload come from its certificate's SPIFFE ID instead of the call's word — overridden by
//! default, refused with `--caller-identity reject` — while what a sidecar verified of its client is kept.
//! With `--token-file` the hub's certificate comes from a real pilot's CA by CSR instead (the mesh root its
//! client CA), waited for before any port opens, and renewed without a restart.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{Hub, scratch};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sextant_attributes::{Bag, Value};
use sextant_proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest as AuthzRequest,
    attribute_context::{HttpRequest, Peer, Request},
    authorization_client::AuthorizationClient,
};
use sextant_proto::mixer::{self, mixer_client::MixerClient};
use tonic::transport::Channel;

const REVIEWS: &str = "spiffe://cluster.local/ns/shop/sa/reviews";
const RATINGS: &str = "spiffe://cluster.local/ns/shop/sa/ratings";
const FRONTEND: &str = "spiffe://cluster.local/ns/web/sa/frontend";

/// Only reviews may be called, and only by the frontend: decided on the attributes the hub ends up with.
const POLICY: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: reviews-only}
spec:
  rules:
  - name: not-reviews
    when: 'destination.principal != "spiffe://cluster.local/ns/shop/sa/reviews"'
    action: DENY
  - name: not-from-the-frontend
    when: 'source.principal != "spiffe://cluster.local/ns/web/sa/frontend"'
    action: DENY
"#;

/// A mesh CA, the hub's certificate, and a client certificate for reviews signed by it; another CA's client
/// certificate for reviews too.
struct Pki {
    ca: String,
    server: (String, String),
    reviews: (String, String),
    stranger: (String, String),
}

fn ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("a CA key");
    let pem = params.self_signed(&key).expect("the CA").pem();
    (pem, Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, dns: &[&str], spiffe: Option<&str>) -> (String, String) {
    let mut params = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .expect("parameters");
    if let Some(id) = spiffe {
        params
            .subject_alt_names
            .push(SanType::URI(id.try_into().expect("a URI")));
    }
    let key = KeyPair::generate().expect("a key");
    let cert = params.signed_by(&key, issuer).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca, issuer) = ca();
    let (_, other) = self::ca();
    Pki {
        ca,
        server: leaf(&issuer, &["localhost"], None),
        reviews: leaf(&issuer, &[], Some(REVIEWS)),
        stranger: leaf(&other, &[], Some(REVIEWS)),
    }
}

/// A hub serving TLS with `pki`, client certificates required, and `args`.
fn hub(dir: &Path, pki: &Pki, args: &[&str]) -> Hub {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("write");
    for (name, pem) in [
        ("ca.pem", &pki.ca),
        ("hub.pem", &pki.server.0),
        ("hub-key.pem", &pki.server.1),
    ] {
        std::fs::write(dir.join(name), pem).expect("write");
    }
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (path("hub.pem"), path("hub-key.pem"), path("ca.pem"));
    let mut all = vec![
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-client-ca-file",
        &ca,
    ];
    all.extend_from_slice(args);
    Hub::start_with(&config, &all)
}

/// A gRPC channel to `addr` over TLS trusting `ca`, presenting `client` if given.
async fn connect(
    addr: SocketAddr,
    ca: &str,
    client: Option<&(String, String)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("CA PEM"))
        .expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert PEM")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM"),
            )
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    over_tls(config, addr, "localhost").await
}

/// A gRPC channel to `addr` over TLS with `config` (ALPN `h2`), naming the server `name`.
async fn over_tls(
    mut config: rustls::ClientConfig,
    addr: SocketAddr,
    name: &'static str,
) -> Result<Channel, tonic::transport::Error> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let server = ServerName::try_from(name).expect("a name");
            let stream = tls.connect(server, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{name}"))
        .expect("a URI")
        .connect_with_connector(connector)
        .await
}

fn strings(pairs: &[(&str, &str)]) -> mixer::Attributes {
    mixer::Attributes {
        values: pairs
            .iter()
            .map(|(k, v)| {
                let value = mixer::attribute_value::Value::StringValue(v.to_string());
                (k.to_string(), mixer::AttributeValue { value: Some(value) })
            })
            .collect(),
    }
}

/// The Check's status code (0 allowed, 7 denied), or the call's error.
async fn check(channel: &Channel, pairs: &[(&str, &str)]) -> Result<i32, tonic::Status> {
    let request = mixer::CheckRequest {
        attributes: Some(strings(pairs)),
        ..Default::default()
    };
    let answer = MixerClient::new(channel.clone()).check(request).await?;
    Ok(answer
        .into_inner()
        .precondition
        .and_then(|p| p.status)
        .map_or(-1, |s| s.code))
}

#[test]
fn only_mesh_certificates_are_served_and_the_caller_is_who_its_certificate_says() {
    let dir = scratch("hub-mtls");
    let pki = pki();
    let hub = hub(&dir, &pki, &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // Plain text, no client certificate, another CA's certificate: no channel, or no answer on it.
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.grpc))
            .expect("url")
            .connect()
            .await;
        if let Ok(plain) = plain {
            assert!(check(&plain, &[]).await.is_err(), "plain text was answered");
        }
        for client in [None, Some(&pki.stranger)] {
            if let Ok(channel) = connect(hub.grpc, &pki.ca, client).await {
                assert!(
                    check(&channel, &[]).await.is_err(),
                    "a client without a mesh certificate was answered"
                );
            }
        }

        let reviews = connect(hub.grpc, &pki.ca, Some(&pki.reviews))
            .await
            .expect("the reviews sidecar connects");
        // The sidecar names itself and the client it verified: allowed.
        let honest = [
            ("destination.principal", REVIEWS),
            ("source.principal", FRONTEND),
        ];
        assert_eq!(check(&reviews, &honest).await.expect("answered"), 0);
        // Not naming itself: the certificate fills it in.
        assert_eq!(
            check(&reviews, &[("source.principal", FRONTEND)])
                .await
                .expect("answered"),
            0
        );
        // Claiming to be ratings: overridden, so still reviews (and counted).
        let claim = [
            ("destination.principal", RATINGS),
            ("source.principal", FRONTEND),
        ];
        assert_eq!(check(&reviews, &claim).await.expect("answered"), 0);
        // What it verified of its client is its word: another client is denied.
        let other_client = [("source.principal", RATINGS)];
        assert_eq!(check(&reviews, &other_client).await.expect("answered"), 7);
    });
    assert_eq!(
        hub.metric(
            r#"sextant_hub_caller_mismatches_total{door="mixer_check",action="overridden"}"#
        ),
        Some(1.0),
        "{}",
        hub.metrics()
    );

    // `sextant check` over TLS, presenting reviews' certificate; without one the hub refuses it.
    std::fs::write(dir.join("reviews.pem"), &pki.reviews.0).expect("write");
    std::fs::write(dir.join("reviews-key.pem"), &pki.reviews.1).expect("write");
    let sextant_check = |client: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sextant"));
        cmd.args([
            "check",
            "--hub",
            &hub.grpc.to_string(),
            "--server-name",
            "localhost",
        ])
        .arg("--ca-file")
        .arg(dir.join("ca.pem"))
        .args(["-a", &format!("source.principal={FRONTEND}")]);
        if client {
            cmd.arg("--cert-file")
                .arg(dir.join("reviews.pem"))
                .arg("--key-file")
                .arg(dir.join("reviews-key.pem"));
        }
        cmd.output().expect("run sextant check")
    };
    let allowed = sextant_check(true);
    let json: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap_or_default();
    assert!(
        allowed.status.success() && json["code"] == 0,
        "{json} {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let refused = sextant_check(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.lines().count() <= 3, "one line and a hint: {stderr}");
}

#[test]
fn with_caller_identity_reject_a_claim_of_another_workload_is_refused() {
    let dir = scratch("hub-mtls-reject");
    let pki = pki();
    let hub = hub(&dir, &pki, &["--caller-identity", "reject"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let reviews = connect(hub.grpc, &pki.ca, Some(&pki.reviews))
            .await
            .expect("the reviews sidecar connects");
        let claim = [
            ("destination.principal", RATINGS),
            ("source.principal", FRONTEND),
        ];
        let refused = check(&reviews, &claim).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains(RATINGS) && refused.message().contains(REVIEWS),
            "{refused:?}"
        );
        // A client-side sidecar is the source: its own source.namespace is checked.
        let outbound = [
            ("context.reporter.kind", "outbound"),
            ("source.namespace", "web"),
        ];
        let refused = check(&reviews, &outbound).await.expect_err("refused");
        assert!(
            refused.message().contains("source.namespace"),
            "{refused:?}"
        );
        let honest = [
            ("destination.principal", REVIEWS),
            ("source.principal", FRONTEND),
        ];
        assert_eq!(check(&reviews, &honest).await.expect("answered"), 0);
    });
    assert_eq!(
        hub.metric(r#"sextant_hub_caller_mismatches_total{door="mixer_check",action="rejected"}"#),
        Some(2.0)
    );
}

/// The Report's (accepted, rejected) for bags naming `destination` as the reporting workload.
async fn report(channel: &Channel, destination: &str) -> (u64, u64) {
    let mut bag = Bag::new();
    for (k, v) in [
        ("destination.principal", destination),
        ("source.principal", FRONTEND),
    ] {
        bag.set_by_name(k, Value::String(v.to_string()))
            .expect("attribute");
    }
    let request = mixer::ReportRequest {
        attributes: vec![sextant_attributes::to_compressed(&bag); 3],
        global_word_count: sextant_attributes::global_word_count(),
        ..Default::default()
    };
    let answer = MixerClient::new(channel.clone())
        .report(request)
        .await
        .expect("answered")
        .into_inner();
    (answer.accepted, answer.rejected)
}

/// Envoy's ext_authz Check from reviews' sidecar for a request of the frontend, naming `destination`.
async fn authz(channel: &Channel, destination: &str) -> Result<i32, tonic::Status> {
    let peer = |principal: &str| {
        Some(Peer {
            principal: principal.to_string(),
            ..Default::default()
        })
    };
    let request = AuthzRequest {
        attributes: Some(AttributeContext {
            source: peer(FRONTEND),
            destination: peer(destination),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/reviews".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let answer = AuthorizationClient::new(channel.clone())
        .check(request)
        .await?;
    Ok(answer.into_inner().status.map_or(-1, |s| s.code))
}

#[test]
fn reports_and_envoy_checks_are_bound_too_and_a_rotated_certificate_serves_without_a_restart() {
    let dir = scratch("hub-mtls-rotate");
    let pki = pki();
    let hub = hub(&dir, &pki, &["--caller-identity", "reject"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let reviews = connect(hub.grpc, &pki.ca, Some(&pki.reviews))
            .await
            .expect("the reviews sidecar connects");
        assert_eq!(report(&reviews, REVIEWS).await, (3, 0));
        assert_eq!(
            report(&reviews, RATINGS).await,
            (0, 3),
            "bags claiming ratings"
        );
        assert_eq!(authz(&reviews, REVIEWS).await.expect("answered"), 0);
        let refused = authz(&reviews, RATINGS).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    });
    assert_eq!(
        hub.metric(r#"sextant_hub_caller_mismatches_total{door="mixer_report",action="rejected"}"#),
        Some(3.0)
    );
    assert_eq!(
        hub.metric(r#"sextant_hub_caller_mismatches_total{door="ext_authz",action="rejected"}"#),
        Some(1.0)
    );

    // The hub's certificate is replaced by one of a new CA (key first, then the certificate, as a rotation
    // writes them): new connections get it, no restart.
    let (new_ca, issuer) = ca();
    let (cert, key) = leaf(&issuer, &["localhost"], None);
    std::fs::write(dir.join("hub-key.pem"), key).expect("write");
    std::fs::write(dir.join("hub.pem"), cert).expect("write");
    common::wait_until(
        std::time::Duration::from_secs(30),
        "the rotated certificate to serve",
        || {
            rt.block_on(async {
                match connect(hub.grpc, &new_ca, Some(&pki.reviews)).await {
                    Ok(channel) => {
                        check(&channel, &[("source.principal", FRONTEND)])
                            .await
                            .ok()
                            == Some(0)
                    }
                    Err(_) => false,
                }
            })
        },
    );
    assert!(
        hub.proc.log().contains("serving certificate reloaded"),
        "{}",
        hub.proc.log()
    );
}

const HUB_ID: &str = "spiffe://cluster.local/ns/sextant-system/sa/sextant-hub";

/// What a mesh client saw of the hub: the DER of each leaf it was served, in order.
type Served = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A mesh client's check of the hub, as a sidecar's: the chain must lead to the mesh root and the leaf carry
/// the hub's SPIFFE ID (it names no host: the name check is the only one of webpki's left out).
#[derive(Debug)]
struct MeshServerVerifier {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
    served: Served,
}

impl rustls::client::danger::ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(_)
            | Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => {}
            Err(e) => return Err(e),
        }
        if !carries_uri(end_entity, HUB_ID) {
            return Err(rustls::Error::General(format!(
                "the hub's certificate does not name {HUB_ID}"
            )));
        }
        self.served
            .lock()
            .expect("not poisoned")
            .push(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Whether the certificate `der` holds `uri` as a URI general name (`[6] IA5String`, as a SAN encodes it).
fn carries_uri(der: &[u8], uri: &str) -> bool {
    let mut name = vec![0x86, u8::try_from(uri.len()).expect("a short URI")];
    name.extend_from_slice(uri.as_bytes());
    der.windows(name.len()).any(|w| w == name.as_slice())
}

/// The serial number of the certificate `der` (hex bytes joined by colons, as the hub logs it): `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
/// [0] version OPTIONAL, serialNumber INTEGER, … }, … }`.
fn serial(der: &[u8]) -> String {
    /// An element's tag, header length and content length (DER: short or long form).
    fn element(d: &[u8]) -> (u8, usize, usize) {
        let first = d[1];
        if first < 0x80 {
            return (d[0], 2, usize::from(first));
        }
        let n = usize::from(first & 0x7f);
        let len = d[2..2 + n]
            .iter()
            .fold(0, |l, b| (l << 8) | usize::from(*b));
        (d[0], 2 + n, len)
    }
    let (_, header, _) = element(der);
    let tbs = &der[header..];
    let (_, header, _) = element(tbs);
    let mut fields = &tbs[header..];
    let (tag, header, len) = element(fields);
    if tag == 0xa0 {
        fields = &fields[header + len..];
    }
    let (tag, header, len) = element(fields);
    assert_eq!(tag, 0x02, "the serial number is an INTEGER");
    let bytes: Vec<String> = fields[header..header + len]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    bytes.join(":")
}

/// A gRPC channel to `addr` as a mesh client: the hub checked against the mesh root `root` and its SPIFFE ID
/// (each leaf it serves recorded in `served`), presenting `client`'s certificate if given.
async fn connect_mesh(
    addr: SocketAddr,
    root: &str,
    client: Option<&proxy_identity::Certificate>,
    served: &Served,
) -> Result<Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root.as_bytes()).expect("root PEM"))
        .expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("a verifier");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier {
            chain,
            served: served.clone(),
        }));
    let config = match client {
        Some(cert) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain PEM"),
                PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM"),
            )
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    over_tls(config, addr, "sextant-hub").await
}

#[test]
fn with_a_token_the_hub_serves_a_certificate_from_pilots_ca_and_renews_it_without_a_restart() {
    let dir = scratch("hub-mtls-pilot");
    // Pilot's CA and the bootstrap tokens of the hub's identity and of the reviews sidecar.
    let pilot_config = dir.join("pilot");
    for (identity, token) in [
        ("sextant-system/sextant-hub", "hub-token-5e2a"),
        ("shop/reviews", "reviews-token-c4d1"),
    ] {
        let path = pilot_config.join("tokens").join(identity);
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("mkdir");
        std::fs::write(path, format!("{token}\n")).expect("token");
    }
    let (_pilot, _, secure) = common::start_pilot_ca(&pilot_config, &dir.join("ca"), &[]);
    let root_file = dir.join("ca/root-cert.pem");
    let root = std::fs::read_to_string(&root_file).expect("pilot wrote its root");

    // The hub's token is not there yet: it waits, with no port open.
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("write");
    let token = dir.join("hub-token");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let (token_arg, root_arg) = (path(&token), path(&root_file));
    let ca_addr = format!("https://{secure}");
    let mut proc = Hub::spawn_with(
        &config,
        &[
            "--token-file",
            &token_arg,
            "--root-cert",
            &root_arg,
            "--ca-addr",
            &ca_addr,
            "--cert-lifetime",
            "10s",
            "--pod-namespace",
            "sextant-system",
            "--service-account",
            "sextant-hub",
        ],
    );
    proc.wait_for_line(
        "waiting for the first serving certificate",
        std::time::Duration::from_secs(60),
    );
    assert!(
        !proc.log().contains("hub: gRPC on"),
        "a port opened before the certificate came:\n{}",
        proc.log()
    );
    std::fs::write(&token, "hub-token-5e2a\n").expect("the hub's token");
    let hub = Hub::up(proc, &config);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let served = Served::default();
    let first = rt.block_on(async {
        // The reviews sidecar's certificate, from the same CA by CSR, as the proxy gets its own.
        let reviews = proxy_identity::obtain(&proxy_identity::Settings {
            endpoint: ca_addr.clone(),
            tls: proxy_xds::PilotTls::new(root.as_bytes(), "istiod.istio-system.svc")
                .expect("TLS to pilot"),
            mark: None,
            root_pem: root.clone(),
            spiffe_id: REVIEWS.to_string(),
            token_file: pilot_config.join("tokens/shop/reviews"),
            lifetime: std::time::Duration::from_secs(3600),
        })
        .await
        .expect("reviews' certificate");

        // Without a certificate: refused.
        if let Ok(channel) = connect_mesh(hub.grpc, &root, None, &served).await {
            assert!(
                check(&channel, &[]).await.is_err(),
                "a client without a mesh certificate was answered"
            );
        }
        let channel = connect_mesh(hub.grpc, &root, Some(&reviews), &served)
            .await
            .expect("reviews connects, the hub's certificate checked against the mesh root");
        assert_eq!(
            check(&channel, &[("source.principal", FRONTEND)])
                .await
                .expect("answered"),
            0,
            "reviews, named by its certificate, called by the frontend"
        );
        assert_eq!(
            check(&channel, &[("source.principal", RATINGS)])
                .await
                .expect("answered"),
            7
        );
        (reviews, served.lock().expect("not poisoned")[0].clone())
    });
    let (reviews, first) = first;
    let first_serial = serial(&first);

    // Renewed at half its 10 s life: a new connection gets a new certificate from the same hub process.
    let pid = hub.proc.pid();
    common::wait_until(
        std::time::Duration::from_secs(60),
        "the hub to serve a renewed certificate",
        || {
            rt.block_on(async {
                let Ok(channel) = connect_mesh(hub.grpc, &root, Some(&reviews), &served).await
                else {
                    return false;
                };
                let answered = check(&channel, &[("source.principal", FRONTEND)])
                    .await
                    .ok()
                    == Some(0);
                let last = served.lock().expect("not poisoned").last().cloned();
                answered && last.is_some_and(|der| serial(&der) != first_serial)
            })
        },
    );
    assert_eq!(hub.proc.pid(), pid, "no restart");
    let log = hub.proc.log();
    assert!(
        log.matches("serving certificate installed").count() >= 2,
        "{log}"
    );
    assert!(
        log.contains(&format!("serial={first_serial}")),
        "the hub logs the serial it serves: {log}"
    );
}

#[test]
fn certificate_files_and_a_token_together_are_refused_in_one_line() {
    let dir = scratch("hub-mtls-flags");
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (cert, key, token, root) = (
        file("hub.pem"),
        file("hub-key.pem"),
        file("token"),
        file("root.pem"),
    );
    for (args, says) in [
        (
            vec![
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--token-file",
                &token,
            ],
            "--tls-cert-file and --token-file",
        ),
        (
            vec!["--token-file", &token, "--root-cert", &root],
            "--token-file needs pilot's certificate API",
        ),
        (vec!["--root-cert", &root], "used only with --token-file"),
        (
            vec!["--caller-identity", "reject"],
            "--caller-identity needs client certificates",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sextant"))
            .args(["hub", "--config-dir"])
            .arg(&dir)
            .args(&args)
            .env_remove("SEXTANT_TOKEN_FILE")
            .env_remove("SEXTANT_ROOT_CERT")
            .env_remove("CA_ADDR")
            .output()
            .expect("run sextant hub");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 2
                && lines[0].starts_with("error: ")
                && lines[0].contains(says)
                && lines[1].starts_with("hint: "),
            "{args:?}: one line and a hint: {stderr}"
        );
    }
}
