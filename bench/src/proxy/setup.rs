//! What both proxies are given: pilot's configuration directory (the services the load goes to; for the
//! large setup many more services and a 50-route VirtualService; for the mTLS setup a gateway in front of
//! them that the sidecar reaches over ISTIO_MUTUAL), the nodes they present to pilot, and Envoy's ADS
//! bootstrap. The service ports are fixed in the configuration before any proxy binds them, so they are
//! held for the whole run (see [`HeldPort`]) rather than probed and released.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A node a proxy presents to pilot, in both proxies' forms.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// What the proxy is in the output and its log file names (`sidecar`, `gateway`).
    pub role: &'static str,
    /// The node id.
    pub id: &'static str,
    /// Envoy's bootstrap `node.cluster` and `node.metadata` (YAML flow mapping).
    pub envoy: &'static str,
    /// The same for `sextant proxy`, as pilot-agent's environment.
    pub env: &'static [(&'static str, &'static str)],
}

/// The proxy the load talks to: a sidecar of the `default` namespace without interception (listeners bound
/// on `127.0.0.1:PORT`), service account `bench`.
pub const SIDECAR: Node = Node {
    role: "sidecar",
    id: "sidecar~127.0.0.1~bench.default~default.svc.cluster.local",
    envoy: "cluster: bench.default, metadata: {INTERCEPTION_MODE: NONE, NAMESPACE: default, SERVICE_ACCOUNT: bench, \
            LABELS: {app: bench}}",
    env: &[
        ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
        ("POD_NAMESPACE", "default"),
        ("SERVICE_ACCOUNT", "bench"),
        ("ISTIO_METAJSON_LABELS", r#"{"app": "bench"}"#),
    ],
};

/// The second proxy of the mTLS setup: an ingress gateway of `istio-system` whose servers terminate
/// ISTIO_MUTUAL (service account [`GATEWAY_SA`]).
pub const GATEWAY: Node = Node {
    role: "gateway",
    id: "router~127.0.0.1~bench-gateway.istio-system~istio-system.svc.cluster.local",
    envoy: "cluster: bench-gateway.istio-system, metadata: {NAMESPACE: istio-system, SERVICE_ACCOUNT: bench-gateway, \
            LABELS: {istio: bench-gateway}}",
    env: &[
        ("POD_NAMESPACE", "istio-system"),
        ("SERVICE_ACCOUNT", GATEWAY_SA),
        ("ISTIO_METAJSON_LABELS", r#"{"istio": "bench-gateway"}"#),
    ],
};

/// The gateway's service account: the identity the sidecar verifies.
const GATEWAY_SA: &str = "bench-gateway";
/// The gateway's service, the host every request of the mTLS setup names.
const GATEWAY_HOST: &str = "bench-gateway.istio-system.svc.cluster.local";
/// Extra services (each with an HTTP/1.1 and an HTTP/2 port, so two clusters) in the large setup.
pub const LARGE_SERVICES: usize = 50;
/// Routes of the tested host's VirtualService in the large setup; the last one is the one requests take.
pub const LARGE_ROUTES: usize = 50;

/// The mesh a setup gives pilot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// One ServiceEntry per protocol, no VirtualService: the default routes.
    Basic,
    /// The same plus [`LARGE_SERVICES`] services and a [`LARGE_ROUTES`]-route VirtualService per tested host.
    Large,
    /// Two proxies in a row: the sidecar calls an ingress gateway (the same proxy binary) over ISTIO_MUTUAL
    /// with certificates from pilot's CA, and the gateway calls the backend.
    Mtls,
}

impl Setup {
    /// How the setup is named in the output.
    pub fn describe(self) -> String {
        match self {
            Setup::Basic => "basic: 1 service per protocol, default route".into(),
            Setup::Large => format!(
                "large: {} more clusters ({LARGE_SERVICES} services × 2 ports), the tested host's VirtualService \
                 has {LARGE_ROUTES} routes and requests take the last",
                LARGE_SERVICES * 2
            ),
            Setup::Mtls => "mtls: sidecar → gateway over ISTIO_MUTUAL (pilot's CA, over SDS) → backend, both \
                            proxies the same binary, each pinned to the proxy CPU; CPU seconds and RSS are the \
                            sums of both"
                .into(),
        }
    }

    /// The proxies of the setup, the one the load talks to first.
    pub fn nodes(self) -> &'static [Node] {
        match self {
            Setup::Basic | Setup::Large => &[SIDECAR],
            Setup::Mtls => &[SIDECAR, GATEWAY],
        }
    }
}

