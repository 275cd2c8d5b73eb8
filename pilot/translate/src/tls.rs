//! TLS transport sockets: a DestinationRule's `tls` towards a service (upstream) and a gateway server's
//! `tls` towards clients (downstream), both from certificate and key files on the proxy's file system.
//!
//! Without `caCertificates` (and without `insecureSkipVerify`), upstream certificates are checked against
//! [`SYSTEM_CA_BUNDLE`], as Istio checks them against the proxy's OS bundle.
//!
//! Mesh mTLS (`ISTIO_MUTUAL`) takes its certificates from SDS instead: the proxy's own
//! ([`WORKLOAD_SECRET`]) and the trust root ([`ROOT_SECRET`]), Istio's secret names, over ADS from pilot,
//! or, for an Envoy keeping its own key, from its agent ([`SecretSource`]). The client offers Istio's ALPN
//! values, so the server side (ours or an Istio sidecar) tells mesh mTLS from an application's own TLS, and
//! checks the server's SPIFFE ID; HTTP requests offer Istio's HTTP values first ([`MESH_HTTP_ALPN`]; the list
//! by the HTTP version the cluster speaks, [`Upstream`], placed by [`crate::alpn`]), so a server sniffing a
//! port of undeclared protocol knows the connection carries HTTP.

use pilot_config::types::{ClientTlsSettings, ServerTlsMode, ServerTlsSettings, TlsMode};
use pilot_xds::build;
use sextant_proto::envoy::config::core::v3::{
    ApiConfigSource, ApiVersion, ConfigSource, DataSource, GrpcService, TransportSocket,
    api_config_source, config_source, data_source, grpc_service, transport_socket,
};
use sextant_proto::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext, common_tls_context, secret,
    subject_alt_name_matcher,
};
use sextant_proto::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use sextant_proto::google::protobuf::BoolValue;

/// The name Envoy knows the TLS transport socket by.
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// The CA bundle upstream certificates are checked against when the rule names none (Debian and Ubuntu's
/// path, which Istio's proxy image has).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The SDS secret holding the proxy's own certificate and key.
pub const WORKLOAD_SECRET: &str = "default";
/// The SDS secret holding the mesh's trust root.
pub const ROOT_SECRET: &str = "ROOTCA";
/// The ALPN values of mesh mTLS: what clients offer and what `virtualInbound`'s mTLS chain matches
/// (Istio's, so our sidecars and Istio's interoperate).
pub const MESH_ALPN: [&str; 5] = [
    "istio-peer-exchange",
    "istio",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// The ALPN values of mesh mTLS carrying HTTP: what clients offer first for HTTP requests
/// ([`crate::alpn`]), and what a sniffed port's HTTP chain matches.
pub const MESH_HTTP_ALPN: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// The ALPN values of mesh mTLS carrying anything else (TCP): what mesh clusters offer by default.
pub const MESH_TCP_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];

/// The HTTP version a mesh-mTLS cluster speaks upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upstream {
    /// HTTP/1.1.
    Http11,
    /// HTTP/2.
    Http2,
}

impl Upstream {
    /// The ALPN list an HTTP request to such a cluster offers: Istio's `istio.alpn` values.
    pub fn alpn(self) -> &'static str {
        match self {
            Upstream::Http11 => "istio-http/1.1,istio,http/1.1",
            Upstream::Http2 => "istio-h2,istio,h2",
        }
    }
}

/// The cluster a stock Envoy keeping its own key reads its secrets from: its bootstrap's static cluster on
/// the agent's Unix socket (Istio's name; `sextant agent` serves it).
pub const AGENT_SDS_CLUSTER: &str = "sds-grpc";

/// Where a proxy's mesh secrets ([`WORKLOAD_SECRET`], [`ROOT_SECRET`]) come from, as its configuration names
/// them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SecretSource {
    /// From pilot over ADS (pilot sends them), or resolved by a Sextant proxy keeping its own key, which
    /// installs them itself and takes only this source.
    #[default]
    Ads,
    /// From the agent beside an Envoy keeping its own key: SDS over gRPC on [`AGENT_SDS_CLUSTER`].
    Agent,
}

