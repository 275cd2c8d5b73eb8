//! TLS transport sockets: what a cluster originates (`UpstreamTlsContext`) and a filter chain terminates
//! (`DownstreamTlsContext`), with certificates and roots from files, inline, or SDS secrets.

use std::path::PathBuf;

use prost::Name;
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::extensions::transport_sockets::tls::v3 as pb;
use sextant_proto::google::protobuf::Any;

use crate::decode_payload;
use crate::error::{Partial, at, within};
use crate::matcher::{StringMatcher, string_matcher};

/// The transport socket name Envoy uses for TLS.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// Where PEM data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file, read when the configuration is applied.
    File(PathBuf),
    /// The bytes themselves.
    Inline(Vec<u8>),
    /// An SDS secret of this name.
    Sds(String),
}

/// The certificate presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// A chain and key, each from a file or inline.
    Pair {
        /// The chain (leaf first).
        chain: Source,
        /// The private key.
        key: Source,
    },
    /// An SDS secret holding both.
    Sds(String),
}

/// A SAN the peer's certificate must carry (any one of the list).
#[derive(Debug, Clone, PartialEq)]
pub struct SanMatcher {
    /// URI SAN (`spiffe://…`) rather than DNS.
    pub uri: bool,
    /// How the SAN is compared.
    pub matcher: StringMatcher,
}

/// How the peer's certificate is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// The trusted roots.
    pub roots: Source,
    /// SANs, any of which must be present (empty: any).
    pub sans: Vec<SanMatcher>,
}

/// `CommonTlsContext`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsContext {
    /// The certificate presented, if any.
    pub certificate: Option<Certificate>,
    /// How the peer is checked; `None`: not at all.
    pub validation: Option<Validation>,
    /// ALPN protocols offered (client) or accepted (server).
    pub alpn: Vec<String>,
}

/// TLS a cluster originates.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// The context.
    pub context: TlsContext,
    /// The SNI sent (none when empty).
    pub sni: String,
}

/// TLS a filter chain terminates.
#[derive(Debug, Clone, PartialEq)]
pub struct DownstreamTls {
    /// The context; it must present a certificate.
    pub context: TlsContext,
    /// Refuse clients without a certificate.
    pub require_client_certificate: bool,
}

impl TlsContext {
    /// The SDS secrets it refers to.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        let certificate = match &self.certificate {
            Some(Certificate::Sds(name)) => Some(name.as_str()),
            _ => None,
        };
        let roots = match &self.validation {
            Some(Validation {
                roots: Source::Sds(name),
                ..
            }) => Some(name.as_str()),
            _ => None,
        };
        certificate.into_iter().chain(roots)
    }
}

/// The payload of a `transport_socket` named `name`, checked to be TLS of type `M`.
fn tls_payload<M: prost::Message + Name + Default>(socket: &core::TransportSocket) -> Partial<M> {
    if socket.name != TLS_TRANSPORT_SOCKET {
        return at(
            "name",
            format!("transport socket {:?} is not implemented", socket.name),
        );
    }
    let Some(core::transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
        return at("", "a transport socket without typed_config");
    };
    expect_type::<M>(any)?;
    within("typed_config", decode_payload(any))
}

fn expect_type<M: Name>(any: &Any) -> Partial<()> {
    if any.type_url == M::type_url() {
        Ok(())
    } else {
        at(
            "typed_config",
            format!("expected {}, not {}", M::full_name(), any.type_url),
        )
    }
}

/// An `UpstreamTlsContext` transport socket.
pub(crate) fn upstream(socket: &core::TransportSocket) -> Partial<UpstreamTls> {
    let u: pb::UpstreamTlsContext = tls_payload(socket)?;
    let context = within(
        "typed_config.common_tls_context",
        context(u.common_tls_context.as_ref()),
    )?;
    Ok(UpstreamTls {
        context,
        sni: u.sni,
    })
}

/// A `DownstreamTlsContext` transport socket.
pub(crate) fn downstream(socket: &core::TransportSocket) -> Partial<DownstreamTls> {
    let d: pb::DownstreamTlsContext = tls_payload(socket)?;
    let context = within(
        "typed_config.common_tls_context",
        context(d.common_tls_context.as_ref()),
    )?;
    if context.certificate.is_none() {
        return at(
            "typed_config.common_tls_context",
            "a server needs a certificate",
        );
    }
    let require_client_certificate = d
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    if require_client_certificate && context.validation.is_none() {
        return at(
            "typed_config.require_client_certificate",
            "client certificates need a validation context",
        );
    }
    Ok(DownstreamTls {
        context,
        require_client_certificate,
    })
}

