//! The proxy's admin endpoints, shaped as Envoy's so that tools, probes and tests written for Envoy work
//! unchanged: `/ready`, `/stats` (`?filter=`), `/stats/prometheus`, `/config_dump`, `/clusters`, `/listeners`,
//! and `POST /drain_listeners`, `POST /quitquitquit`. Served on loopback only by default.

mod certs;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use proxy_state::Snapshots;
use proxy_stats::Stats;
use proxy_xds::{StatusReceiver, types};
use sextant_proto::json::{any_to_json, redact_keys};
use sextant_supervise::TaskHealth;
use tokio::sync::watch;

/// What the admin endpoints read and control.
pub struct Admin {
    /// The proxy's stats.
    pub stats: Arc<Stats>,
    /// The applied configuration.
    pub snapshots: Snapshots,
    /// The xDS client's status.
    pub xds: StatusReceiver,
    /// Turned true by `/drain_listeners` (and on shutdown): listeners stop and connections drain.
    pub drain: watch::Sender<bool>,
    /// Turned true by `/quitquitquit`: the proxy exits.
    pub quit: watch::Sender<bool>,
    /// The proxy's long-lived tasks: one that failed makes the proxy not ready.
    pub health: Arc<TaskHealth>,
}

impl Admin {
    /// Why the proxy is not ready yet, or `None` when it is: draining, or its first clusters, listeners and
    /// the routes they name not applied yet.
    pub fn not_ready(&self) -> Option<String> {
        if *self.drain.borrow() {
            return Some("DRAINING".into());
        }
        if let Some(down) = self.health.down().first() {
            return Some(format!("FAILED: {down}"));
        }
        let status = self.xds.borrow();
        for (type_url, what) in [(types::CLUSTER, "clusters"), (types::LISTENER, "listeners")] {
            if !status.acked.contains_key(type_url) {
                return Some(format!("PRE_INITIALIZING: waiting for {what}"));
            }
        }
        let snapshot = self.snapshots.borrow().clone();
        let missing: Vec<&str> = snapshot
            .listeners
            .values()
            .flat_map(|l| l.route_configs())
            .filter(|r| !snapshot.routers.contains_key(*r))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "INITIALIZING: waiting for routes {}",
                missing.join(", ")
            ));
        }
        None
    }
}

/// The admin router.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/stats", get(stats))
        .route("/stats/prometheus", get(prometheus))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/certs", get(certs))
        .route("/listeners", get(listeners))
        .route("/drain_listeners", post(drain_listeners))
        .route("/quitquitquit", post(quit))
        .with_state(admin)
}

/// The router of the Prometheus port (15090): `/stats/prometheus` alone.
pub fn stats_router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/stats/prometheus", get(prometheus))
        .with_state(admin)
}

async fn ready(State(a): State<Arc<Admin>>) -> Response {
    match a.not_ready() {
        None => "LIVE\n".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Envoy's `/stats`: `name: value` lines, then each histogram as Envoy's quantile line (`P0(nan,0.5) P25(…`), or
/// `?format=json` (counters and gauges); `?filter=` is a regular expression, as Envoy's.
async fn stats(State(a): State<Arc<Admin>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let filter = match q
        .get("filter")
        .map(|f| regex::RegexBuilder::new(f).size_limit(1 << 20).build())
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            return (StatusCode::BAD_REQUEST, format!("invalid regex: {e}\n")).into_response();
        }
    };
    let stats = a
        .stats
        .all()
        .into_iter()
        .filter(|(n, _)| filter.as_ref().is_none_or(|f| f.is_match(n)));
    if q.get("format").is_some_and(|f| f == "json") {
        let stats: Vec<serde_json::Value> = stats
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        return Json(serde_json::json!({"stats": stats})).into_response();
    }
    let histograms = a
        .stats
        .histograms()
        .into_iter()
        .filter(|(n, _)| filter.as_ref().is_none_or(|f| f.is_match(n)));
    stats
        .map(|(name, value)| format!("{name}: {value}\n"))
        .chain(histograms.map(|(name, quantiles)| format!("{name}: {quantiles}\n")))
        .collect::<String>()
        .into_response()
}

