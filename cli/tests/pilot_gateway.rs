//! Pilot's gateway translation driving a real Envoy 1.40 as an Istio ingress gateway: its node id is
//! `router~…` and its labels `istio: ingressgateway`. It gets Istio's bookinfo-gateway.yaml as shipped, a
//! second Gateway of our own with HTTPS servers (SIMPLE and MUTUAL on one port, by SNI; certificates made
//! with the openssl CLI) and an HTTP server redirecting to them, ServiceEntries for local backends (the ingress gateway's own service maps the
//! gateways' ports to local ports held for the test, as a Kubernetes Service maps them to the pod's ports), and a
//! DestinationRule originating TLS to a backend served by `openssl s_server`, over state-of-the-world and
//! delta ADS. Requests go through the gateway with curl; Envoy ACKs everything and rejects nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Ads, Backend, HeldPort, Plane, Proc, get, repo, scratch, wait_until};
use pilot_translate::{ProxyInfo, ProxyKind, translate};
use pilot_xds::types;
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::google::protobuf::{Struct, Value, value::Kind};

const NODE_ID: &str =
    "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local";
const NODE: &str = "{id: \"router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local\", cluster: istio-ingressgateway.istio-system, metadata: {NAMESPACE: istio-system, LABELS: {istio: ingressgateway}}}";

/// The node [`NODE`] declares, as pilot reads it.
fn node() -> Node {
    let text = |s: &str| Value {
        kind: Some(Kind::StringValue(s.into())),
    };
    Node {
        id: NODE_ID.into(),
        metadata: Some(Struct {
            fields: [
                ("NAMESPACE".to_string(), text("istio-system")),
                (
                    "LABELS".to_string(),
                    Value {
                        kind: Some(Kind::StructValue(Struct {
                            fields: [("istio".to_string(), text("ingressgateway"))].into(),
                        })),
                    },
                ),
            ]
            .into(),
        }),
        ..Default::default()
    }
}

/// Runs openssl with `args` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and a certificate for `host` it signed (`HOST.pem`, `HOST.key`).
fn certificates(dir: &Path, hosts: &[&str]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=sextant-test-ca",
        ],
    );
    for host in hosts {
        let ext = dir.join(format!("{host}.ext"));
        std::fs::write(
            &ext,
            format!("subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\n"),
        )
        .expect("ext");
        let (key, csr, pem) = (
            format!("{host}.key"),
            format!("{host}.csr"),
            format!("{host}.pem"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={host}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &ext.to_string_lossy(),
            ],
        );
    }
}

/// One request with curl: `(status, body)`, or `None` when curl got no answer. `resolve` pins a host name to
/// 127.0.0.1 (so TLS sees it as SNI).
fn curl(url: &str, extra: &[&str]) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl (apt-get install curl)");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_string()))
}

/// Whether Envoy ACKed the last version pilot sent of every type it uses (no mesh mTLS here: no secrets).
fn acked(ads: &Ads) -> bool {
    ads.connections.proxy(NODE_ID).is_some_and(|status| {
        [
            types::CLUSTER,
            types::ENDPOINT,
            types::LISTENER,
            types::ROUTE,
        ]
        .iter()
        .all(|url| {
            status
                .types
                .get(*url)
                .is_some_and(|t| t.acked_version.as_ref() == Some(&t.sent_version))
        })
    })
}

#[test]
fn envoy_as_ingress_gateway_serves_bookinfo_gateway_https_and_upstream_tls_over_state_of_the_world_ads()
 {
    run("GRPC", Plane::Envoy);
}

#[test]
fn envoy_as_ingress_gateway_serves_bookinfo_gateway_https_and_upstream_tls_over_delta_ads() {
    run("DELTA_GRPC", Plane::Envoy);
}

#[test]
fn sextant_proxy_as_ingress_gateway_serves_bookinfo_gateway_https_and_upstream_tls_over_state_of_the_world_ads()
 {
    run("GRPC", Plane::Sextant);
}

#[test]
fn sextant_proxy_as_ingress_gateway_serves_bookinfo_gateway_https_and_upstream_tls_over_delta_ads()
{
    run("DELTA_GRPC", Plane::Sextant);
}