/// A loopback port kept for the whole run: bound with SO_REUSEADDR and SO_REUSEPORT and never listening, so
/// the kernel gives it to nobody else (no port-0 bind, no connection's ephemeral port), while a proxy can
/// still bind and listen on it (Envoy with SO_REUSEPORT, `sextant proxy` with SO_REUSEADDR, both allowed
/// beside a socket that does not listen). Probing a free port and releasing it would race with both.
pub struct HeldPort {
    _socket: tokio::net::TcpSocket,
    /// The held port on 127.0.0.1.
    pub port: u16,
}

impl HeldPort {
    /// Holds a fresh port.
    pub fn hold() -> anyhow::Result<HeldPort> {
        let socket = tokio::net::TcpSocket::new_v4().context("creating a socket to hold a port")?;
        socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
        socket.set_reuseport(true).context("SO_REUSEPORT")?;
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("binding a port to hold")?;
        let port = socket.local_addr().context("the held address")?.port();
        Ok(HeldPort {
            _socket: socket,
            port,
        })
    }
}

/// A tested service: its host, and the port the proxy listens on for it.
#[derive(Clone, Debug)]
pub struct Service {
    /// Fully qualified host (the `Host` of every request).
    pub host: String,
    /// The listener port (`127.0.0.1_PORT`).
    pub port: u16,
}

/// pilot's configuration directory with the two tested services: `bench-h1` (port named `http`, so the
/// proxy speaks HTTP/1.1 to the backend) and `bench-h2` (`http2`: HTTP/2 upstream). In the mTLS setup the
/// tested service is the gateway's, on two ports, each routed to one of them.
pub struct ConfigDir {
    dir: PathBuf,
    _held: Vec<HeldPort>,
    /// The HTTP/1.1 service.
    pub h1: Service,
    /// The HTTP/2 service.
    pub h2: Service,
}

impl ConfigDir {
    /// Holds the ports it needs and writes `setup`'s mesh into `dir` (created), the endpoints all at
    /// `backend`.
    pub fn write(dir: &Path, setup: Setup, backend: SocketAddr) -> anyhow::Result<ConfigDir> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut held = vec![HeldPort::hold()?, HeldPort::hold()?];
        let (p1, p2) = (held[0].port, held[1].port);
        let (h1, h2) = if setup == Setup::Mtls {
            // The sidecar listens on the gateway service's ports; the backends' own ports are held too, since
            // the sidecar also binds a listener for each service port.
            let more = [
                HeldPort::hold()?,
                HeldPort::hold()?,
                HeldPort::hold()?,
                HeldPort::hold()?,
            ];
            let ports = more.each_ref().map(|h| h.port);
            held.extend(more);
            let mesh = format!(
                "{}{}{}",
                service_entry("bench-h1", &[(ports[0], "http")], backend),
                service_entry("bench-h2", &[(ports[1], "http2")], backend),
                gateway_mesh([p1, p2], [ports[2], ports[3]], [ports[0], ports[1]])
            );
            let path = dir.join("services.yaml");
            std::fs::write(&path, mesh).with_context(|| format!("writing {}", path.display()))?;
            let gateway = |port| Service {
                host: GATEWAY_HOST.into(),
                port,
            };
            (gateway(p1), gateway(p2))
        } else {
            let h1 = Service {
                host: "bench-h1.default.svc.cluster.local".into(),
                port: p1,
            };
            let h2 = Service {
                host: "bench-h2.default.svc.cluster.local".into(),
                port: p2,
            };
            let mut services = service_entry("bench-h1", &[(h1.port, "http")], backend);
            services.push_str(&service_entry("bench-h2", &[(h2.port, "http2")], backend));
            let path = dir.join("services.yaml");
            std::fs::write(&path, services)
                .with_context(|| format!("writing {}", path.display()))?;
            (h1, h2)
        };
        if setup == Setup::Large {
            let ports = [(h1.port, "http"), (h2.port, "http2")];
            let extra: String = (0..LARGE_SERVICES)
                .map(|i| service_entry(&format!("svc-{i}"), &ports, backend))
                .collect();
            let routes = format!(
                "{}{}",
                many_routes("bench-h1", h1.port),
                many_routes("bench-h2", h2.port)
            );
            for (name, text) in [("extra-services.yaml", extra), ("routes.yaml", routes)] {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(ConfigDir {
            dir: dir.to_path_buf(),
            _held: held,
            h1,
            h2,
        })
    }

    /// The directory pilot is given.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// A ServiceEntry `name` in `default` with `ports` (number, name), resolution STATIC, one endpoint: `backend`.
fn service_entry(name: &str, ports: &[(u16, &str)], backend: SocketAddr) -> String {
    let mut y = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  hosts: [{name}.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n"
    );
    for (number, port_name) in ports {
        let _ = writeln!(y, "  - {{number: {number}, name: {port_name}}}");
    }
    let endpoint_ports: Vec<String> = ports
        .iter()
        .map(|(_, port_name)| format!("{port_name}: {}", backend.port()))
        .collect();
    let _ = writeln!(
        y,
        "  endpoints:\n  - {{address: {}, ports: {{{}}}}}",
        backend.ip(),
        endpoint_ports.join(", ")
    );
    y
}

/// The gateway of the mTLS setup: its service (ports `service[0]` HTTP/1.1 and `service[1]` HTTP/2, its pod
/// listening on `pod`), its two ISTIO_MUTUAL servers, the VirtualService sending each server's requests to
/// `bench-h1` (port `backend[0]`) and `bench-h2` (port `backend[1]`), and the DestinationRule that makes the
/// sidecar call it over ISTIO_MUTUAL, verifying its identity.
fn gateway_mesh(service: [u16; 2], pod: [u16; 2], backend: [u16; 2]) -> String {
    let [s1, s2] = service;
    let [g1, g2] = pod;
    let [b1, b2] = backend;
    format!(
        r#"---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: bench-gateway, namespace: istio-system}}
spec:
  hosts: [{GATEWAY_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {s1}, name: http}}, {{number: {s2}, name: http2}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {g1}, http2: {g2}}}, labels: {{istio: bench-gateway}}, serviceAccount: {GATEWAY_SA}}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench-gateway, namespace: istio-system}}
