//! The mesh setup's configuration (issue 16): a client's sidecar `front` calls the service `web` over mesh
//! mTLS (DestinationRule ISTIO_MUTUAL, certificates from pilot's CA over SDS), and `web`'s sidecar serves it
//! on a Sidecar ingress port (captureMode NONE, bound on 127.0.0.1, `defaultEndpoint` the backend). Both
//! sidecars run without interception: `front` binds `127.0.0.1_PORT` for each of web's service ports. The
//! hub is a mesh service too (ServiceEntry, DestinationRule DISABLE) so that pilot, given `--hub-service`,
//! gives the sidecars its cluster and filters; its one Policy denies `/private` to `web`, so the load's `/`
//! is allowed and the decision cacheable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::setup::{HeldPort, Node, Service};

/// The hub's service, as `--hub-service` names it.
pub const HUB_HOST: &str = "sextant-hub.sextant-system.svc.cluster.local";
/// The tested service, the `Host` of every request.
const WEB_HOST: &str = "web.bench.svc.cluster.local";

/// The client's sidecar, the one the load talks to (namespace `bench`, workload and service account
/// `front`); the node's `cluster` is the workload the hub's access-log service reports for Envoy.
pub const FRONT: Node = Node {
    role: "front",
    id: "sidecar~127.0.0.1~front-1.bench~bench.svc.cluster.local",
    envoy: "cluster: front, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: bench, SERVICE_ACCOUNT: front, \
            LABELS: {app: front}}",
    env: &[
        ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
        ("POD_NAMESPACE", "bench"),
        ("SERVICE_ACCOUNT", "front"),
        ("ISTIO_METAJSON_LABELS", r#"{"app": "front"}"#),
    ],
};

/// The server's sidecar: the Sidecar `web` selects it by its label, and the hub's Policy by its workload
/// name (the `app` label).
pub const WEB: Node = Node {
    role: "web",
    id: "sidecar~127.0.0.1~web-1.bench~bench.svc.cluster.local",
    envoy: "cluster: web, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: bench, SERVICE_ACCOUNT: web, \
            LABELS: {app: web}}",
    env: &[
        ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
        ("POD_NAMESPACE", "bench"),
        ("SERVICE_ACCOUNT", "web"),
        ("ISTIO_METAJSON_LABELS", r#"{"app": "web"}"#),
    ],
};

/// The hub's one Policy: `/private` denied to `web`. Its selector and rule read the destination's workload
/// name and the path, so every request for `/` has the same decision, cached by web's sidecar.
const POLICY: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: web-private, namespace: bench}
spec:
  selector: 'destination.workload.name == "web"'
  rules:
  - name: no-private
    when: 'request.url_path == "/private"'
    action: DENY
"#;

/// Writes the hub's configuration directory `dir` (created): the one Policy.
pub fn write_hub_config(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("policies.yaml");
    std::fs::write(&path, POLICY).with_context(|| format!("writing {}", path.display()))
}

/// pilot's configuration directory of the mesh, and the ports it names, held for the whole run.
pub struct MeshConfig {
    dir: PathBuf,
    _held: Vec<HeldPort>,
    /// web's HTTP/1.1 port (front's listener for it).
    pub h1: Service,
    /// web's HTTP/2 port (front's listener for it; web's sidecar still speaks HTTP/1.1 to the backend).
    pub h2: Service,
    /// `--hub-service` for pilot: `HOST:PORT` of the hub's service port.
    pub hub_service: String,
}

impl MeshConfig {
    /// Holds the ports it needs and writes the mesh into `dir` (created): web's sidecar forwarding to
    /// `backend`, the hub's service endpoint at `hub`.
    pub fn write(dir: &Path, backend: SocketAddr, hub: SocketAddr) -> anyhow::Result<MeshConfig> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // web's service ports (front binds them), web's ingress ports (web's sidecar binds them), and the
        // hub's service port (front binds it too: it imports every service).
        let held = (0..5)
            .map(|_| HeldPort::hold())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let [service_h1, service_h2, ingress_h1, ingress_h2, hub_port] =
            [0, 1, 2, 3, 4].map(|i| held[i].port);
        let text = mesh(
            [service_h1, service_h2],
            [ingress_h1, ingress_h2],
            backend,
            hub_port,
            hub,
        );
        let path = dir.join("mesh.yaml");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        let web = |port| Service {
            host: WEB_HOST.into(),
            port,
        };
        Ok(MeshConfig {
            dir: dir.to_path_buf(),
            _held: held,
            h1: web(service_h1),
            h2: web(service_h2),
            hub_service: format!("{HUB_HOST}:{hub_port}"),
        })
    }

    /// The directory pilot is given.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// web's service (ports `service`: `http`, `http2`; its endpoint web's sidecar on `ingress`), mesh mTLS to
/// it, web's Sidecar (both ingress ports on to `backend`, importing nothing), and the hub's service on
/// `hub_port` whose one endpoint is the hub's gRPC address `hub`, called in plain text.
fn mesh(
    service: [u16; 2],
    ingress: [u16; 2],
    backend: SocketAddr,
    hub_port: u16,
    hub: SocketAddr,
) -> String {
    let [s1, s2] = service;
    let [i1, i2] = ingress;
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: web, namespace: bench}}
spec:
  hosts: [{WEB_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {s1}, name: http}}, {{number: {s2}, name: http2}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {i1}, http2: {i2}}}, labels: {{app: web}}, serviceAccount: web}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: bench}}
spec:
  host: {WEB_HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: web, namespace: bench}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  ingress:
  - {{port: {{number: {i1}, protocol: HTTP, name: http}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: "{backend}"}}
  - {{port: {{number: {i2}, protocol: HTTP2, name: http2}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: "{backend}"}}
  egress: [{{hosts: ["~/*"]}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: sextant-hub, namespace: sextant-system}}
spec:
  hosts: [{HUB_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {hub_port}, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: {ip}, ports: {{grpc: {hub_grpc}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: sextant-hub, namespace: sextant-system}}
spec:
  host: {HUB_HOST}
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
"#,
        ip = hub.ip(),
        hub_grpc = hub.port(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_validates_as_pilot_reads_it() {
        let dir =
            std::env::temp_dir().join(format!("proxy-bench-test-{}-mesh", std::process::id()));
        let backend = SocketAddr::from(([127, 0, 0, 1], 9));
        let hub = SocketAddr::from(([127, 0, 0, 1], 10));
        let config = MeshConfig::write(&dir, backend, hub).expect("written");
        let mesh = pilot_config::load_and_validate(config.path()).expect("the mesh validates");
        assert_eq!(mesh.services.len(), 2, "web and the hub");
        assert!(config.hub_service.starts_with(HUB_HOST));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
