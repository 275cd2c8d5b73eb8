//! Pilot's configuration model: Istio's `networking.istio.io` resources, validated into an immutable mesh
//! model, and the file-mode service registry.
//!
//! Data flow: the configuration directory the hub also reads is split into documents by `hub-config`
//! ([`sextant_resources::ConfigFiles`], which locates every field's line) → [`NetworkingSet::load_with`] keeps the
//! `VirtualService`, `DestinationRule`, `ServiceEntry`, `WorkloadEntry`, `Gateway` and `Sidecar` documents (in the `v1`,
//! `v1beta1` and `v1alpha3` spellings) and types their specs ([`types`]) → [`validate_each()`] (pure)
//! resolves hosts ([`host`]), subsets, regexes, weights and ports into a [`MeshConfig`] → the mesh's services
//! go to a [`ServiceRegistry`] ([`FileRegistry::update`]) and the rest to pilot's translation into Envoy
//! resources.
//!
//! # One bad resource never takes the mesh down
//!
//! As in Istio, each networking resource is judged on its own. One that is invalid (it cannot be typed, or
//! fails validation) is left out and the rest is served; it is named in [`Validated::rejected`] with every
//! error (`file:line: Kind namespace/name: field: message`), which pilot logs, lists on `/debug/config` and
//! counts in `pilot_config_rejected`. A file that is not valid YAML leaves out only that file. Of two
//! conflicting resources (the same kind, namespace and name twice; two DestinationRules or ServiceEntries
//! for one host) the later one — by file path, then position in the file — is left out; an invalid one
//! conflicts with nothing. A resource that refers to one left out is kept and degrades as Istio's does: a
//! route to a subset of a left-out DestinationRule goes to a cluster that does not exist, which Envoy
//! answers 503 (`NC`); a VirtualService bound to a left-out Gateway applies to nothing there. A resource
//! that was valid and turns invalid is left out too (its previous version is not kept): networking
//! resources fail open to the rest of the mesh, not to their last version. [`validate()`] and
//! [`NetworkingSet::load`] are the strict forms (any resource left out is an error), for tools and tests.
//!
//! Documents of other `*.istio.io` groups and kinds (`EnvoyFilter`, `security.istio.io`, the
//! legacy `config.istio.io` kinds, …) are not read, and never silently: [`NetworkingSet::unread`] names them
//! once per file and kind with what to use instead ([`report::unread_hint`]); pilot warns and counts them in
//! `pilot_config_unread_documents{group,kind}`, `sextant validate` prints them as warnings.
//!
//! # Security resources fail closed
//!
//! `security.istio.io` `AuthorizationPolicy` and `PeerAuthentication` (v1, v1beta1) are read too
//! ([`security`]). Leaving an invalid one out would open what it closes, so the rule for them is the
//! opposite of the networking kinds' ([`validate_each_after`]): an invalid new version of one that
//! validated before keeps its last good version, and one that never validated is replaced by a deny-all
//! policy for the workloads it selects (for an AuthorizationPolicy: an ALLOW policy without rules, so
//! nothing is allowed; for a PeerAuthentication: STRICT mTLS) — for its whole namespace when it could not
//! even be read — never by nothing. Either way it is logged, listed and counted as the networking kinds
//! are, and [`security::AuthorizationPolicy::fail_closed`] says what stands in.
//!
//! Which `Sidecar` applies to a proxy, and what its egress hosts import, is [`sidecar`]'s.
//!
//! Not modelled yet, and refused by name when written: VirtualService `delegate`,
//! `directResponse`, `mirrors`, `uriRegexRewrite`; DestinationRule `workloadSelector`, `localityLbSetting`,
//! `warmupDurationSecs`, `tcpKeepalive`; Gateway `defaultEndpoint`; Sidecar `inboundConnectionPool`,
//! ingress `tls`, `outboundTrafficPolicy.egressProxy`. Refused by value: `credentialName` (pilot reads no
//! secrets), certificate files with `ISTIO_MUTUAL` (which uses the mesh's certificates), relative
//! certificate paths, Sidecar unix-socket `bind`s and `defaultEndpoint`s other than a loopback address.
//!
//! Bounds: [`registry::limits`] (services, endpoints); a regex compiles to at most 10 MiB.

mod duration;
pub mod export;
pub mod fields;
pub mod host;
mod load;
mod model;
mod protocol;
pub mod registry;
pub mod report;
pub mod security;
pub mod sidecar;
pub mod types;
mod validate;

pub use duration::{Duration, parse as parse_duration};
pub use load::{
    GROUP, KINDS, NetworkingSet, ParsedFiles, SECURITY_GROUP, SECURITY_KINDS, SECURITY_VERSIONS,
    VERSIONS, load_path,
};
pub use model::{
    DestinationRule, HttpRouteModel, MESH_GATEWAY, Matcher, MeshConfig, RequestMatch, RouteTarget,
    TcpRouteModel, TlsRouteModel, VirtualService,
};
pub use protocol::{Protocol, ServerKind};
pub use registry::{
    Endpoint, FileRegistry, RegistrySnapshot, Service, ServicePort, ServiceRegistry, spiffe_id,
};
pub use report::{Rejected, Unread};
pub use sidecar::{ROOT_NAMESPACE, Sidecar};
pub use validate::{Validated, validate, validate_each, validate_each_after};

/// Reads, types and validates the networking resources of a configuration directory (or file), strictly: any
/// resource left out is an error (see [`validate()`]).
pub fn load_and_validate(
    path: &std::path::Path,
) -> Result<MeshConfig, sextant_resources::ConfigErrors> {
    validate(&load_path(path)?)
}