spec:
  selector: {{istio: bench-gateway}}
  servers:
  - port: {{number: {s1}, name: https-h1, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: ISTIO_MUTUAL}}
  - port: {{number: {s2}, name: https-h2, protocol: HTTPS}}
    hosts: ["*"]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench-gateway, namespace: istio-system}}
spec:
  hosts: ["*"]
  gateways: [bench-gateway]
  http:
  - match: [{{port: {s1}}}]
    route: [{{destination: {{host: bench-h1.default.svc.cluster.local, port: {{number: {b1}}}}}}}]
  - match: [{{port: {s2}}}]
    route: [{{destination: {{host: bench-h2.default.svc.cluster.local, port: {{number: {b2}}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bench-gateway, namespace: default}}
spec:
  host: {GATEWAY_HOST}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/istio-system/sa/{GATEWAY_SA}"]}}}}
"#
    )
}

/// A VirtualService for `name` whose first routes match `/svc-I/` prefixes the load never asks for (each to
/// another service), and whose last route sends everything else to `name` itself.
fn many_routes(name: &str, port: u16) -> String {
    let mut y = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  hosts: [{name}.default.svc.cluster.local]\n  http:\n"
    );
    for i in 0..LARGE_ROUTES - 1 {
        let _ = writeln!(
            y,
            "  - match: [{{uri: {{prefix: /svc-{i}/}}}}]\n    \
             route: [{{destination: {{host: svc-{s}.default.svc.cluster.local, port: {{number: {port}}}}}}}]",
            s = i % LARGE_SERVICES
        );
    }
    let _ = writeln!(
        y,
        "  - route: [{{destination: {{host: {name}.default.svc.cluster.local, port: {{number: {port}}}}}}}]"
    );
    y
}

/// Envoy's bootstrap: `node`, an admin on a port the kernel picks, and only the ADS cluster (pilot at
/// `pilot`, HTTP/2, state of the world); everything else comes from pilot, as for `sextant proxy`.
pub fn envoy_bootstrap(pilot: SocketAddr, node: &Node) -> String {
    format!(
        r#"node: {{id: "{id}", {envoy}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: pilot}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: pilot
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: pilot
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}}}]}}]
"#,
        id = node.id,
        envoy = node.envoy,
        ip = pilot.ip(),
        port = pilot.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setup_validates_as_pilot_reads_it() {
        let backend = SocketAddr::from(([127, 0, 0, 1], 9));
        for setup in [Setup::Basic, Setup::Large, Setup::Mtls] {
            let dir = std::env::temp_dir()
                .join(format!("proxy-bench-test-{}-{setup:?}", std::process::id()));
            let config = ConfigDir::write(&dir, setup, backend).expect("written");
            let mesh = pilot_config::load_and_validate(config.path())
                .unwrap_or_else(|e| panic!("{setup:?} validates: {e}"));
            let expected = match setup {
                Setup::Basic => 2,
                Setup::Large => 2 + LARGE_SERVICES,
                Setup::Mtls => 3,
            };
            assert_eq!(mesh.services.len(), expected, "{setup:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
