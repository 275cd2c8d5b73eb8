//! `Sidecar`: what one workload's proxy imports of the mesh (egress), which of its own ports it serves
//! (ingress), and where calls to unknown hosts go.

use schemars::JsonSchema;
use serde::Deserialize;

use super::service_entry::WorkloadSelector;

/// The spec of a `Sidecar`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarSpec {
    /// The workloads (in the Sidecar's namespace) it applies to; without one, every workload of the
    /// namespace that no selecting Sidecar claims (and, in the root namespace, of every namespace without
    /// a Sidecar of its own).
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    /// Ports of the workload its proxy accepts connections for, and where it forwards them.
    #[serde(default)]
    pub ingress: Vec<IngressListener>,
    /// What the proxy imports for outbound calls: per port (or for every port), the `namespace/host`s.
    #[serde(default)]
    pub egress: Vec<EgressListener>,
    /// Where outbound calls to hosts the proxy does not know go.
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// One inbound port of the workload.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressListener {
    /// The port connections arrive on, and how they are proxied.
    pub port: SidecarPort,
    /// The address to bind to, when the listener binds its own port (`captureMode: NONE`).
    #[serde(default)]
    pub bind: Option<String>,
    /// How connections reach the listener.
    #[serde(default)]
    pub capture_mode: Option<CaptureMode>,
    /// Where the workload listens: `127.0.0.1:PORT` or `[::1]:PORT`; the port's own number on 127.0.0.1
    /// when not written (Istio's `0.0.0.0:PORT` and unix sockets are refused).
    #[serde(default)]
    pub default_endpoint: Option<String>,
}

/// One set of outbound imports.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressListener {
    /// The port these imports are for; without one, every port the imported services use.
    #[serde(default)]
    pub port: Option<SidecarPort>,
    /// The address to bind to, when the listener binds its own port (`captureMode: NONE`).
    #[serde(default)]
    pub bind: Option<String>,
    /// How connections reach the listener.
    #[serde(default)]
    pub capture_mode: Option<CaptureMode>,
    /// `namespace/dnsName` entries: namespace `*` (any), `.` (the workload's) or a name, `~` (none);
    /// dnsName a fully qualified name, `*.suffix` or `*`.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A port of a Sidecar listener.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// The port number (1–65535).
    pub number: u32,
    /// The protocol (`HTTP`, `HTTP2`, `GRPC`, `TCP`, …).
    #[serde(default)]
    pub protocol: Option<String>,
    /// A name for the port.
    #[serde(default)]
    pub name: Option<String>,
}

/// How connections reach a Sidecar listener.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// As the proxy's interception mode says.
    #[default]
    Default,
    /// Captured by iptables.
    Iptables,
    /// Not captured: the listener binds its address itself.
    None,
}

/// Where outbound calls to hosts the proxy does not know go.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` (the default: on to where the caller sent them) or `REGISTRY_ONLY` (refused).
    #[serde(default)]
    pub mode: OutboundMode,
}

/// The outbound traffic policy's mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Calls to unknown hosts pass through to their original destination (`PassthroughCluster`).
    #[default]
    AllowAny,
    /// Calls to unknown hosts are refused (`BlackHoleCluster`; HTTP answered 502).
    RegistryOnly,
}
