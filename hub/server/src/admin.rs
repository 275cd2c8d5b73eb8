//! Admin HTTP: `/healthz`, `/readyz`, `/metrics`, `/debug/config`, the query API (`/api/v1/…`,
//! `docs/dashboard.md`) over the window of recent telemetry or, with `--prometheus-url`, partly over a
//! Prometheus ([`crate::query`]); and the adapters' Prometheus exposition (`:42422/metrics`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::query::{QueryError, Source};
use crate::state::HubState;

/// What the admin handlers read: the hub, and where the query API's answers come from.
#[derive(Clone)]
struct Admin {
    hub: Arc<HubState>,
    source: Arc<Source>,
}

impl FromRef<Admin> for Arc<HubState> {
    fn from_ref(admin: &Admin) -> Arc<HubState> {
        admin.hub.clone()
    }
}

/// The admin router; `source` answers the graph, services, RED and rate limits.
pub fn router(state: Arc<HubState>, source: Arc<Source>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config", get(debug_config))
        .route("/api/v1/graph", get(graph))
        .route("/api/v1/services", get(services))
        .route("/api/v1/services/{namespace}/{name}/red", get(red))
        .route("/api/v1/decisions", get(decisions))
        .route("/api/v1/ratelimits", get(rate_limits))
        .route("/api/v1/traces", get(traces))
        .route("/api/v1/window", get(window_status))
        .route(
            "/api/v1/adapters",
            get(|State(state): State<Arc<HubState>>| async move {
                Json(state.telemetry.adapter_health())
            }),
        )
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard/") }),
        )
        .route(
            "/dashboard/",
            get(|| asset(DASHBOARD_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/dashboard/app.js",
            get(|| asset(DASHBOARD_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/dashboard/style.css",
            get(|| asset(DASHBOARD_CSS, "text/css; charset=utf-8")),
        )
        .with_state(Admin { hub: state, source })
}

/// The dashboard: plain HTML, CSS and JavaScript reading the query API, compiled into the binary (no build
/// step, nothing fetched from elsewhere).
const DASHBOARD_HTML: &str = include_str!("../dashboard/index.html");
const DASHBOARD_JS: &str = include_str!("../dashboard/app.js");
const DASHBOARD_CSS: &str = include_str!("../dashboard/style.css");

async fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The query API's parameters.
#[derive(serde::Deserialize, Default)]
struct Query {
    /// How far back: `30s`, `5m`, `1h` (default 5m; from the window, at most its span).
    window: Option<String>,
    /// How many items at most (default 100, at most 1000).
    limit: Option<usize>,
}

type ApiError = (StatusCode, Json<serde_json::Value>);

fn bad_request(message: String) -> ApiError {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": message})),
    )
}

/// The source could not answer (Prometheus down, slow or refusing): 502, saying which and why.
fn bad_gateway(e: QueryError) -> ApiError {
    (
        StatusCode::BAD_GATEWAY,
        Json(serde_json::json!({"error": e.to_string()})),
    )
}

impl Query {
    fn window(&self) -> Result<std::time::Duration, ApiError> {
        let Some(text) = self.window.as_deref() else {
            return Ok(std::time::Duration::from_secs(300));
        };
        let (number, unit) = text.split_at(
            text.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len()),
        );
        let seconds = match (number.parse::<u64>(), unit) {
            (Ok(n), "s") => Some(n),
            (Ok(n), "m") => n.checked_mul(60),
            (Ok(n), "h") => n.checked_mul(3600),
            _ => None,
        };
        match seconds {
            Some(s) if s > 0 => Ok(std::time::Duration::from_secs(s)),
            _ => Err(bad_request(format!(
                "window {text:?}: want a number of seconds, minutes or hours, like 30s, 5m or 1h"
            ))),
        }
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(100).min(1000)
    }
}

async fn graph(
    State(admin): State<Admin>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let window = q.window()?;
    let answer = admin.source.graph(&admin.hub.window, window).await;
    answer.map(Json).map_err(bad_gateway)
}

async fn services(
    State(admin): State<Admin>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let window = q.window()?;
    let answer = admin.source.services(&admin.hub.window, window).await;
    answer.map(Json).map_err(bad_gateway)
}

async fn red(
    State(admin): State<Admin>,
    axum::extract::Path((namespace, name)): axum::extract::Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let window = q.window()?;
    let answer = (admin.source)
        .red(&admin.hub.window, &namespace, &name, window)
        .await;
    answer.map(Json).map_err(bad_gateway)
}

async fn decisions(
    State(state): State<Arc<HubState>>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Json<serde_json::Value> {
    Json(state.window.decisions(q.limit()))
}

async fn rate_limits(
    State(admin): State<Admin>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let window = q.window()?;
    let answer = admin.source.rate_limits(&admin.hub.window, window).await;
    answer.map(Json).map_err(bad_gateway)
}

async fn traces(
    State(state): State<Arc<HubState>>,
    axum::extract::Query(q): axum::extract::Query<Query>,
) -> Json<serde_json::Value> {
    Json(state.window.traces(q.limit()))
}

async fn window_status(State(state): State<Arc<HubState>>) -> Json<serde_json::Value> {
    Json(state.window.status())
}

async fn readyz(State(state): State<Arc<HubState>>) -> impl IntoResponse {
    let down = state.tasks.down();
    if !down.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: a task is down\n{}\n", down.join("\n")),
        );
    }
    match state.snapshot() {
        Some(s) => {
            let detail = match state.last_failure() {
                Some(f) if f.partial => format!(
                    "{} errors: invalid resources left out or kept at their last good version (see /debug/config)\n",
                    f.errors.len()
                ),
                _ => String::new(),
            };
            (
                StatusCode::OK,
                format!("ready: revision {}\n{detail}", s.revision),
            )
        }
        None => {
            let why = state
                .last_failure()
                .map(|f| f.errors.join("\n"))
                .unwrap_or_else(|| "loading".to_string());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: no configuration loaded\n{why}\n"),
            )
        }
    }
}

async fn metrics(State(state): State<Arc<HubState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn debug_config(State(state): State<Arc<HubState>>) -> impl IntoResponse {
    let active = state
        .snapshot()
        .map(|s| s.to_json())
        .unwrap_or(serde_json::Value::Null);
    let failure = state.last_failure();
    let kept = failure.as_ref().map(|f| f.kept.clone()).unwrap_or_default();
    let rejected = failure.map(|f| f.errors);
    Json(serde_json::json!({
        "active": active,
        "telemetry": state.telemetry.to_json(),
        "lastRejected": rejected,
        "keptLastGood": kept,
    }))
}

/// The router of the adapters' exposition port: what adapters recorded through the host metrics registry.
pub fn exposition_router(state: Arc<HubState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<Arc<HubState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    state.telemetry.runtime().registry().encode(),
                )
            }),
        )
        .with_state(state)
}
