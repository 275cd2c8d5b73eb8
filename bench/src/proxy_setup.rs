//! What both proxies are given: pilot's configuration directory (the services the load goes to, and for the
//! large setup many more services and a 50-route VirtualService), the node they present to pilot, and Envoy's
//! ADS bootstrap. The service ports are fixed in the configuration before any proxy binds them, so they are
//! held for the whole run (see [`HeldPort`]) rather than probed and released.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The node id of both proxies: a sidecar of the `default` namespace.
pub const NODE_ID: &str = "sidecar~127.0.0.1~bench.default~default.svc.cluster.local";
/// The node metadata pilot reads: no interception (listeners bound on `127.0.0.1:PORT`), the namespace.
pub const NODE_ENV: [(&str, &str); 2] = [
    ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
    ("POD_NAMESPACE", "default"),
];
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
/// proxy speaks HTTP/1.1 to the backend) and `bench-h2` (`http2`: HTTP/2 upstream).
pub struct ConfigDir {
    dir: PathBuf,
    _held: [HeldPort; 2],
    /// The HTTP/1.1 service.
    pub h1: Service,
    /// The HTTP/2 service.
    pub h2: Service,
}

impl ConfigDir {
    /// Holds two ports and writes `setup`'s mesh into `dir` (created), the endpoints all at `backend`.
    pub fn write(dir: &Path, setup: Setup, backend: SocketAddr) -> anyhow::Result<ConfigDir> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let held = [HeldPort::hold()?, HeldPort::hold()?];
        let h1 = Service {
            host: "bench-h1.default.svc.cluster.local".into(),
            port: held[0].port,
        };
        let h2 = Service {
            host: "bench-h2.default.svc.cluster.local".into(),
            port: held[1].port,
        };
        let mut services = service_entry("bench-h1", &[(h1.port, "http")], backend);
        services.push_str(&service_entry("bench-h2", &[(h2.port, "http2")], backend));
        let path = dir.join("services.yaml");
        std::fs::write(&path, services).with_context(|| format!("writing {}", path.display()))?;
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

/// Envoy's bootstrap: the node, an admin on a port the kernel picks, and only the ADS cluster (pilot at
/// `pilot`, HTTP/2, state of the world); everything else comes from pilot, as for `sextant proxy`.
pub fn envoy_bootstrap(pilot: SocketAddr) -> String {
    format!(
        r#"node: {{id: "{NODE_ID}", cluster: bench.default, metadata: {{INTERCEPTION_MODE: NONE, NAMESPACE: default}}}}
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
        ip = pilot.ip(),
        port = pilot.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_setups_validate_as_pilot_reads_them() {
        let backend = SocketAddr::from(([127, 0, 0, 1], 9));
        for setup in [Setup::Basic, Setup::Large] {
            let dir = std::env::temp_dir()
                .join(format!("proxy-bench-test-{}-{setup:?}", std::process::id()));
            let config = ConfigDir::write(&dir, setup, backend).expect("written");
            let mesh = pilot_config::load_and_validate(config.path())
                .unwrap_or_else(|e| panic!("{setup:?} validates: {e}"));
            let expected = if setup == Setup::Basic {
                2
            } else {
                2 + LARGE_SERVICES
            };
            assert_eq!(mesh.services.len(), expected, "{setup:?}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
