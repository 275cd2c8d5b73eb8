//! Secrets (SDS): the workload's certificate and the roots it trusts.

use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::extensions::transport_sockets::tls::v3 as pb;
use sextant_proto::google::protobuf::Any;

use crate::error::{Partial, at};

/// A secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name (`default`, `ROOTCA`).
    pub name: String,
    /// What it holds.
    pub value: SecretValue,
}

/// What a secret holds, as PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// A certificate chain (leaf first) and its private key.
    Certificate {
        /// The chain.
        chain: Vec<u8>,
        /// The key.
        key: Vec<u8>,
    },
    /// Trusted roots.
    Roots(Vec<u8>),
}

/// Decodes and validates a Secret resource.
pub fn decode(any: &Any) -> Result<Secret, crate::Error> {
    crate::resource::<pb::Secret, _>(
        "Secret",
        any,
        |s| s.name.clone(),
        |s| {
            let value = match &s.r#type {
                Some(pb::secret::Type::TlsCertificate(c)) => SecretValue::Certificate {
                    chain: inline(
                        c.certificate_chain.as_ref(),
                        "tls_certificate.certificate_chain",
                    )?,
                    key: inline(c.private_key.as_ref(), "tls_certificate.private_key")?,
                },
                Some(pb::secret::Type::ValidationContext(v)) => SecretValue::Roots(inline(
                    v.trusted_ca.as_ref(),
                    "validation_context.trusted_ca",
                )?),
                _ => {
                    return at(
                        "type",
                        "a secret must hold a tls_certificate or a validation_context",
                    );
                }
            };
            Ok(Secret {
                name: s.name.clone(),
                value,
            })
        },
    )
}

fn inline(source: Option<&core::DataSource>, path: &str) -> Partial<Vec<u8>> {
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(core::data_source::Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(core::data_source::Specifier::InlineString(s)) => Ok(s.clone().into_bytes()),
        _ => at(path, "an inline value is required"),
    }
}
