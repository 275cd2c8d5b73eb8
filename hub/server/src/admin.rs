//! Admin HTTP: `/healthz`, `/readyz`, `/metrics`, `/debug/config`; and the adapters' Prometheus exposition
//! (`:42422/metrics`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::state::HubState;

/// The admin router.
pub fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/config", get(debug_config))
        .with_state(state)
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
