//! `security.istio.io` kinds as users write them: `AuthorizationPolicy` and `PeerAuthentication`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::labels::Labels;

/// Selects workloads by labels (`selector.matchLabels`).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchLabels {
    /// Labels a workload must all carry.
    #[serde(default)]
    pub match_labels: Labels,
}

/// The spec of an `AuthorizationPolicy`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// The workloads (of the policy's namespace; of every namespace in the root namespace) it applies to;
    /// without one, all of them.
    #[serde(default)]
    pub selector: Option<MatchLabels>,
    /// `ALLOW` (the default), `DENY` or `AUDIT`.
    #[serde(default)]
    pub action: AuthorizationAction,
    /// The rules; a request matching any of them is allowed (ALLOW) or denied (DENY). An ALLOW policy
    /// without rules allows nothing.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// What an `AuthorizationPolicy` does with what its rules match.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizationAction {
    /// Allowed only when some ALLOW policy matches (and no DENY policy does).
    #[default]
    Allow,
    /// Denied when it matches.
    Deny,
    /// Only audited: enforces nothing.
    Audit,
}

/// One rule: every part that is written must match.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Who: any of these sources.
    #[serde(default)]
    pub from: Vec<From>,
    /// What: any of these operations.
    #[serde(default)]
    pub to: Vec<To>,
    /// Further conditions, all of which must hold.
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// A `from` entry.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct From {
    /// The source.
    pub source: Source,
}

/// Where a request comes from; every field written must match.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities (`cluster.local/ns/NS/sa/SA`; `*`, `prefix*`, `*suffix`), from mesh mTLS.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Peer identities that must not match.
    #[serde(default)]
    pub not_principals: Vec<String>,
    /// JWT principals (`iss/sub`): HTTP only.
    #[serde(default)]
    pub request_principals: Vec<String>,
    /// JWT principals that must not match: HTTP only.
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer identity (mesh mTLS).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces that must not match.
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    /// Peer addresses or CIDRs.
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    /// Peer addresses that must not match.
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    /// Client addresses (as `X-Forwarded-For` or the proxy protocol say) or CIDRs.
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    /// Client addresses that must not match.
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
}

/// A `to` entry.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct To {
    /// The operation.
    pub operation: Operation,
}

/// What a request does; every field written must match.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// `Host` values: HTTP only.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `Host` values that must not match: HTTP only.
    #[serde(default)]
    pub not_hosts: Vec<String>,
    /// Destination ports (as strings, as Istio writes them).
    #[serde(default)]
    pub ports: Vec<String>,
    /// Destination ports that must not match.
    #[serde(default)]
    pub not_ports: Vec<String>,
    /// Methods: HTTP only.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Methods that must not match: HTTP only.
    #[serde(default)]
    pub not_methods: Vec<String>,
    /// Paths: HTTP only.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Paths that must not match: HTTP only.
    #[serde(default)]
    pub not_paths: Vec<String>,
}

/// A `when` condition: the attribute `key` has one of `values` and none of `notValues`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute (`source.ip`, `source.namespace`, `source.principal`, `destination.ip`,
    /// `destination.port`, `connection.sni`, `remote.ip`; `request.*` are HTTP only).
    pub key: String,
    /// Values, any of which matches.
    #[serde(default)]
    pub values: Vec<String>,
    /// Values none of which may match.
    #[serde(default)]
    pub not_values: Vec<String>,
}

/// The spec of a `PeerAuthentication`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// The workloads (of its namespace) it applies to; without one, the namespace (the mesh, in the root
    /// namespace).
    #[serde(default)]
    pub selector: Option<MatchLabels>,
    /// The mutual TLS mode of every port.
    #[serde(default)]
    pub mtls: Option<MutualTls>,
    /// Per workload port, a mode that overrides `mtls` (only with a `selector`).
    #[serde(default)]
    pub port_level_mtls: BTreeMap<u32, MutualTls>,
}

/// A mutual TLS setting.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    /// The mode.
    #[serde(default)]
    pub mode: MtlsMode,
}

/// How a workload's proxy takes inbound connections.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// As the parent scope says (workload → namespace → mesh → PERMISSIVE).
    #[default]
    Unset,
    /// Plain text only: mesh TLS is not terminated.
    Disable,
    /// Mesh mTLS and plain text.
    Permissive,
    /// Mesh mTLS only.
    Strict,
}