impl SecretSource {
    /// The source of `proxy`'s secrets: the agent for an Envoy keeping its own key, otherwise ADS.
    pub fn of(proxy: &crate::ProxyInfo) -> SecretSource {
        if proxy.local_certificate
            && proxy.takes_certificates()
            && proxy.data_plane == crate::DataPlane::Envoy
        {
            SecretSource::Agent
        } else {
            SecretSource::Ads
        }
    }

    /// The `sds_config` naming this source: ADS, or Istio's shape for the agent's cluster.
    pub fn config(self) -> ConfigSource {
        match self {
            SecretSource::Ads => build::ads(),
            SecretSource::Agent => ConfigSource {
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(
                    config_source::ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
                        api_type: api_config_source::ApiType::Grpc as i32,
                        transport_api_version: ApiVersion::V3 as i32,
                        grpc_services: vec![GrpcService {
                            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                                grpc_service::EnvoyGrpc {
                                    cluster_name: AGENT_SDS_CLUSTER.into(),
                                    ..Default::default()
                                },
                            )),
                            ..Default::default()
                        }],
                        set_node_on_first_message_only: true,
                        ..Default::default()
                    }),
                ),
                ..Default::default()
            },
        }
    }
}

/// The proxy's two SDS secrets: its certificate and key ([`WORKLOAD_SECRET`]) and the trust root
/// ([`ROOT_SECRET`]), inline.
pub fn secrets(cert: &crate::WorkloadCertificate<'_>) -> [Secret; 2] {
    [
        Secret {
            name: WORKLOAD_SECRET.into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(cert.chain_pem)),
                private_key: Some(inline(cert.key_pem)),
                ..Default::default()
            })),
        },
        Secret {
            name: ROOT_SECRET.into(),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(inline(cert.root_pem)),
                    ..Default::default()
                },
            )),
        },
    ]
}

/// Mesh mTLS towards a service: the proxy's certificate, the server's checked against the trust root and,
/// when any are known, against `identities`; `sni` is Istio's `outbound_.PORT_.SUBSET_.HOST`; the secrets
/// from `source`.
pub fn istio_mutual(identities: &[String], sni: String, source: SecretSource) -> TransportSocket {
    let context = UpstreamTlsContext {
        common_tls_context: Some(mesh_context(
            identities,
            MESH_TCP_ALPN.iter().map(|a| a.to_string()).collect(),
            source,
        )),
        sni,
        ..Default::default()
    };
    socket(build::any(&context))
}

/// Mesh mTLS terminated for inbound traffic: the proxy's certificate, and a client certificate under the
/// trust root required; the secrets from `source`.
pub fn mesh_inbound(source: SecretSource) -> TransportSocket {
    mesh_downstream(Vec::new(), source)
}

/// The filter chain match of mesh mTLS (transport `tls` with one of Istio's ALPN values), on `port` when
/// given.
pub fn mesh_match(
    port: Option<sextant_proto::google::protobuf::UInt32Value>,
) -> sextant_proto::envoy::config::listener::v3::FilterChainMatch {
    sextant_proto::envoy::config::listener::v3::FilterChainMatch {
        destination_port: port,
        transport_protocol: "tls".into(),
        application_protocols: MESH_ALPN.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

/// Mesh mTLS terminated, offering `alpn`.
fn mesh_downstream(alpn: Vec<String>, source: SecretSource) -> TransportSocket {
    let context = DownstreamTlsContext {
        common_tls_context: Some(mesh_context(&[], alpn, source)),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    };
    socket(build::any(&context))
}

fn mesh_context(
    identities: &[String],
    alpn: Vec<String>,
    source: SecretSource,
) -> CommonTlsContext {
    use common_tls_context::{CombinedCertificateValidationContext, ValidationContextType};
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(WORKLOAD_SECRET, source)],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: san_matchers(identities),
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(sds(ROOT_SECRET, source)),
                ..Default::default()
            },
        )),
        alpn_protocols: alpn,
        ..Default::default()
    }
}

fn sds(name: &str, source: SecretSource) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.into(),
        sds_config: Some(source.config()),
    }
}

fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(pem.as_bytes().to_vec())),
        ..Default::default()
    }
}

/// The transport socket for traffic to `host` under `tls`, or `None` for plain text (`DISABLE`) and for
/// `ISTIO_MUTUAL`, which [`istio_mutual`] builds. `credentialName` never gets here: validation refuses it.
pub fn upstream(tls: &ClientTlsSettings, host: &str) -> Option<TransportSocket> {
    if !matches!(tls.mode, TlsMode::Simple | TlsMode::Mutual) {
        return None;
    }
    let validation = if tls.insecure_skip_verify == Some(true) {
        None
    } else {
        let ca = tls.ca_certificates.as_deref().unwrap_or(SYSTEM_CA_BUNDLE);
        Some(validation_context(ca, &tls.subject_alt_names))
    };
    let mut certificates = Vec::new();
    if tls.mode == TlsMode::Mutual
        && let (Some(cert), Some(key)) = (&tls.client_certificate, &tls.private_key)
    {
        certificates.push(certificate(cert, key));
    }
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: certificates,
            validation_context_type: validation
                .map(common_tls_context::ValidationContextType::ValidationContext),
            ..Default::default()
        }),
        sni: tls.sni.clone().unwrap_or_else(|| host.to_string()),
        ..Default::default()
    };
    Some(socket(build::any(&context)))
}

/// The transport socket terminating TLS for a gateway server (`SIMPLE`, `MUTUAL`, `OPTIONAL_MUTUAL` from
/// files; `ISTIO_MUTUAL` with the gateway's mesh certificate from `source`, a mesh client certificate
/// required), or `None` when the settings do not terminate (validation refuses such servers).
pub fn downstream(tls: &ServerTlsSettings, source: SecretSource) -> Option<TransportSocket> {
    let mode = tls.mode.unwrap_or(ServerTlsMode::Simple);
    if mode == ServerTlsMode::IstioMutual {
        return Some(mesh_downstream(
            vec!["h2".into(), "http/1.1".into()],
            source,
        ));
    }
    if !matches!(
        mode,
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
    ) {
        return None;
    }
    let cert = certificate(
        tls.server_certificate.as_deref()?,
        tls.private_key.as_deref()?,
    );
    let validation = match (&tls.ca_certificates, mode) {
        (Some(ca), ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual) => {
            Some(validation_context(ca, &tls.subject_alt_names))
        }
        _ => None,
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![cert],
            validation_context_type: validation
                .map(common_tls_context::ValidationContextType::ValidationContext),
            alpn_protocols: vec!["h2".into(), "http/1.1".into()],
            ..Default::default()
        }),
        require_client_certificate: (mode == ServerTlsMode::Mutual)
            .then_some(BoolValue { value: true }),
        ..Default::default()
    };
    Some(socket(build::any(&context)))
}

fn socket(config: sextant_proto::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(config)),
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

fn certificate(cert: &str, key: &str) -> TlsCertificate {
    TlsCertificate {
        certificate_chain: Some(file(cert)),
        private_key: Some(file(key)),
        ..Default::default()
    }
}

/// Trust `ca`; when `names` are given, the peer's certificate must carry one of them (`spiffe://…` and
/// other URIs as URI names, the rest as DNS names).
fn validation_context(ca: &str, names: &[String]) -> CertificateValidationContext {
    CertificateValidationContext {
        trusted_ca: Some(file(ca)),
        match_typed_subject_alt_names: san_matchers(names),
        ..Default::default()
    }
}

/// Matchers accepting a certificate that carries one of `names` (`spiffe://…` and other URIs as URI names,
/// the rest as DNS names).
fn san_matchers(names: &[String]) -> Vec<SubjectAltNameMatcher> {
    use subject_alt_name_matcher::SanType;
    names
        .iter()
        .map(|n| SubjectAltNameMatcher {
            san_type: if n.contains("://") {
                SanType::Uri
            } else {
                SanType::Dns
            } as i32,
            matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(n.clone())),
                ignore_case: false,
            }),
            ..Default::default()
        })
        .collect()
}