async fn prometheus(State(a): State<Arc<Admin>>) -> Response {
    let mut text = a.stats.prometheus();
    // While the proxy exports its own spans, what became of them (`sextant_proxy_otel_*`).
    if sextant_otel::enabled() {
        text.push_str(&sextant_otel::stats::text("sextant_proxy"));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Envoy's config dump shape: one entry per kind, each resource with the version it came in.
/// Envoy's `/config_dump`: per kind, the resources applied with their version; `?resource=LIST` (e.g.
/// `dynamic_active_secrets`) gives that list's entries alone, as Envoy does.
async fn config_dump(
    State(a): State<Arc<Admin>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<serde_json::Value> {
    let snapshot = a.snapshots.borrow().clone();
    let versions = a.xds.borrow().acked.clone();
    type Wrap = fn(serde_json::Value, String) -> serde_json::Value;
    let sections: [(&str, &str, &str, &str, Wrap); 5] = [
        (
            "ClustersConfigDump",
            "dynamic_active_clusters",
            "DynamicCluster",
            types::CLUSTER,
            |r, v| serde_json::json!({"version_info": v, "cluster": r}),
        ),
        (
            "EndpointsConfigDump",
            "dynamic_endpoint_configs",
            "DynamicEndpointConfig",
            types::ENDPOINTS,
            |r, v| serde_json::json!({"version_info": v, "endpoint_config": r}),
        ),
        (
            "ListenersConfigDump",
            "dynamic_listeners",
            "DynamicListener",
            types::LISTENER,
            |r, v| {
                let name = r.get("name").cloned().unwrap_or_default();
                serde_json::json!({"name": name, "active_state": {"version_info": v, "listener": r}})
            },
        ),
        (
            "RoutesConfigDump",
            "dynamic_route_configs",
            "DynamicRouteConfig",
            types::ROUTE,
            |r, v| serde_json::json!({"version_info": v, "route_config": r}),
        ),
        (
            "SecretsConfigDump",
            "dynamic_active_secrets",
            "DynamicSecret",
            types::SECRET,
            |r, v| {
                let name = r.get("name").cloned().unwrap_or_default();
                serde_json::json!({"name": name, "version_info": v, "secret": r})
            },
        ),
    ];
    let entries = |type_url: &str, wrap: Wrap| -> Vec<serde_json::Value> {
        let version = versions.get(type_url).cloned().unwrap_or_default();
        let raw = snapshot
            .raw
            .get(type_url)
            .map(Vec::as_slice)
            .unwrap_or_default();
        raw.iter()
            .map(|r| wrap(redact_keys(any_to_json(r)), version.clone()))
            .collect()
    };
    if let Some(resource) = q.get("resource") {
        let configs: Vec<serde_json::Value> = sections
            .iter()
            .filter(|(_, list, ..)| list == resource)
            .flat_map(|(kind, _, item, type_url, wrap)| {
                entries(type_url, *wrap).into_iter().map(move |mut e| {
                    e["@type"] = format!("type.googleapis.com/envoy.admin.v3.{kind}.{item}").into();
                    e
                })
            })
            .collect();
        return Json(serde_json::json!({ "configs": configs }));
    }
    let configs: Vec<serde_json::Value> = sections
        .iter()
        .map(|(kind, list, _, type_url, wrap)| {
            serde_json::json!({
                "@type": format!("type.googleapis.com/envoy.admin.v3.{kind}"),
                *list: entries(type_url, *wrap),
            })
        })
        .collect();
    Json(serde_json::json!({ "configs": configs }))
}

/// Envoy's `/clusters` text: per cluster its limits, per host its counts.
async fn clusters(State(a): State<Arc<Admin>>) -> String {
    let snapshot = a.snapshots.borrow().clone();
    let mut names: Vec<&String> = snapshot.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let cluster = &snapshot.clusters[name];
        let l = cluster.config().limits;
        let _ = writeln!(
            out,
            "{name}::default_priority::max_connections::{}",
            l.max_connections
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_pending_requests::{}",
            l.max_pending_requests
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_requests::{}",
            l.max_requests
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_retries::{}",
            l.max_retries
        );
        for host in cluster.hosts().all() {
            let addr = host.address;
            let _ = writeln!(out, "{name}::{addr}::rq_active::{}", host.active());
            let _ = writeln!(out, "{name}::{addr}::weight::{}", host.weight);
            let health = if host.healthy {
                "healthy"
            } else {
                "/eds_health_status=unhealthy"
            };
            let _ = writeln!(out, "{name}::{addr}::health_flags::{health}");
        }
    }
    out
}

async fn certs(State(a): State<Arc<Admin>>) -> Json<serde_json::Value> {
    let snapshot = a.snapshots.borrow().clone();
    Json(certs::certs(&snapshot))
}

/// Envoy's `/listeners` text: `name::address`.
async fn listeners(State(a): State<Arc<Admin>>) -> String {
    let snapshot = a.snapshots.borrow().clone();
    snapshot
        .listeners
        .values()
        .map(|l| format!("{}::{}\n", l.name, l.address))
        .collect()
}

async fn drain_listeners(State(a): State<Arc<Admin>>) -> &'static str {
    a.drain.send_replace(true);
    "OK\n"
}

async fn quit(State(a): State<Arc<Admin>>) -> &'static str {
    a.quit.send_replace(true);
    "OK\n"
}
