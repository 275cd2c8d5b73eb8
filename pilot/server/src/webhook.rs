//! Pilot's validating admission webhook (istiod serves one too): the API server asks, over HTTPS with a
//! certificate from the mesh CA (whose root is the webhook configuration's `caBundle`), whether a resource
//! may be stored. `POST /validate` takes an `admission.k8s.io/v1` AdmissionReview and answers it: each
//! [`Admission`] judges the kinds it knows (pilot's own, [`IstioValidation`], judges Istio's networking and
//! security kinds with the validation pilot applies to files; the `sextant` binary adds the hub's kinds), and
//! a refusal carries the same field-level message `sextant validate` prints, which `kubectl apply` shows.
//! A kind nobody knows is allowed (the webhook configuration decides what is sent here); deletions are
//! always allowed. With an injector ([`WebhookOptions::injector`]), `POST /inject` is the sidecar injector
//! (istiod's `/inject`): a Pod being created comes back with a JSON Patch adding its sidecar
//! ([`pilot_inject`]); a Pod whose annotations cannot work is refused, naming the annotation. Requests are
//! bounded ([`MAX_REVIEW_BYTES`], [`MAX_CONNECTIONS`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pilot_ca::Authority;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_stream::StreamExt;

use crate::PilotError;
use crate::secure::ServingCertificate;

/// The largest AdmissionReview read (the API server's own limit on an object is 3 MiB, plus the review).
pub const MAX_REVIEW_BYTES: usize = 4 << 20;
/// Connections served at once; more wait for a free slot.
pub const MAX_CONNECTIONS: usize = 256;

/// Judges resources of the kinds it knows.
pub trait Admission: Send + Sync {
    /// Whether `object`, a resource of `group` and `kind`, may be stored: `None` when the kind is not this
    /// one's, `Some(Err(why))` to refuse it.
    fn validate(&self, group: &str, kind: &str, object: &Value) -> Option<Result<(), String>>;
}

/// How the webhook runs.
#[derive(Clone)]
pub struct WebhookOptions {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The names its certificate carries (the webhook Service's, `sextant-pilot.sextant-system.svc`).
    pub dns_names: Vec<String>,
    /// The CA that signs its certificate.
    pub authority: Arc<Authority>,
    /// Who judges what, asked in order (pilot's [`IstioValidation`] is asked after these).
    pub admissions: Vec<Arc<dyn Admission>>,
    /// What the sidecar injector adds to Pods; `None`: no `/inject`.
    pub injector: Option<Arc<pilot_inject::Options>>,
}

impl std::fmt::Debug for WebhookOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookOptions")
            .field("addr", &self.addr)
            .field("dns_names", &self.dns_names)
            .finish_non_exhaustive()
    }
}

/// Istio's kinds, judged as pilot judges them in files, one resource alone (the resources it names aside).
#[derive(Debug, Default)]
pub struct IstioValidation;

impl Admission for IstioValidation {
    fn validate(&self, group: &str, kind: &str, object: &Value) -> Option<Result<(), String>> {
        if group != "networking.istio.io" && group != "security.istio.io" {
            return None;
        }
        let files = sextant_resources::ConfigFiles::from_texts(vec![(
            document_path(kind, object),
            serde_json::to_string_pretty(object).unwrap_or_default(),
        )]);
        let set = pilot_config::NetworkingSet::load_with(&files, &mut Default::default());
        let judged = pilot_config::validate_each(&set);
        let errors: Vec<String> = judged
            .rejected
            .iter()
            .flat_map(|r| &r.errors)
            .filter(|e| !names_another_resource(e))
            .map(|e| without_location(&e.to_string()))
            .collect();
        Some(if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        })
    }
}

/// Whether `e` is about another resource the reviewed one names (a Gateway, a DestinationRule's subset):
/// resources are applied in the user's order, so those are judged when pilot loads them, not here (as
/// istiod's webhook does).
fn names_another_resource(e: &sextant_resources::ConfigError) -> bool {
    matches!(e, sextant_resources::ConfigError::Invalid { message, .. }
        if message.starts_with("unknown gateway ") || message.starts_with("unknown subset "))
}

/// The path a reviewed resource is known by in error messages: `admission/KIND/NAMESPACE/NAME`.
pub fn document_path(kind: &str, object: &Value) -> std::path::PathBuf {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    std::path::Path::new("admission")
        .join(kind)
        .join(text(&meta["namespace"]))
        .join(text(&meta["name"]))
}

