//! Pilot's configuration model: Istio's `networking.istio.io` resources, validated into an immutable mesh
//! model, and the file-mode service registry.
//!
//! Data flow: the configuration directory the hub also reads is split into documents by `hub-config`
//! ([`hub_config::ConfigFiles`], which locates every field's line) → [`NetworkingSet::load`] keeps the
//! `VirtualService`, `DestinationRule`, `ServiceEntry`, `WorkloadEntry` and `Gateway` documents (in the `v1`,
//! `v1beta1` and `v1alpha3` spellings; other groups are skipped) and types their specs ([`types`]) →
//! [`validate()`] (pure) resolves hosts ([`host`]), subsets, regexes, weights and ports into a [`MeshConfig`],
//! or returns every error as `file:line: Kind namespace/name: field: message` → the mesh's services go to a
//! [`ServiceRegistry`] ([`FileRegistry::update`]) and the rest to pilot's translation into Envoy resources.
//! An invalid change never gets past [`validate()`], so the snapshot serving stays the last good one.
//!
//! Not modelled yet, and refused by name when written: VirtualService `tls` routes, `delegate`,
//! `directResponse`, `mirrors`, `uriRegexRewrite`; DestinationRule `workloadSelector`, `localityLbSetting`,
//! `warmupDurationSecs`, `tcpKeepalive`; Gateway `defaultEndpoint`; the other `networking.istio.io` kinds
//! (`Sidecar`, `EnvoyFilter`, `ProxyConfig`, `WorkloadGroup`), and `security.istio.io` (`PeerAuthentication`:
//! inbound mTLS is always PERMISSIVE). Refused by value: `credentialName` (pilot reads no secrets),
//! certificate files with `ISTIO_MUTUAL` (which uses the mesh's certificates), Gateway `PASSTHROUGH`
//! servers and TCP/TLS servers, relative certificate paths.
//!
//! Bounds: [`registry::limits`] (services, endpoints); a regex compiles to at most 10 MiB.

mod duration;
pub mod export;
pub mod host;
mod load;
mod model;
mod protocol;
pub mod registry;
pub mod types;
mod validate;

pub use duration::{Duration, parse as parse_duration};
pub use load::{GROUP, KINDS, NetworkingSet, ParsedFiles, VERSIONS, load_path};
pub use model::{
    DestinationRule, HttpRouteModel, MESH_GATEWAY, Matcher, MeshConfig, RequestMatch, RouteTarget,
    TcpRouteModel, VirtualService,
};
pub use protocol::Protocol;
pub use registry::{
    Endpoint, FileRegistry, RegistrySnapshot, Service, ServicePort, ServiceRegistry, spiffe_id,
};
pub use validate::validate;

/// Reads, types and validates the networking resources of a configuration directory (or file).
pub fn load_and_validate(path: &std::path::Path) -> Result<MeshConfig, hub_config::ConfigErrors> {
    validate(&load_path(path)?)
}