fn run(api_type: &str, plane: Plane) {
    let dir = scratch(&format!("pilot-gateway-{plane:?}-{api_type}"));
    let config = dir.join("config");
    let certs = dir.join("certs");
    let www = dir.join("www");
    for d in [&config, &certs, &www] {
        std::fs::create_dir_all(d).expect("dirs");
    }
    certificates(
        &certs,
        &[
            "bookinfo.example.com",
            "partner.example.com",
            "client.example.com",
            "details.example.com",
        ],
    );
    let cert = |name: &str| certs.join(name).to_string_lossy().to_string();

    // Backends: productpage in plain HTTP; details behind TLS (openssl s_server serving files of `www`).
    let productpage = Backend::start();
    std::fs::write(www.join("details"), "details over tls").expect("www");
    let mut s_server = Command::new("openssl");
    s_server
        .args(["s_server", "-accept", "127.0.0.1:0", "-cert"])
        .arg(cert("details.example.com.pem"))
        .arg("-key")
        .arg(cert("details.example.com.key"))
        .arg("-WWW")
        .current_dir(&www);
    let mut details = Proc::spawn("openssl s_server", s_server, dir.join("s_server.log"));
    // It prints `ACCEPT 127.0.0.1:PORT` once listening.
    let line = details.wait_for_line("ACCEPT ", Duration::from_secs(60));
    let [details_addr] = common::addrs_in(&line)[..] else {
        panic!("openssl s_server's ACCEPT line names one address: {line}");
    };
    let details_port = details_addr.port();

    // The gateway's ports: named in the ServiceEntry before Envoy binds them.
    let held = [HeldPort::hold(), HeldPort::hold(), HeldPort::hold()];
    let (http_gw, plain, https) = (held[0].port(), held[1].port(), held[2].port());
    let services = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: productpage}}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {pp}}}, labels: {{app: productpage, version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: details}}
spec:
  hosts: [details.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {details_port}}}, labels: {{app: details}}}}]
---
# The ingress gateway's own service: its ports as the Gateways name them, mapped to the ports Envoy binds.
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: istio-ingressgateway, namespace: istio-system}}
spec:
  hosts: [istio-ingressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 8080, name: http}}, {{number: 80, name: http-plain}}, {{number: 443, name: https}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {http_gw}, http-plain: {plain}, https: {https}}}, labels: {{istio: ingressgateway}}}}
"#,
        pp = productpage.addr.port()
    );
    std::fs::write(config.join("services.yaml"), services).expect("services");
    std::fs::copy(
        repo().join("pilot/config/tests/fixtures/bookinfo/bookinfo-gateway.yaml"),
        config.join("bookinfo-gateway.yaml"),
    )
    .expect("copy the sample");
    let secure = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: secure-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [bookinfo.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [bookinfo.example.com]
    tls:
      mode: SIMPLE
      serverCertificate: {server_cert}
      privateKey: {server_key}
  - port: {{number: 443, name: https-partner, protocol: HTTPS}}
    hosts: [partner.example.com]
    tls:
      mode: MUTUAL
      serverCertificate: {partner_cert}
      privateKey: {partner_key}
      caCertificates: {ca}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo-secure}}