fn context(c: Option<&pb::CommonTlsContext>) -> Partial<TlsContext> {
    let Some(c) = c else {
        return Ok(TlsContext {
            certificate: None,
            validation: None,
            alpn: Vec::new(),
        });
    };
    let certificate = match (
        c.tls_certificates.as_slice(),
        c.tls_certificate_sds_secret_configs.as_slice(),
    ) {
        ([], []) => None,
        ([pair], []) => Some(Certificate::Pair {
            chain: within(
                "tls_certificates[0].certificate_chain",
                source(pair.certificate_chain.as_ref()),
            )?,
            key: within(
                "tls_certificates[0].private_key",
                source(pair.private_key.as_ref()),
            )?,
        }),
        ([], [sds]) => Some(Certificate::Sds(within(
            "tls_certificate_sds_secret_configs[0]",
            sds_name(sds),
        )?)),
        _ => {
            return at(
                "tls_certificates",
                "exactly one certificate (inline, file or SDS) is implemented",
            );
        }
    };
    use pb::common_tls_context::ValidationContextType as V;
    let validation = match &c.validation_context_type {
        None => None,
        Some(V::ValidationContext(v)) => Some(within("validation_context", validation(v, None))?),
        Some(V::ValidationContextSdsSecretConfig(sds)) => Some(Validation {
            roots: Source::Sds(within(
                "validation_context_sds_secret_config",
                sds_name(sds),
            )?),
            sans: Vec::new(),
        }),
        Some(V::CombinedValidationContext(combined)) => {
            let Some(sds) = &combined.validation_context_sds_secret_config else {
                return at(
                    "combined_validation_context",
                    "validation_context_sds_secret_config is required",
                );
            };
            let roots = Source::Sds(within(
                "combined_validation_context.validation_context_sds_secret_config",
                sds_name(sds),
            )?);
            let default = combined
                .default_validation_context
                .clone()
                .unwrap_or_default();
            Some(within(
                "combined_validation_context.default_validation_context",
                validation(&default, Some(roots)),
            )?)
        }
        Some(_) => {
            return at(
                "validation_context_type",
                "certificate providers are not implemented",
            );
        }
    };
    Ok(TlsContext {
        certificate,
        validation,
        alpn: c.alpn_protocols.clone(),
    })
}

fn validation(v: &pb::CertificateValidationContext, roots: Option<Source>) -> Partial<Validation> {
    let roots = match (roots, &v.trusted_ca) {
        (Some(r), None) => r,
        (None, Some(ca)) => within("trusted_ca", source(Some(ca)))?,
        (Some(_), Some(_)) => {
            return at(
                "trusted_ca",
                "roots come from SDS here; trusted_ca must be empty",
            );
        }
        (None, None) => return at("trusted_ca", "a validation context needs trusted_ca"),
    };
    let sans = v
        .match_typed_subject_alt_names
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let path = format!("match_typed_subject_alt_names[{i}]");
            let uri = match pb::subject_alt_name_matcher::SanType::try_from(m.san_type) {
                Ok(pb::subject_alt_name_matcher::SanType::Uri) => true,
                Ok(pb::subject_alt_name_matcher::SanType::Dns) => false,
                _ => {
                    return at(
                        format!("{path}.san_type"),
                        "only DNS and URI SANs are implemented",
                    );
                }
            };
            let Some(matcher) = &m.matcher else {
                return at(format!("{path}.matcher"), "a SAN matcher needs a matcher");
            };
            Ok(SanMatcher {
                uri,
                matcher: within(&format!("{path}.matcher"), string_matcher(matcher))?,
            })
        })
        .collect::<Partial<_>>()?;
    Ok(Validation { roots, sans })
}

fn source(d: Option<&core::DataSource>) -> Partial<Source> {
    match d.and_then(|d| d.specifier.as_ref()) {
        Some(core::data_source::Specifier::Filename(f)) => Ok(Source::File(PathBuf::from(f))),
        Some(core::data_source::Specifier::InlineBytes(b)) => Ok(Source::Inline(b.clone())),
        Some(core::data_source::Specifier::InlineString(s)) => {
            Ok(Source::Inline(s.clone().into_bytes()))
        }
        _ => at("", "a filename or inline value is required"),
    }
}

fn sds_name(s: &pb::SdsSecretConfig) -> Partial<String> {
    let ads = matches!(
        s.sds_config
            .as_ref()
            .and_then(|c| c.config_source_specifier.as_ref()),
        Some(core::config_source::ConfigSourceSpecifier::Ads(_))
    );
    if !ads {
        return at("sds_config", "secrets must come over ADS");
    }
    if s.name.is_empty() {
        return at("name", "an SDS secret needs a name");
    }
    Ok(s.name.clone())
}
