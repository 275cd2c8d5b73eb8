//! The dev mesh's plan: bookinfo's workloads, each on loopback addresses of its own (so every workload's
//! sidecar can take the same ports, as pods do, without root), and the configuration pilot and the hub read.
//!
//! Workload `N` has a pod address `PREFIX.1.N` (its sidecar's inbound port [`PORT`], its admin on 15000,
//! the application on [`APP_PORT`]) and an outbound address `PREFIX.2.N` where its sidecar's outbound
//! listeners bind (the application calls the other services there, naming them in `Host`).
//!
//! With `--intercept` the workloads are pods ([`super::pods`]) on `10.X.0.0/24` (X from `127.X`): workload
//! `N` at `10.X.0.N` behind the gateway `10.X.0.254`, where pilot and the hub are. Its application listens on
//! [`PORT`] and calls each service at the service's address (`10.X.1.S`), which the pod's rules hand to its
//! sidecar, as a pod calls a cluster IP.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::Context;
use sextant_bookinfo::{Egress, NAMESPACE, PORT, Service, Workload};

/// Where a workload's application listens, behind its sidecar.
pub const APP_PORT: u16 = 9081;
/// The sidecar's admin port (Envoy's).
pub const ADMIN_PORT: u16 = 15000;
/// The sidecar's Prometheus stats port (Istio's).
pub const STATS_PORT: u16 = 15090;
/// The name the hub has in the mesh.
pub const HUB_HOST: &str = "sextant-hub.sextant-system.svc.cluster.local";
/// The hub's port in the mesh.
pub const HUB_PORT: u16 = 9091;

/// bookinfo's workloads, in start order (called services first).
pub const WORKLOADS: &[(Service, &str)] = &[
    (Service::Ratings, "v1"),
    (Service::Details, "v1"),
    (Service::Reviews, "v1"),
    (Service::Reviews, "v2"),
    (Service::Reviews, "v3"),
    (Service::Productpage, "v1"),
];

/// bookinfo's services, in the order of their addresses.
const SERVICES: [Service; 4] = [
    Service::Productpage,
    Service::Details,
    Service::Reviews,
    Service::Ratings,
];

/// The plan on loopback network `prefix` (`127.X`), or on pods in `10.X.0.0/24`.
#[derive(Clone, Debug)]
pub struct Plan {
    prefix: String,
    pods: bool,
}

/// One workload of the plan.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The application's side.
    pub workload: Workload,
    /// Its pod address.
    pub pod: IpAddr,
}

impl Planned {
    /// The sidecar's admin address.
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.pod, ADMIN_PORT)
    }

    /// The sidecar's inbound address: where callers (and `curl`) reach the workload.
    pub fn inbound(&self) -> SocketAddr {
        SocketAddr::new(self.pod, PORT)
    }

    /// The sidecar's node id, as Istio's pilot-agent names it.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local",
            self.pod,
            self.workload.name()
        )
    }

    /// The service account it runs as.
    pub fn service_account(&self) -> String {
        format!("bookinfo-{}", self.workload.service.name())
    }
}

impl Plan {
    /// The plan on `prefix`, two numbers (`127.77`): the loopback network `prefix.0.0/16`, or with `pods`
    /// the pods' network `10.X.0.0/24` and the services' addresses `10.X.1.0/24`.
    pub fn new(prefix: &str, pods: bool) -> anyhow::Result<Plan> {
        let parts: Vec<&str> = prefix.split('.').collect();
        let valid =
            parts.len() == 2 && parts[0] == "127" && parts[1].parse::<u8>().is_ok_and(|n| n > 0);
        anyhow::ensure!(
            valid,
            "--loopback {prefix:?}: want two numbers naming a loopback network, like 127.77"
        );
        Ok(Plan {
            prefix: if pods {
                format!("10.{}", parts[1])
            } else {
                prefix.to_string()
            },
            pods,
        })
    }

    fn ip(&self, net: u8, host: usize) -> IpAddr {
        format!("{}.{net}.{host}", self.prefix)
            .parse()
            .expect("a prefix checked in Plan::new and small numbers make an address")
    }

    /// Whether the workloads are pods (`--intercept`).
    pub fn pods(&self) -> bool {
        self.pods
    }

