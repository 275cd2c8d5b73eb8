//! A replay of API-server responses (see `../fixtures/README.md`): no Kubernetes API server can run on
//! the build machines, so this small HTTP server answers the list and watch requests the real `kube`
//! client makes, from the fixtures. Lists are answered in order (the last one repeats); a watch streams
//! the event lines the test releases with [`Replay::release`], and ends after an `ERROR` event, as the API
//! server closes a watch after reporting `410 Gone`. TokenReviews (`POST` to [`TOKEN_REVIEWS`]) are answered
//! by the token in their `spec`, from the answers the test recorded ([`ReviewAnswer`]), and their bodies
//! kept ([`Replay::reviews`]). Shared by `pilot/kube/tests`, `pilot/server/tests` and `cli/tests`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

/// The collection paths the registry watches.
pub const SERVICES: &str = "/api/v1/services";
/// EndpointSlices of all namespaces.
pub const ENDPOINT_SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
/// Pods of all namespaces.
pub const PODS: &str = "/api/v1/pods";
/// The TokenReview collection (cluster-scoped; only `POST`ed to).
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// What the API server answers a TokenReview of one token.
#[derive(Clone, Debug)]
pub struct ReviewAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body (a `TokenReview`, or a `Status` for an error).
    pub body: String,
    /// How long it takes to answer.
    pub delay: Duration,
}

/// A fixture file's text with `{{NAME}}` placeholders filled from `vars`.
pub fn fixture(name: &str, vars: &[(&str, String)]) -> String {
    // Compiled into pilot/kube's tests (fixtures in its tests/), cli's (one level below the root) and
    // pilot/server's (beside pilot/kube).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = [
        "tests/fixtures",
        "../pilot/kube/tests/fixtures",
        "../kube/tests/fixtures",
    ]
    .iter()
    .map(|dir| manifest.join(dir).join(name))
    .find(|p| p.exists())
    .unwrap_or_else(|| manifest.join("tests/fixtures").join(name));
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(
        !text.contains("{{"),
        "fixture {name}: a placeholder is left unfilled"
    );
    text
}

/// The recorded event lines of a `.jsonl` fixture.
pub fn events(name: &str, vars: &[(&str, String)]) -> Vec<String> {
    fixture(name, vars)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

struct Collection {
    lists: Mutex<VecDeque<String>>,
    events: mpsc::UnboundedSender<String>,
    watch: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
}

#[derive(Default)]
struct Shared {
    collections: HashMap<&'static str, Collection>,
    reviews: HashMap<String, ReviewAnswer>,
    requests: Mutex<Vec<String>>,
    review_bodies: Mutex<Vec<serde_json::Value>>,
}

/// The replay server.
pub struct Replay {
    /// Where it listens (`http://ADDR`).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Replay {
    /// Starts on a free port of 127.0.0.1, answering the lists of each collection path in order.
    pub async fn start(lists: Vec<(&'static str, Vec<String>)>) -> Replay {
        Replay::start_with_reviews(lists, Vec::new()).await
    }

    /// Starts as [`Replay::start`], also answering TokenReviews of each token as recorded in `reviews`.
    pub async fn start_with_reviews(
        lists: Vec<(&'static str, Vec<String>)>,
        reviews: Vec<(&str, ReviewAnswer)>,
    ) -> Replay {
        let mut shared = Shared {
            reviews: reviews
                .into_iter()
                .map(|(token, answer)| (token.to_string(), answer))
                .collect(),
            ..Shared::default()
        };
        for (path, texts) in lists {
            let (tx, rx) = mpsc::unbounded_channel();
            shared.collections.insert(
                path,
                Collection {
                    lists: Mutex::new(texts.into()),
                    events: tx,
                    watch: Arc::new(tokio::sync::Mutex::new(rx)),
                },
            );
        }
        let shared = Arc::new(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind replay server");
        let addr = listener.local_addr().expect("replay addr");
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Replay { addr, shared }
    }

    /// Releases one recorded watch event line of `path` to its (current or next) watch stream.
    pub fn release(&self, path: &str, line: &str) {
        self.shared.collections[path]
            .events
            .send(line.to_string())
            .expect("watch channel open");
    }

    /// The requests answered so far (`PATH?QUERY`).
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The TokenReviews posted so far, as sent.
    pub fn reviews(&self) -> Vec<serde_json::Value> {
        self.shared
            .review_bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many TokenReviews of `token` were posted.
    pub fn reviews_of(&self, token: &str) -> usize {
        self.reviews()
            .iter()
            .filter(|r| r["spec"]["token"] == token)
            .count()
    }

    /// How many list (not watch) requests `path` got.
    pub fn lists_of(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.split('?').next() == Some(path) && !r.contains("watch=true"))
            .count()
    }

    /// Writes a kubeconfig pointing at this server into `dir`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: replay\n  cluster:\n    server: http://{}\nusers:\n- name: replay\n  user: {{}}\ncontexts:\n- name: replay\n  context:\n    cluster: replay\n    user: replay\n    namespace: default\ncurrent-context: replay\n",
                self.addr
            ),
        )
        .expect("write kubeconfig");
        path
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(uri.to_string());
    if method == Method::POST && uri.path() == TOKEN_REVIEWS {
        return review(&shared, &body).await;
    }
    let Some(collection) = shared.collections.get(uri.path()) else {
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("the server could not find the requested resource ({})", uri.path()),
            "reason": "NotFound", "code": 404});
        return (StatusCode::NOT_FOUND, axum::Json(status)).into_response();
    };
    let json = [(header::CONTENT_TYPE, "application/json")];
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let guard = collection.watch.clone().lock_owned().await;
        let stream = futures::stream::unfold((guard, false), |(mut guard, ended)| async move {
            if ended {
                return None;
            }
            let line = guard.recv().await?;
            let ended = line.contains(r#""type":"ERROR""#);
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n"))),
                (guard, ended),
            ))
        });
        return (json, Body::from_stream(stream)).into_response();
    }
    let text = {
        let mut lists = collection.lists.lock().unwrap_or_else(|p| p.into_inner());
        if lists.len() > 1 {
            lists.pop_front()
        } else {
            lists.front().cloned()
        }
    };
    match text {
        Some(text) => (json, text).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no recorded list").into_response(),
    }
}

/// A TokenReview answered from the recorded answers by its `spec.token`.
async fn review(shared: &Shared, body: &[u8]) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    let Ok(sent) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    shared
        .review_bodies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(sent.clone());
    let answer = sent["spec"]["token"]
        .as_str()
        .and_then(|t| shared.reviews.get(t));
    let Some(answer) = answer else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "replay: no answer recorded for this token",
        )
            .into_response();
    };
    tokio::time::sleep(answer.delay).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json, answer.body.clone()).into_response()
}
