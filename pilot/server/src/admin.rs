//! The monitoring port: `/metrics`, `/ready`, `/debug/syncz`, `/debug/config_dump?proxy=ID`, `/debug/config`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use pilot_xds::{Connections, types};
use prometheus_client::registry::Registry;

use crate::source::MeshSource;
use crate::watch::ConfigWatch;

/// What the monitoring handlers read.
pub struct Monitor {
    /// The open ADS streams.
    pub connections: Arc<Connections>,
    /// The served mesh.
    pub source: Arc<MeshSource>,
    /// The configuration directory.
    pub watch: Arc<ConfigWatch>,
    /// The Kubernetes registry, in Kubernetes mode.
    pub kube: Option<Arc<pilot_kube::KubeRegistry>>,
    /// Istio's resources from the API server, in Kubernetes mode.
    pub istio: Option<Arc<pilot_kube::istio::IstioConfig>>,
    /// The supervised tasks that are down.
    pub tasks: Arc<sextant_supervise::TaskHealth>,
    /// Every pilot metric.
    pub registry: Registry,
}

/// The router.
pub fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/debug/syncz", get(syncz))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/config", get(config))
        .with_state(monitor)
}

async fn ready(State(m): State<Arc<Monitor>>) -> Response {
    let (generation, _) = m.source.mesh();
    let down = m.tasks.down();
    if !down.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: a task is down\n{}\n", down.join("\n")),
        )
            .into_response();
    }
    if let Some(kube) = &m.kube
        && !kube.synced()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first full list of Kubernetes Services, EndpointSlices and Pods (watch errors are in the log and pilot_kube_watch_errors_total)\n",
        )
            .into_response();
    }
    if let Some(istio) = &m.istio
        && !istio.synced()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first full list of Istio's networking and security resources (watch errors are in the log and pilot_kube_config_watch_errors_total)\n",
        )
            .into_response();
    }
    if generation > 0 {
        let left_out = match m.watch.report().rejected.len() {
            0 => String::new(),
            n => format!(" ({n} resources left out: see /debug/config)"),
        };
        (
            StatusCode::OK,
            format!("ready: generation {generation}{left_out}\n"),
        )
            .into_response()
    } else {
        let why = m.watch.last_errors().join("\n");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no networking configuration loaded\n{why}\n"),
        )
            .into_response()
    }
}

impl Monitor {
    /// The Prometheus text exposition of pilot's metrics (empty if encoding failed, which writing to a
    /// String cannot).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

async fn metrics(State(m): State<Arc<Monitor>>) -> Response {
    let text = m.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn syncz(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    Json(serde_json::Value::Array(
        m.connections
            .statuses()
            .iter()
            .map(pilot_xds::ProxyStatus::to_json)
            .collect(),
    ))
}

async fn config_dump(
    State(m): State<Arc<Monitor>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(id) = q.get("proxy") else {
        return (
            StatusCode::BAD_REQUEST,
            "name the proxy: /debug/config_dump?proxy=NODE_ID (see /debug/syncz)\n",
        )
            .into_response();
    };
    let Some(status) = m.connections.proxy(id) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no connected proxy has node id {id:?}; see /debug/syncz\n"),
        )
            .into_response();
    };
    let configs: Vec<serde_json::Value> = status
        .types
        .iter()
        .map(|(url, t)| {
            serde_json::json!({
                "type": types::short_name(url),
                "type_url": url,
                "version_sent": t.sent_version,
                "version_acked": t.acked_version,
                "resources": t.resources.values().map(|r| serde_json::json!({
                    "name": r.name,
                    "version": r.version,
                    "resource": sextant_proto::json::redact_keys(sextant_proto::json::any_to_json(&r.body)),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({"node": status.node_id, "configs": configs})).into_response()
}

async fn config(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    let (generation, mesh) = m.source.mesh();
    let report = m.watch.report();
    let rejected: Vec<serde_json::Value> = (report.rejected.iter())
        .map(|r| {
            serde_json::json!({
                "kind": r.kind,
                "namespace": r.namespace,
                "name": r.name,
                "at": r.at().map(ToString::to_string),
                "error": r.message(),
            })
        })
        .collect();
    let unread: Vec<serde_json::Value> = (report.unread.iter())
        .map(|u| {
            serde_json::json!({
                "group": u.group,
                "kind": u.kind,
                "at": u.at.to_string(),
                "documents": u.documents,
                "hint": u.hint,
            })
        })
        .collect();
    let security = &mesh.config.security;
    let authorization: Vec<serde_json::Value> = (security.authorization.iter())
        .map(|p| {
            serde_json::json!({
                "namespace": p.namespace,
                "name": p.name,
                "action": format!("{:?}", p.action).to_uppercase(),
                "rules": p.rules.len(),
                "fail_closed": p.fail_closed,
            })
        })
        .collect();
    let peer: Vec<serde_json::Value> = (security.peer_authentication.iter())
        .map(|p| {
            serde_json::json!({
                "namespace": p.namespace,
                "name": p.name,
                "mode": format!("{:?}", p.mode).to_uppercase(),
                "fail_closed": p.fail_closed,
            })
        })
        .collect();
    Json(serde_json::json!({
        "generation": generation,
        "authorization_policies": authorization,
        "peer_authentications": peer,
        "virtual_services": mesh.config.virtual_services.len(),
        "destination_rules": mesh.config.destination_rules.len(),
        "gateways": mesh.config.gateways.len(),
        "services": mesh.services.services().map(|s| &s.hostname).collect::<Vec<_>>(),
        "rejected": rejected,
        "unread": unread,
        "last_rejected": m.watch.last_errors(),
    }))
}
