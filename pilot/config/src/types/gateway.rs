//! `Gateway`: the ports and hosts a gateway proxy (ingress) serves.

use schemars::JsonSchema;
use serde::Deserialize;

use super::labels::Labels;

/// The spec of a `Gateway`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// Labels of the gateway proxies this applies to.
    #[serde(default)]
    pub selector: Labels,
    /// What they serve.
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// One port of a gateway and the hosts served on it.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port.
    pub port: GatewayPort,
    /// The address to bind to.
    #[serde(default)]
    pub bind: Option<String>,
    /// Hosts served (`*` for any; `namespace/host` limits which VirtualServices may bind).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS of this server.
    #[serde(default)]
    pub tls: Option<ServerTlsSettings>,
    /// A name, for stats.
    #[serde(default)]
    pub name: Option<String>,
}

/// A gateway port.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayPort {
    /// The port number (1–65535).
    pub number: u32,
    /// The port's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The protocol (`HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `TLS`, `TCP`).
    pub protocol: String,
    /// The port the gateway proxy listens on, when it differs.
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// TLS modes of a gateway server.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTlsMode {
    /// Forward TLS untouched, routed by SNI.
    Passthrough,
    /// Terminate TLS.
    Simple,
    /// Terminate TLS and require a client certificate.
    Mutual,
    /// Passthrough with SNI-based routing to mesh services.
    AutoPassthrough,
    /// Mutual TLS with the mesh's certificates.
    IstioMutual,
    /// Mutual TLS when the client presents a certificate.
    OptionalMutual,
}

/// TLS of a gateway server.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect plain HTTP to HTTPS.
    #[serde(default)]
    pub https_redirect: bool,
    /// The mode.
    #[serde(default)]
    pub mode: Option<ServerTlsMode>,
    /// Server certificate file.
    #[serde(default)]
    pub server_certificate: Option<String>,
    /// Private key file.
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA certificates to check clients.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// Name of a secret holding the certificates.
    #[serde(default)]
    pub credential_name: Option<String>,
    /// Names client certificates must carry.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}