    /// The pods' gateway, the host's address on their network, where pilot and the hub listen for them.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.pods.then(|| self.ip(0, 254))
    }

    /// The address a pod's application calls `service` at.
    fn service_ip(&self, service: Service) -> IpAddr {
        let index = SERVICES.iter().position(|s| *s == service).unwrap_or(0);
        self.ip(1, index + 1)
    }

    /// Every workload with its addresses.
    pub fn workloads(&self) -> Vec<Planned> {
        WORKLOADS
            .iter()
            .enumerate()
            .map(|(i, (service, version))| {
                let (pod, listen, egress) = if self.pods {
                    let pod = self.ip(0, i + 1);
                    let vips = SERVICES.iter().map(|s| (*s, self.service_ip(*s)));
                    let egress = Egress::Services(std::sync::Arc::new(vips.collect()));
                    (pod, SocketAddr::new(pod, PORT), egress)
                } else {
                    let pod = self.ip(1, i + 1);
                    let egress = Egress::Sidecar(SocketAddr::new(self.ip(2, i + 1), PORT));
                    (pod, SocketAddr::new(pod, APP_PORT), egress)
                };
                Planned {
                    workload: Workload {
                        service: *service,
                        version,
                        listen,
                        egress,
                    },
                    pod,
                }
            })
            .collect()
    }

    /// The entry of the demo: productpage's inbound address.
    pub fn entry(&self) -> SocketAddr {
        self.workloads()
            .into_iter()
            .find(|p| p.workload.service == Service::Productpage)
            .map(|p| p.inbound())
            .expect("the plan has productpage")
    }

    /// The workload named `name` (`reviews-v2`).
    pub fn workload(&self, name: &str) -> Option<Planned> {
        self.workloads()
            .into_iter()
            .find(|p| p.workload.name() == name)
    }

    /// The mesh as pilot reads it, derived from the plan and the hub's gRPC address: a ServiceEntry per
    /// service (its endpoints the workloads' pod addresses), on loopback a Sidecar per workload (inbound
    /// bound on its pod address, outbound on its outbound address, no interception), and the hub as a mesh
    /// service.
    pub fn workloads_yaml(&self, hub: SocketAddr) -> String {
        let mut out = String::from(
            "# Written by `sextant dev` at each start from its address plan: edit the other files.\n",
        );
        for service in SERVICES {
            let endpoints: Vec<String> = self
                .workloads()
                .iter()
                .filter(|p| p.workload.service == service)
                .map(|p| {
                    format!(
                        "{{address: {}, ports: {{http: {PORT}}}, labels: {{app: {}, version: {}}}, serviceAccount: {}}}",
                        p.pod,
                        service.name(),
                        p.workload.version,
                        p.service_account()
                    )
                })
                .collect();
            let addresses = if self.pods {
                format!("  addresses: [{}]\n", self.service_ip(service))
            } else {
                String::new()
            };
            out += &format!(
                "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  hosts: [{host}]\n{addresses}  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: {PORT}, name: http, protocol: HTTP}}]\n  endpoints: [{endpoints}]\n",
                name = service.name(),
                host = service.host(),
                endpoints = endpoints.join(", ")
            );
        }
        for p in self.workloads() {
            // Pods need no Sidecar: their rules capture, as Istio's defaults expect.
            let Egress::Sidecar(egress) = p.workload.egress else {
                continue;
            };
            out += &format!(
                "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  workloadSelector: {{labels: {{app: {app}, version: {version}}}}}\n  ingress:\n  - {{port: {{number: {PORT}, protocol: HTTP, name: http}}, captureMode: NONE, bind: {pod}, defaultEndpoint: \"{listen}\"}}\n  egress:\n  - {{port: {{number: {PORT}, protocol: HTTP, name: http}}, captureMode: NONE, bind: {egress}, hosts: [\"{NAMESPACE}/*\"]}}\n",
                name = p.workload.name(),
                app = p.workload.service.name(),
                version = p.workload.version,
                pod = p.pod,
                listen = p.workload.listen,
                egress = egress.ip(),
            );
        }
        out += &format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: sextant-hub, namespace: sextant-system}}\nspec:\n  hosts: [{HUB_HOST}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: {HUB_PORT}, name: grpc, protocol: GRPC}}]\n  endpoints: [{{address: {ip}, ports: {{grpc: {port}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: sextant-hub, namespace: sextant-system}}\nspec:\n  host: {HUB_HOST}\n  trafficPolicy: {{tls: {{mode: DISABLE}}}}\n",
            ip = hub.ip(),
            port = hub.port()
        );
        out
    }
}

/// The dev configuration a user edits, written when its directory has none: the hub's policies, the mesh's
/// routing, and the applications' behaviour.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "hub/policies.yaml",
        include_str!("../../../examples/dev/hub/policies.yaml"),
    ),
    (
        "mesh/routing.yaml",
        include_str!("../../../examples/dev/mesh/routing.yaml"),
    ),
    ("apps.yaml", include_str!("../../../examples/dev/apps.yaml")),
];

/// Writes the default dev configuration into `dir` where a file is missing; files there stay as they are.
pub fn write_defaults(dir: &Path) -> anyhow::Result<()> {
    for (name, text) in DEFAULTS {
        let path = dir.join(name);
        if path.exists() {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The hub's resources for sending the mesh's spans to an OTLP/HTTP collector at `endpoint`: the builtin OTLP
/// adapter, and a Telemetry making each inbound report a SERVER span of the workload that served it and each
/// outbound report a CLIENT span of the caller. Written at each start; removed when spans go nowhere.
pub fn write_traces(dir: &Path, endpoint: Option<&str>) -> anyhow::Result<()> {
    let path = dir.join("hub/zz-traces.yaml");
    let Some(endpoint) = endpoint else {
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
        return Ok(());
    };
    let host = endpoint
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or(rest))
        .filter(|h| !h.is_empty())
        .with_context(|| format!("--otlp-endpoint {endpoint:?}: want http://HOST:PORT"))?;
    let text = format!(
        r#"# Written by `sextant dev` at each start from --otlp-endpoint / --jaeger-url.
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: traces, namespace: {NAMESPACE}}}
spec:
  module: builtin:otlp
  config: {{endpoint: "{endpoint}", service_name: sextant-dev}}
  allowedHosts: ["{host}"]
  limits: {{flushInterval: 500ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: server-spans, namespace: {NAMESPACE}}}
spec:
  adapters: [traces]
  traces:
    when: 'context.reporter.kind == "inbound"'
    kind: SERVER
    service: destination.workload.name
    tags: {{http.status_code: response.code}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: client-spans, namespace: {NAMESPACE}}}
spec:
  adapters: [traces]
  traces:
    when: 'context.reporter.kind == "outbound"'
    kind: CLIENT
    service: source.workload.name
    peerService: destination.service.name
    tags: {{http.status_code: response.code}}
"#
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}