/// `message` without its leading `PATH:LINE: ` (the reviewed document's line means nothing to the user).
pub fn without_location(message: &str) -> String {
    match message.strip_prefix("admission/") {
        Some(rest) => rest
            .split_once(": ")
            .map_or(message.to_string(), |(_, m)| m.to_string()),
        None => message.to_string(),
    }
}

/// The webhook, bound, with what it serves.
pub struct Webhook {
    /// The bound address.
    pub addr: SocketAddr,
    listener: tokio::net::TcpListener,
    serving: Arc<ServingCertificate>,
    routes: Arc<Routes>,
}

/// What the webhook's paths answer with.
struct Routes {
    admissions: Vec<Arc<dyn Admission>>,
    injector: Option<Arc<pilot_inject::Options>>,
}

/// Binds the webhook's port and issues its certificate.
pub async fn bind(options: WebhookOptions) -> Result<Webhook, PilotError> {
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| PilotError::Bind {
            what: "the admission webhook",
            addr: options.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| PilotError::Bind {
        what: "the admission webhook",
        addr: options.addr,
        source,
    })?;
    let (authority, names) = (options.authority, options.dns_names);
    let serving =
        tokio::task::spawn_blocking(move || ServingCertificate::issue_for(authority, names))
            .await
            .map_err(|e| PilotError::ServingCertificate(e.to_string()))??;
    let mut admissions = options.admissions;
    admissions.push(Arc::new(IstioValidation));
    Ok(Webhook {
        addr,
        listener,
        serving,
        routes: Arc::new(Routes {
            admissions,
            injector: options.injector,
        }),
    })
}

impl Webhook {
    /// Its certificate (renewed by a task of the caller's).
    pub fn serving(&self) -> Arc<ServingCertificate> {
        self.serving.clone()
    }

    /// Serves until the task is aborted.
    pub async fn serve(self) {
        let config = match self.serving.server_config_for(&[b"h2", b"http/1.1"]) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "admission webhook: no TLS configuration");
                return;
            }
        };
        let mut connections = sextant_tls_incoming::accept(self.listener, config);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        while let Some(connection) = connections.next().await {
            let Ok(connection) = connection else {
                continue;
            };
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let routes = self.routes.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let routes = routes.clone();
                    async move { Ok::<_, Infallible>(handle(routes, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(connection), service)
                    .await;
                drop(slot);
            });
        }
    }
}

