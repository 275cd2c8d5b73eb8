//! Istio's bookinfo, small and in Rust, for `sextant dev`: `productpage` calls `details` and `reviews`;
//! `reviews` v2 and v3 call `ratings`. Each workload is an HTTP/1.1 server; it calls the others through its
//! sidecar (its outbound address, or the service's address where the pod's traffic is captured), naming the service in `Host`, and passes on the headers Istio asks
//! applications to propagate (request id, W3C and B3 trace context, the user). How slow and how often failing
//! each workload is can change while it runs ([`Behaviours`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;

/// The namespace the demo's services live in.
pub const NAMESPACE: &str = "bookinfo";
/// The port every service answers on, as in Istio's bookinfo.
pub const PORT: u16 = 9080;

/// Headers an application passes on from the request it serves to the requests it makes, so that traces
/// join up and routing by user works (Istio's list, and the demo's user header).
pub const PROPAGATED: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-user",
];

/// The demo's services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// The page: details and reviews of a book.
    Productpage,
    /// A book's details.
    Details,
    /// A book's reviews; v2 and v3 with ratings.
    Reviews,
    /// A book's ratings.
    Ratings,
}

impl Service {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Productpage => "productpage",
            Service::Details => "details",
            Service::Reviews => "reviews",
            Service::Ratings => "ratings",
        }
    }

    /// Its host name in the mesh.
    pub fn host(self) -> String {
        format!("{}.{NAMESPACE}.svc.cluster.local", self.name())
    }
}

/// How a workload behaves: added latency and a share of requests answered 503.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Added to every answer, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Percent of requests answered `503` (0–100).
    #[serde(default)]
    pub error_percent: f64,
}

/// Each workload's behaviour by name (`reviews-v3`), changeable while the workloads run.
#[derive(Clone, Debug, Default)]
pub struct Behaviours(Arc<RwLock<HashMap<String, Behaviour>>>);

impl Behaviours {
    /// Replaces every workload's behaviour (workloads not named behave normally).
    pub fn set(&self, all: HashMap<String, Behaviour>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = all;
    }

    /// The behaviour of `workload` now.
    pub fn of(&self, workload: &str) -> Behaviour {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(workload)
            .copied()
            .unwrap_or_default()
    }
}

/// One workload: a version of a service, where it listens, and where its sidecar takes its outbound calls.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Its service.
    pub service: Service,
    /// Its version (`v1`…).
    pub version: &'static str,
    /// Where the application listens (its sidecar forwards inbound requests here).
    pub listen: SocketAddr,
    /// Where its calls to the other services go.
    pub egress: Egress,
}

/// Where a workload sends its calls to the other services; either way it names the service in `Host`.
#[derive(Clone, Debug)]
pub enum Egress {
    /// Every call to its sidecar's outbound listener at this address (a sidecar that captures nothing).
    Sidecar(SocketAddr),
    /// Each service at its own (virtual) address on [`PORT`], as an application in a pod calls a service by
    /// its cluster IP: the pod's iptables rules hand the connection to the sidecar.
    Services(Arc<HashMap<Service, std::net::IpAddr>>),
}

impl Egress {
    /// Where a call to `service` connects.
    pub fn to(&self, service: Service) -> Result<SocketAddr, String> {
        match self {
            Egress::Sidecar(addr) => Ok(*addr),
            Egress::Services(vips) => vips
                .get(&service)
                .map(|ip| SocketAddr::new(*ip, PORT))
                .ok_or_else(|| format!("{} has no address", service.name())),
        }
    }
}

impl Workload {
    /// `SERVICE-VERSION`, the key of its [`Behaviour`].
    pub fn name(&self) -> String {
        format!("{}-{}", self.service.name(), self.version)
    }
}

type Body = Full<Bytes>;

struct Ctx {
    workload: Workload,
    behaviours: Behaviours,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Serves `workload` until `shutdown` completes; `listener` is bound to its address.
pub async fn serve(
    workload: Workload,
    listener: tokio::net::TcpListener,
    behaviours: Behaviours,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let ctx = Arc::new(Ctx {
        workload,
        behaviours,
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let w = &ctx.workload;
    let behaviour = ctx.behaviours.of(&w.name());
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    if fastrand::f64() * 100.0 < behaviour.error_percent {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": format!("{} is failing (the dev config says so)", w.name())}),
        );
    }
    let path = req.uri().path().to_string();
    let id = path.rsplit('/').next().unwrap_or("0").to_string();
    match (w.service, path.split('/').nth(1).unwrap_or("")) {
        (Service::Productpage, "productpage" | "") => productpage(ctx, &req).await,
        (Service::Details, "details") => json(
            StatusCode::OK,
            serde_json::json!({
                "id": id, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                "pages": 200, "publisher": "PublisherA", "language": "English",
            }),
        ),
        (Service::Reviews, "reviews") => reviews(ctx, &req, &id).await,
        (Service::Ratings, "ratings") => json(
            StatusCode::OK,
            serde_json::json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no such page"}),
        ),
    }
}

/// The page: details and reviews, each shown as unavailable when its call fails; 200 unless both fail.
async fn productpage(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let (details, reviews) = tokio::join!(
        call(ctx, req, Service::Details, "/details/0"),
        call(ctx, req, Service::Reviews, "/reviews/0"),
    );
    let status = if details.is_err() && reviews.is_err() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    let shown = |r: Result<serde_json::Value, String>| match r {
        Ok(v) => v,
        Err(e) => serde_json::json!({"unavailable": e}),
    };
    json(
        status,
        serde_json::json!({"book": "The Comedy of Errors", "details": shown(details), "reviews": shown(reviews)}),
    )
}

/// Two reviews; v2 and v3 add the ratings (v2 in black stars, v3 in red).
async fn reviews(ctx: &Ctx, req: &Request<Incoming>, id: &str) -> Response<Body> {
    let version = ctx.workload.version;
    let mut body = serde_json::json!({
        "id": id,
        "version": version,
        "reviews": [
            {"reviewer": "Reviewer1", "text": "An extremely entertaining play by Shakespeare."},
            {"reviewer": "Reviewer2", "text": "Absolutely fun and entertaining."},
        ],
    });
    if version != "v1" {
        let color = if version == "v2" { "black" } else { "red" };
        body["ratings"] = match call(ctx, req, Service::Ratings, &format!("/ratings/{id}")).await {
            Ok(r) => serde_json::json!({"stars": r["ratings"], "color": color}),
            Err(e) => serde_json::json!({"unavailable": e}),
        };
    }
    json(StatusCode::OK, body)
}

/// `GET path` of `service` through the sidecar, with the propagated headers: its JSON body, or why not.
async fn call(
    ctx: &Ctx,
    incoming: &Request<Incoming>,
    service: Service,
    path: &str,
) -> Result<serde_json::Value, String> {
    let uri = format!("http://{}{path}", ctx.workload.egress.to(service)?);
    let mut req = Request::get(uri)
        .header(hyper::header::HOST, format!("{}:{PORT}", service.host()))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    for name in PROPAGATED {
        if let Some(v) = incoming.headers().get(*name) {
            req.headers_mut().insert(*name, v.clone());
        }
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), ctx.client.request(req))
        .await
        .map_err(|_| format!("{} timed out", service.name()))?
        .map_err(|e| format!("{}: {e}", service.name()))?;
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{} answered {status}: {}",
            service.name(),
            String::from_utf8_lossy(&bytes).trim()
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", service.name()))
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
