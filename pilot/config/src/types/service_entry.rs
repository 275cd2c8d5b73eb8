//! `ServiceEntry` and `WorkloadEntry`: the services and workloads of the file-mode registry.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::labels::Labels;

/// The spec of a `ServiceEntry`: a service, its ports and (for STATIC resolution) its endpoints.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    /// The service's host names, taken as written (not resolved in the namespace).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The service's ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Whether the service is part of the mesh.
    #[serde(default)]
    pub location: Option<Location>,
    /// How endpoints are found.
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// Static endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// Selects `WorkloadEntry` resources (of this namespace) as endpoints, by labels.
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces this resource is visible to.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Names the service's certificates carry.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// A port of a service.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// The port number (1–65535).
    pub number: u32,
    /// The protocol (`HTTP`, `HTTP2`, `GRPC`, `TCP`, …); when absent the name decides.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The port's name, unique in the service; `<protocol>[-<suffix>]` implies a protocol.
    #[serde(default)]
    pub name: Option<String>,
    /// The port endpoints listen on, when it differs from `number`.
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// Whether a service is in the mesh.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no sidecar, no mutual TLS).
    MeshExternal,
    /// Inside the mesh.
    MeshInternal,
}

/// How a service's endpoints are found.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// The caller's destination address is used as is.
    None,
    /// The endpoints listed (or selected WorkloadEntries).
    Static,
    /// The endpoints' (or hosts') names resolved by DNS.
    Dns,
    /// DNS, one address at a time.
    DnsRoundRobin,
}

/// Selects workloads by labels.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must all carry.
    #[serde(default)]
    pub labels: Labels,
}

/// One workload: the spec of a `WorkloadEntry`, and an item of a ServiceEntry's `endpoints`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntrySpec {
    /// IP address (or, with DNS resolution, a host name).
    #[serde(default)]
    pub address: String,
    /// Service port name → the port this workload listens on, when it differs.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Labels (`app`, `version`) subsets select on.
    #[serde(default)]
    pub labels: Labels,
    /// Network the workload is on.
    #[serde(default)]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(default)]
    pub locality: Option<String>,
    /// Load-balancing weight (1 when absent).
    #[serde(default)]
    pub weight: Option<u32>,
    /// The workload's service account.
    #[serde(default)]
    pub service_account: Option<String>,
}
