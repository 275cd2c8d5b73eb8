//! The application's probes, rewritten as Istio's injector rewrites them: with the sidecar capturing inbound
//! traffic (and mTLS required), the kubelet's plain HTTP, TCP or gRPC probe would not reach the application,
//! so the kubelet asks the sidecar's status port (`/app-health/CONTAINER/livez|readyz|startupz`), and the
//! sidecar runs the original probe from inside the pod. The originals travel in the sidecar's
//! `ISTIO_KUBE_APP_PROBERS` (Istio's format), with named ports resolved to numbers. Exec probes, and probes
//! whose named port the container does not declare, are left as they are.

use serde_json::{Map, Value, json};

/// The sidecar's status port, where the rewritten probes go.
pub const STATUS_PORT: u16 = 15020;

/// The probe fields of a container and the path each becomes.
const KINDS: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// Rewrites the probes of `containers` in place; the originals by path (`ISTIO_KUBE_APP_PROBERS`).
pub fn rewrite(containers: &mut [Value]) -> Map<String, Value> {
    let mut probers = Map::new();
    for container in containers {
        let name = container["name"].as_str().unwrap_or_default().to_string();
        let ports = container["ports"].clone();
        for (field, kind) in KINDS {
            let Some(probe) = container.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(original) = prober(probe, &ports) else {
                continue;
            };
            let path = format!("/app-health/{name}/{kind}");
            for handler in ["httpGet", "tcpSocket", "grpc"] {
                probe.remove(handler);
            }
            probe.insert(
                "httpGet".into(),
                json!({"path": path, "port": STATUS_PORT, "scheme": "HTTP"}),
            );
            probers.insert(path, original);
        }
    }
    probers
}

/// The original probe as the sidecar runs it, or `None` when it is not rewritten.
fn prober(probe: &Map<String, Value>, ports: &Value) -> Option<Value> {
    let (handler, action) = ["httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .find_map(|h| Some((h, probe.get(h)?.as_object()?)))?;
    let mut action = action.clone();
    let port = resolve(action.get("port")?, ports)?;
    action.insert("port".into(), json!(port));
    let mut out = Map::new();
    out.insert(handler.into(), Value::Object(action));
    if let Some(timeout) = probe.get("timeoutSeconds") {
        out.insert("timeoutSeconds".into(), timeout.clone());
    }
    Some(Value::Object(out))
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve(port: &Value, ports: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64().filter(|p| (1..=65535).contains(p)),
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => Some(n).filter(|p| (1..=65535).contains(p)),
            Err(_) => ports
                .as_array()?
                .iter()
                .find(|p| p["name"].as_str() == Some(s))?["containerPort"]
                .as_u64(),
        },
        _ => None,
    }
}
