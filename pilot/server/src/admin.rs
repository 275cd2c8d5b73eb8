//! The monitoring port: `/metrics`, `/ready`, `/debug/syncz`, `/debug/config_dump?proxy=ID`, `/debug/config`.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use pilot_xds::{Connections, types};
use prometheus_client::registry::Registry;
use prost_reflect::{DescriptorPool, DynamicMessage};
use sextant_proto::google::protobuf::Any;

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
    if generation > 0 {
        (StatusCode::OK, format!("ready: generation {generation}\n")).into_response()
    } else {
        let why = m.watch.last_errors().join("\n");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no networking configuration loaded\n{why}\n"),
        )
            .into_response()
    }
}

async fn metrics(State(m): State<Arc<Monitor>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
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
                    "resource": redact(to_json(&r.body)),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({"node": status.node_id, "configs": configs})).into_response()
}

async fn config(State(m): State<Arc<Monitor>>) -> Json<serde_json::Value> {
    let (generation, mesh) = m.source.mesh();
    Json(serde_json::json!({
        "generation": generation,
        "virtual_services": mesh.config.virtual_services.len(),
        "destination_rules": mesh.config.destination_rules.len(),
        "gateways": mesh.config.gateways.len(),
        "services": mesh.services.services().map(|s| &s.hostname).collect::<Vec<_>>(),
        "last_rejected": m.watch.last_errors(),
    }))
}

/// Envoy's message descriptors, for turning what was sent back into JSON.
static ENVOY_TYPES: LazyLock<Option<DescriptorPool>> = LazyLock::new(|| {
    DescriptorPool::decode(sextant_proto::ENVOY_FILE_DESCRIPTOR_SET)
        .map_err(|e| tracing::error!(error = %e, "the embedded Envoy descriptors do not decode"))
        .ok()
});

/// A packed resource as protobuf JSON (`@type` first, nested `Any`s expanded), or an error object.
fn to_json(any: &Any) -> serde_json::Value {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let decoded = ENVOY_TYPES
        .as_ref()
        .ok_or_else(|| "no descriptors".to_string())
        .and_then(|pool| {
            pool.get_message_by_name(name)
                .ok_or_else(|| format!("unknown type {name}"))
        })
        .and_then(|desc| {
            DynamicMessage::decode(desc, any.value.as_slice()).map_err(|e| e.to_string())
        })
        .and_then(|msg| serde_json::to_value(&msg).map_err(|e| e.to_string()));
    match decoded {
        Ok(serde_json::Value::Object(fields)) => {
            let mut out = serde_json::Map::new();
            out.insert("@type".into(), any.type_url.clone().into());
            out.extend(fields);
            serde_json::Value::Object(out)
        }
        Ok(other) => other,
        Err(e) => serde_json::json!({"@type": any.type_url, "error": e, "bytes": any.value.len()}),
    }
}

/// Hides inline private keys (SDS secrets carry the workload's key), as Envoy's own config dump does; file
/// names stay visible.
fn redact(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(fields) => {
                for (k, field) in fields.iter_mut() {
                    if k == "privateKey"
                        && let serde_json::Value::Object(source) = field
                    {
                        for inline in ["inlineBytes", "inlineString"] {
                            if let Some(x) = source.get_mut(inline) {
                                *x = "[redacted]".into();
                            }
                        }
                    } else {
                        walk(field);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use pilot_xds::build;
    use sextant_proto::envoy::config::cluster::v3::Cluster;
    use sextant_proto::envoy::config::core::v3::{TransportSocket, transport_socket};
    use sextant_proto::envoy::config::listener::v3::{Listener, ListenerFilter, listener_filter};
    use sextant_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    use sextant_proto::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;

    use super::{redact, to_json};

    #[test]
    fn gateway_and_tls_resources_decode_to_json() {
        let cluster = Cluster {
            name: "outbound|443||api.example.com".into(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(build::any(
                    &UpstreamTlsContext {
                        sni: "api.example.com".into(),
                        ..Default::default()
                    },
                ))),
            }),
            ..Default::default()
        };
        let json = to_json(&build::any(&cluster)).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(
            json.contains("api.example.com\"") && json.contains("\"sni\""),
            "{json}"
        );
        let listener = Listener {
            name: "0.0.0.0_443".into(),
            listener_filters: vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(build::any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = to_json(&build::any(&listener)).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(json.contains("TlsInspector"), "{json}");
    }

    #[test]
    fn secrets_show_their_certificate_but_not_their_key() {
        use sextant_proto::envoy::config::core::v3::{DataSource, data_source::Specifier};
        use sextant_proto::envoy::extensions::transport_sockets::tls::v3::{
            Secret, TlsCertificate, secret,
        };
        let inline = |s: &str| DataSource {
            specifier: Some(Specifier::InlineBytes(s.as_bytes().to_vec())),
            ..Default::default()
        };
        let secret = Secret {
            name: "default".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline("-----BEGIN CERTIFICATE-----")),
                private_key: Some(inline("-----BEGIN PRIVATE KEY----- very secret")),
                ..Default::default()
            })),
        };
        let json = redact(to_json(&build::any(&secret))).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(json.contains("\"certificateChain\""), "{json}");
        assert!(json.contains("[redacted]"), "{json}");
        // Inline bytes are base64 in JSON: neither form of the key may appear.
        assert!(
            !json.contains("very secret") && !json.contains("LS0tLS1CRUdJTiBQUklWQVRF"),
            "{json}"
        );
    }
}
