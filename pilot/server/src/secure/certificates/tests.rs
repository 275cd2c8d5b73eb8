use super::*;
use crate::secure::TokenStore;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use x509_parser::extensions::GeneralName;

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const FRONT: &str = "spiffe://cluster.local/ns/shop/sa/front";

fn service(name: &str) -> (CertificateService, Arc<Authority>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("pilot-csr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("shop")).expect("dir");
    std::fs::write(dir.join("shop/web"), "web-token\n").expect("token");
    let authority = Arc::new(
        Authority::self_signed("cluster.local", pilot_ca::DEFAULT_WORKLOAD_TTL).expect("ca"),
    );
    let tokens = Arc::new(TokenStore::new(dir.clone()));
    (
        CertificateService::new(authority.clone(), tokens),
        authority,
        dir,
    )
}

/// A CSR naming `id`, PEM, with a fresh key.
fn csr(id: &str) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(id.try_into().expect("uri"))];
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn request(csr: String, token: Option<&str>) -> Request<IstioCertificateRequest> {
    let mut r = Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: None,
    });
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", t.parse().expect("header value"));
    }
    r
}

fn count(s: &CertificateService, result: &'static str) -> u64 {
    s.outcomes().get_or_create(&CsrLabels { result }).get()
}

#[tokio::test]
async fn the_token_decides_the_identity_signed() {
    let (s, authority, dir) = service("outcomes");
    let answer = s
        .create_certificate(request(csr(WEB), Some("Bearer web-token")))
        .await
        .expect("signed")
        .into_inner();
    let [leaf, root] = answer.cert_chain.as_slice() else {
        panic!("workload certificate then root: {:?}", answer.cert_chain)
    };
    assert_eq!(root, authority.root_pem(), "the trust root last");
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let names: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN present")
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(names, [WEB]);
    let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!(life <= 3600 + 60, "validity_duration honoured: {life}s");

    // Another identity than the token's: PERMISSION_DENIED.
    let e = s
        .create_certificate(request(csr(FRONT), Some("bearer  web-token ")))
        .await
        .expect_err("another identity");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains(FRONT) && e.message().contains(WEB),
        "{e:?}"
    );
    // No token, an unknown one, another scheme: UNAUTHENTICATED.
    for token in [None, Some("Bearer front-token"), Some("Basic web-token")] {
        let e = s
            .create_certificate(request(csr(WEB), token))
            .await
            .expect_err("no identity");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    // Not a CSR: INVALID_ARGUMENT.
    let e = s
        .create_certificate(request("garbage".into(), Some("Bearer web-token")))
        .await
        .expect_err("invalid");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = s
        .create_certificate(request(
            "x".repeat(MAX_CSR_BYTES + 1),
            Some("Bearer web-token"),
        ))
        .await
        .expect_err("too long");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    assert_eq!(
        [
            count(&s, "signed"),
            count(&s, "denied"),
            count(&s, "unauthenticated"),
            count(&s, "invalid"),
            count(&s, "failed"),
        ],
        [1, 1, 3, 2, 0]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_answer_lists_each_issuer_once_and_the_root_last() {
    let pem =
        |body: &str| format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n");
    let (leaf, inter, root) = (pem("leaf"), pem("inter"), pem("root"));
    assert_eq!(answer_chain(&leaf, &root), [leaf.clone(), root.clone()]);
    // A plugged-in cert-chain.pem ending with the root: the root is not repeated.
    let chain = format!("{leaf}{inter}{}", root.replace('\n', "\r\n"));
    assert_eq!(answer_chain(&chain, &root), [leaf, inter, root]);
}