spec:
  hosts: [bookinfo.example.com, partner.example.com]
  gateways: [secure-gateway]
  http:
  - match: [{{uri: {{exact: /details}}}}]
    route: [{{destination: {{host: details}}}}]
  - match: [{{uri: {{exact: /productpage}}}}]
    route: [{{destination: {{host: productpage, port: {{number: 9080}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: details}}
spec:
  host: details
  trafficPolicy:
    tls:
      mode: SIMPLE
      caCertificates: {ca}
      sni: details.example.com
      subjectAltNames: [details.example.com]
"#,
        server_cert = cert("bookinfo.example.com.pem"),
        server_key = cert("bookinfo.example.com.key"),
        partner_cert = cert("partner.example.com.pem"),
        partner_key = cert("partner.example.com.key"),
        ca = cert("ca.pem"),
    );
    std::fs::write(config.join("secure.yaml"), secure).expect("secure gateway");

    let mesh = pilot_config::load_and_validate(&config).unwrap_or_else(|e| panic!("loads: {e}"));
    let registry = pilot_config::RegistrySnapshot {
        version: 1,
        services: mesh.services.clone(),
    };
    let proxy = ProxyInfo::from_node(&node());
    assert_eq!(proxy.kind, ProxyKind::Router);
    let snapshot = translate(
        &mesh,
        &registry,
        &proxy,
        &pilot_translate::MeshTls::default(),
    );
    assert_eq!(snapshot.consistent(), Ok(()));
    let ads = Ads::start();
    ads.snapshots.publish(snapshot).expect("published");

    let envoy = plane.start(
        &dir.join("proxy"),
        ads.addr,
        api_type,
        NODE,
        NODE_ID,
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("ISTIO_METAJSON_LABELS", r#"{"istio": "ingressgateway"}"#),
        ],
    );
    wait_until(Duration::from_secs(60), "Envoy to ACK every type", || {
        acked(&ads)
    });

    // bookinfo-gateway.yaml: `*` on 8080, the productpage paths to productpage, nothing else.
    let gw = format!("http://127.0.0.1:{http_gw}");
    wait_until(
        Duration::from_secs(30),
        "the gateway listener to route /productpage",
        || curl(&format!("{gw}/productpage"), &[]).is_some_and(|(s, _)| s == 200),
    );
    for host in ["bookinfo.example.com", "anything.example.org"] {
        let got = curl(
            &format!("{gw}/productpage"),
            &["-H", &format!("Host: {host}")],
        );
        assert_eq!(got, Some((200, "backend ok".into())), "Host {host}");
    }
    assert_eq!(
        curl(&format!("{gw}/api/v1/products"), &[]).map(|a| a.0),
        Some(200)
    );
    assert_eq!(
        curl(&format!("{gw}/reviews"), &[]).map(|a| a.0),
        Some(404),
        "a path the VirtualService does not route"
    );

    // secure-gateway: plain HTTP for its host is redirected to HTTPS; another Host is not served.
    let plain_url = format!("http://127.0.0.1:{plain}/productpage");
    let (status, _) = curl(&plain_url, &["-H", "Host: bookinfo.example.com", "-D", "-"])
        .expect("an answer on the redirecting port");
    assert_eq!(status, 301, "httpsRedirect");
    assert_eq!(
        curl(&plain_url, &["-H", "Host: other.example.com"]).map(|a| a.0),
        Some(404),
        "a Host not in the server's hosts"
    );

    // HTTPS: Envoy terminates TLS with the gateway's certificate, which curl checks against the test CA.
    let resolve = format!("bookinfo.example.com:{https}:127.0.0.1");
    let tls_args = ["--resolve", resolve.as_str(), "--cacert"];
    let ca = cert("ca.pem");
    let secure_url = |path: &str| format!("https://bookinfo.example.com:{https}{path}");
    let mut args: Vec<&str> = tls_args.to_vec();
    args.push(&ca);
    assert_eq!(
        curl(&secure_url("/productpage"), &args),
        Some((200, "backend ok".into())),
        "TLS terminated at the gateway"
    );
    let mut other = args.clone();
    other.extend(["-H", "Host: other.example.com"]);
    assert_eq!(
        curl(&secure_url("/productpage"), &other).map(|a| a.0),
        Some(404),
        "a Host not in the HTTPS server's hosts"
    );
    // Without the CA, curl refuses the certificate: it really is the gateway's.
    assert_eq!(
        curl(&secure_url("/productpage"), &["--resolve", &resolve]),
        None
    );

    // MUTUAL on the same port, chosen by SNI: only a client with a certificate of the CA gets through.
    let partner = format!("partner.example.com:{https}:127.0.0.1");
    let partner_url = format!("https://partner.example.com:{https}/productpage");
    assert_eq!(
        curl(&partner_url, &["--resolve", &partner, "--cacert", &ca]),
        None,
        "no client certificate, no answer"
    );
    let (client_cert, client_key) = (
        cert("client.example.com.pem"),
        cert("client.example.com.key"),
    );
    assert_eq!(
        curl(
            &partner_url,
            &[
                "--resolve",
                &partner,
                "--cacert",
                &ca,
                "--cert",
                &client_cert,
                "--key",
                &client_key,
            ],
        ),
        Some((200, "backend ok".into())),
        "mutual TLS with a client certificate"
    );

    // The DestinationRule's tls SIMPLE: Envoy originates TLS to openssl s_server and checks its
    // certificate against the CA, SNI and subject alt name.
    assert_eq!(
        curl(&secure_url("/details"), &args),
        Some((200, "details over tls".into())),
        "through the TLS upstream"
    );
    let stats = get(envoy.admin(), "/stats?filter=ssl.handshake", &[])
        .expect("envoy stats")
        .body;
    let handshakes: u64 = stats
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "cluster.outbound|9080||details.default.svc.cluster.local.ssl.handshake: ",
            )
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        handshakes >= 1,
        "Envoy counted {handshakes} upstream TLS handshakes"
    );

    assert_eq!(envoy.rejected_updates(), 0, "Envoy rejected nothing");
    let listeners = get(envoy.admin(), "/listeners", &[])
        .expect("listeners")
        .body;
    for want in [
        format!("0.0.0.0_{http_gw}"),
        format!("0.0.0.0_{plain}"),
        format!("0.0.0.0_{https}"),
    ] {
        assert!(listeners.contains(&want), "{want} in {listeners}");
    }
    assert!(
        !listeners.contains("15001") && !listeners.contains("virtualInbound"),
        "no sidecar listeners on a gateway: {listeners}"
    );
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}