async fn handle(routes: Arc<Routes>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let inject = match (req.uri().path(), &routes.injector) {
        ("/validate", _) => false,
        ("/inject", Some(_)) => true,
        _ => {
            let serves = if routes.injector.is_some() {
                "POST /validate and POST /inject"
            } else {
                "POST /validate (no /inject: pilot runs without --inject-image)"
            };
            return plain(
                StatusCode::NOT_FOUND,
                &format!("pilot's webhook serves {serves}"),
            );
        }
    };
    if req.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview");
    }
    let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the AdmissionReview could not be read whole (at most {MAX_REVIEW_BYTES} bytes): {e}"
                ),
            );
        }
    };
    let review: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("not an AdmissionReview: {e}"),
            );
        }
    };
    // Judging compiles CEL and parses documents, injecting diffs whole Pods: off the async workers.
    let answer = tokio::task::spawn_blocking(move || match &routes.injector {
        Some(options) if inject => inject_answer(options, &review),
        _ => review_answer(&routes.admissions, &review),
    })
    .await
    .unwrap_or_else(|e| json!({"error": e.to_string()}));
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The AdmissionReview answering `review` (pure but for what the admissions do).
pub fn review_answer(admissions: &[Arc<dyn Admission>], review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let group = request["kind"]["group"].as_str().unwrap_or("");
    let kind = request["kind"]["kind"].as_str().unwrap_or("");
    let verdict = if request["operation"] == "DELETE" {
        Ok(())
    } else {
        admissions
            .iter()
            .find_map(|a| a.validate(group, kind, &request["object"]))
            .unwrap_or(Ok(()))
    };
    let response = match verdict {
        Ok(()) => json!({"uid": uid, "allowed": true}),
        Err(message) => {
            tracing::info!(group, kind, name = %request["name"], "admission refused: {message}");
            json!({
                "uid": uid,
                "allowed": false,
                "status": {"code": 422, "reason": "Invalid", "message": message},
            })
        }
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

/// The AdmissionReview answering `review` of a Pod with `options`' sidecar (pure): the JSON Patch adding it,
/// nothing for a Pod left alone (and anything but a Pod being created), a refusal naming what cannot work.
pub fn inject_answer(options: &pilot_inject::Options, review: &Value) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let (namespace, name) = (
        request["namespace"].as_str().unwrap_or_default(),
        request["object"]["metadata"]["name"]
            .as_str()
            .or(request["object"]["metadata"]["generateName"].as_str())
            .unwrap_or_default(),
    );
    let is_pod_creation = request["kind"]["group"] == ""
        && request["kind"]["kind"] == "Pod"
        && request["operation"] == "CREATE";
    let response = if !is_pod_creation {
        json!({"uid": uid, "allowed": true})
    } else {
        match pilot_inject::inject(&request["object"], options) {
            Ok(pilot_inject::Outcome::Injected { patch, .. }) => {
                tracing::debug!(namespace, pod = name, "sidecar injected");
                let patch = serde_json::to_vec(&patch).unwrap_or_default();
                json!({
                    "uid": uid,
                    "allowed": true,
                    "patchType": "JSONPatch",
                    "patch": base64::engine::general_purpose::STANDARD.encode(patch),
                })
            }
            Ok(pilot_inject::Outcome::Skipped(why)) => {
                tracing::debug!(namespace, pod = name, "not injected: {why}");
                json!({"uid": uid, "allowed": true})
            }
            Err(e) => {
                tracing::info!(namespace, pod = name, "sidecar injection refused: {e}");
                json!({
                    "uid": uid,
                    "allowed": false,
                    "status": {"code": 400, "reason": "BadRequest",
                        "message": format!("sextant sidecar injector: {e}")},
                })
            }
        }
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(operation: &str, group: &str, kind: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "7f0e-1",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "operation": operation,
                "name": "reviews",
                "object": {
                    "apiVersion": format!("{group}/v1"),
                    "kind": kind,
                    "metadata": {"name": "reviews", "namespace": "shop", "uid": "x", "generation": 2},
                    "spec": spec,
                },
            },
        })
    }

    fn routes(first: u32, second: u32) -> Value {
        json!({"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": first},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": second},
        ]}]})
    }

    #[test]
    fn istio_kinds_are_judged_alone_and_the_answer_names_the_field() {
        let istio: Vec<Arc<dyn Admission>> = vec![Arc::new(IstioValidation)];
        let bad = review_answer(
            &istio,
            &review(
                "CREATE",
                "networking.istio.io",
                "VirtualService",
                routes(90, 20),
            ),
        );
        assert_eq!(bad["response"]["uid"], "7f0e-1");
        assert_eq!(bad["response"]["allowed"], false);
        let message = bad["response"]["status"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.starts_with(
                "VirtualService shop/reviews: spec.http[0].route: route weights sum to 110"
            ),
            "{message}"
        );
        // Subsets defined by a DestinationRule the webhook does not see are not its to judge.
        let good = review_answer(
            &istio,
            &review(
                "UPDATE",
                "networking.istio.io",
                "VirtualService",
                routes(90, 10),
            ),
        );
        assert_eq!(good["response"]["allowed"], true, "{good}");
        let deleted = review_answer(
            &istio,
            &review(
                "DELETE",
                "networking.istio.io",
                "VirtualService",
                routes(90, 20),
            ),
        );
        assert_eq!(deleted["response"]["allowed"], true);
        let other = review_answer(&istio, &review("CREATE", "apps", "Deployment", json!({})));
        assert_eq!(
            other["response"]["allowed"], true,
            "kinds nobody knows pass"
        );
    }

    #[test]
    fn a_pod_being_created_comes_back_with_the_patch_adding_its_sidecar() {
        let options = pilot_inject::Options::new("sextant:1", "https://pilot:15012");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]}});
        let mut asked = review("CREATE", "", "Pod", json!(null));
        asked["request"]["object"] = pod.clone();
        let answer = inject_answer(&options, &asked);
        let response = &answer["response"];
        assert_eq!(
            (&response["uid"], &response["allowed"]),
            (&json!("7f0e-1"), &json!(true))
        );
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap_or_default())
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON Patch");
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch).expect("applies");
        assert_eq!(
            patched["spec"]["containers"][1]["name"],
            pilot_inject::SIDECAR
        );

        // Anything else passes untouched; an annotation that cannot work refuses the Pod, naming it.
        asked["request"]["operation"] = json!("UPDATE");
        assert!(
            inject_answer(&options, &asked)["response"]
                .get("patch")
                .is_none()
        );
        asked["request"]["operation"] = json!("CREATE");
        asked["request"]["object"]["metadata"]["annotations"] =
            json!({"sidecar.istio.io/proxyCPU": "fast"});
        let refused = inject_answer(&options, &asked);
        assert_eq!(refused["response"]["allowed"], false);
        assert!(
            refused["response"]["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("sidecar.istio.io/proxyCPU: \"fast\""),
            "{refused}"
        );
    }
}
