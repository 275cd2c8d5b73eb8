//! Kubernetes mode's authentication of certificate requests: a bearer token is a service account's when the
//! API server's TokenReview says so. The API server here is the replay of `pilot/kube/tests/replay`, answering
//! `POST /apis/authentication.k8s.io/v1/tokenreviews` to the real `kube` client from fixtures in the shape
//! kube-apiserver answers (`pilot/kube/tests/fixtures/tokenreview-*.json`: reviews-v1's token authenticated
//! for `istio-ca`, a token for another audience refused, a `500 InternalError`). They are written to that
//! shape, not recorded: the test against a real kube-apiserver comes with issue 18.
//!
//! What is asserted is what a workload and an operator see: the certificate signed for the identity the API
//! server vouched for, UNAUTHENTICATED for a token it refused, UNAVAILABLE when it fails or is slow, the
//! audience pilot asks for, and that a burst of requests with one token asks the API server once.

#[path = "../../kube/tests/replay/mod.rs"]
mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pilot_ca::Authority;
use pilot_server::secure::{
    Authenticator, CertificateService, CsrLabels, FirstOf, TokenReviewAuthenticator, TokenStore,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use replay::{Replay, ReviewAnswer, fixture};
use sextant_proto::istio_ca::IstioCertificateRequest;
use sextant_proto::istio_ca::istio_certificate_service_server::IstioCertificateService;
use tonic::{Code, Request};
use x509_parser::extensions::GeneralName;

/// reviews-v1's projected service-account token (audience `istio-ca`).
const REVIEWS_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.cmV2aWV3cy12MQ.c2lnbmF0dXJl";
/// A token for the API server's own audience.
const LEGACY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.bGVnYWN5.c2lnbmF0dXJl";
/// A token whose review the API server fails (500).
const FAILING_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.ZmFpbGluZw.c2lnbmF0dXJl";
/// A token whose review takes longer than pilot waits.
const SLOW_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2xvdw.c2lnbmF0dXJl";

const REVIEWS_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";
const RATINGS_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-ratings";

/// How long pilot waits for a review here (5 s in pilot).
const TIMEOUT: Duration = Duration::from_millis(400);

fn scratch() -> std::path::PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pilot-token-review-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn answer(status: u16, body: String) -> ReviewAnswer {
    ReviewAnswer {
        status,
        body,
        delay: Duration::ZERO,
    }
}

/// The API server's replay with one recorded answer per token.
async fn api_server() -> Replay {
    let authenticated = |token: &str| {
        fixture(
            "tokenreview-authenticated.json",
            &[("TOKEN", token.to_string())],
        )
    };
    let refused = fixture(
        "tokenreview-unauthenticated.json",
        &[("TOKEN", LEGACY_TOKEN.to_string())],
    );
    Replay::start_with_reviews(
        Vec::new(),
        vec![
            (REVIEWS_TOKEN, answer(200, authenticated(REVIEWS_TOKEN))),
            (LEGACY_TOKEN, answer(200, refused)),
            (
                FAILING_TOKEN,
                answer(500, fixture("tokenreview-error.json", &[])),
            ),
            (
                SLOW_TOKEN,
                ReviewAnswer {
                    delay: Duration::from_secs(30),
                    ..answer(200, authenticated(SLOW_TOKEN))
                },
            ),
        ],
    )
    .await
}

/// The TokenReview authenticator of the API server at `kubeconfig`, asking for audience `istio-ca`.
async fn token_review(kubeconfig: &std::path::Path) -> Arc<dyn Authenticator> {
    let client = pilot_kube::client(Some(kubeconfig))
        .await
        .expect("kube client");
    let reviewer = pilot_kube::TokenReviewer::new(client, vec!["istio-ca".into()], TIMEOUT);
    Arc::new(TokenReviewAuthenticator::new(reviewer))
}

fn service(authenticator: Arc<dyn Authenticator>) -> CertificateService {
    let authority = Arc::new(
        Authority::self_signed("cluster.local", pilot_ca::DEFAULT_WORKLOAD_TTL).expect("ca"),
    );
    CertificateService::new(authority, authenticator)
}

/// A CSR for `id`, PEM, with a fresh key.
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

/// Asks `service` to sign a CSR for `id` with `token`: the signed certificate's URI SANs, or the status.
async fn ask(service: &CertificateService, id: &str, token: &str) -> Result<Vec<String>, Code> {
    let mut request = Request::new(IstioCertificateRequest {
        csr: csr(id),
        validity_duration: 3600,
        metadata: None,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    let answer = service
        .create_certificate(request)
        .await
        .map_err(|s| s.code())?
        .into_inner();
    let leaf = answer.cert_chain.first().expect("a chain");
    let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let san = cert
        .subject_alternative_name()
        .expect("SAN")
        .expect("SAN present");
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect())
}

fn count(s: &CertificateService, result: &'static str) -> u64 {
    s.outcomes().get_or_create(&CsrLabels { result }).get()
}

#[tokio::test]
async fn the_api_server_decides_the_identity_and_its_failures_are_unavailable() {
    let api = api_server().await;
    let s = service(token_review(&api.kubeconfig(&scratch())).await);

    // Vouched for: signed for exactly that service account.
    assert_eq!(
        ask(&s, REVIEWS_ID, REVIEWS_TOKEN).await,
        Ok(vec![REVIEWS_ID.to_string()])
    );
    let sent = api.reviews();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(sent[0]["kind"], "TokenReview");
    assert_eq!(sent[0]["spec"]["token"], REVIEWS_TOKEN);
    assert_eq!(
        sent[0]["spec"]["audiences"],
        serde_json::json!(["istio-ca"]),
        "the audience pilot asks for"
    );

    // The same token again (a restart storm, a renewal): signed without asking the API server again, and
    // still only for its own identity.
    assert_eq!(
        ask(&s, REVIEWS_ID, REVIEWS_TOKEN).await,
        Ok(vec![REVIEWS_ID.to_string()])
    );
    assert_eq!(
        ask(&s, RATINGS_ID, REVIEWS_TOKEN).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(api.reviews_of(REVIEWS_TOKEN), 1, "answered from the cache");

    // Refused by the API server (a token for its own audience): UNAUTHENTICATED, asked each time.
    for _ in 0..2 {
        assert_eq!(
            ask(&s, REVIEWS_ID, LEGACY_TOKEN).await,
            Err(Code::Unauthenticated)
        );
    }
    assert_eq!(
        api.reviews_of(LEGACY_TOKEN),
        2,
        "a refusal is not remembered"
    );

    // The API server failing: UNAVAILABLE (the workload retries), never remembered.
    for _ in 0..2 {
        assert_eq!(
            ask(&s, REVIEWS_ID, FAILING_TOKEN).await,
            Err(Code::Unavailable)
        );
    }
    assert_eq!(
        api.reviews_of(FAILING_TOKEN),
        2,
        "an error is not remembered"
    );

    // Too slow: UNAVAILABLE once pilot stops waiting.
    let started = Instant::now();
    assert_eq!(
        ask(&s, REVIEWS_ID, SLOW_TOKEN).await,
        Err(Code::Unavailable)
    );
    let waited = started.elapsed();
    assert!(
        waited >= TIMEOUT && waited < TIMEOUT * 5,
        "waited {waited:?} for a {TIMEOUT:?} timeout"
    );

    assert_eq!(
        [
            count(&s, "signed"),
            count(&s, "denied"),
            count(&s, "unauthenticated"),
            count(&s, "unavailable"),
        ],
        [2, 1, 2, 3],
        "pilot_ca_csr_total by result"
    );
}

#[tokio::test]
async fn the_token_files_are_asked_first_and_work_without_the_api_server() {
    let config = scratch();
    std::fs::create_dir_all(config.join("default")).expect("tokens dir");
    std::fs::write(
        config.join("default/bookinfo-ratings"),
        "ratings-file-token\n",
    )
    .expect("token");
    let files: Arc<dyn Authenticator> = Arc::new(TokenStore::new(config.clone()));

    let api = api_server().await;
    let s = service(Arc::new(FirstOf::new(vec![
        files.clone(),
        token_review(&api.kubeconfig(&scratch())).await,
    ])));
    assert_eq!(
        ask(&s, RATINGS_ID, "ratings-file-token").await,
        Ok(vec![RATINGS_ID.to_string()])
    );
    assert_eq!(
        api.reviews_of("ratings-file-token"),
        0,
        "a bootstrap token is never sent to the API server"
    );
    assert_eq!(
        ask(&s, REVIEWS_ID, REVIEWS_TOKEN).await,
        Ok(vec![REVIEWS_ID.to_string()])
    );
    assert_eq!(
        ask(&s, REVIEWS_ID, LEGACY_TOKEN).await,
        Err(Code::Unauthenticated)
    );

    // No API server at all: the files still prove their identities; other tokens are UNAVAILABLE.
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let dir = scratch();
    let kubeconfig = api.kubeconfig(&dir);
    let text = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    std::fs::write(
        &kubeconfig,
        text.replace(&api.addr.to_string(), &gone.to_string()),
    )
    .expect("kubeconfig");
    let s = service(Arc::new(FirstOf::new(vec![
        files,
        token_review(&kubeconfig).await,
    ])));
    assert_eq!(
        ask(&s, RATINGS_ID, "ratings-file-token").await,
        Ok(vec![RATINGS_ID.to_string()])
    );
    assert_eq!(
        ask(&s, REVIEWS_ID, REVIEWS_TOKEN).await,
        Err(Code::Unavailable)
    );
}
