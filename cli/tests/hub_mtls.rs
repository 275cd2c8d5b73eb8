//! The hub's gRPC port over mutual TLS (`--tls-cert-file`, `--tls-key-file`, `--tls-client-ca-file`): plain text
//! and clients without a certificate of the mesh CA are refused at the handshake, and the attributes that name
//! the calling workload come from its certificate's SPIFFE ID instead of the call's word — overridden by
//! default, refused with `--caller-identity reject` — while what a sidecar verified of its client is kept.

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
    let mut config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert PEM")],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM"),
            )
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").expect("a name");
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    tonic::transport::Endpoint::from_static("http://localhost")
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
