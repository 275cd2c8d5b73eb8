//! Envoy resources as protobuf JSON, for config dumps (pilot's `/debug/config_dump`, the proxy's
//! `/config_dump`).

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::google::protobuf::Any;

static ENVOY_TYPES: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(crate::ENVOY_FILE_DESCRIPTOR_SET)
        .map_err(|e| format!("the embedded Envoy descriptors do not decode: {e}"))
});

/// The descriptors of the Envoy resources pilot sends and of what they pack ([`crate::ENVOY_FILE_DESCRIPTOR_SET`]),
/// decoded once.
pub fn envoy_descriptors() -> Result<&'static DescriptorPool, &'static str> {
    ENVOY_TYPES.as_ref().map_err(String::as_str)
}

/// A packed resource as protobuf JSON (`@type` first, nested `Any`s expanded), or an error object.
pub fn any_to_json(any: &Any) -> serde_json::Value {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let decoded = envoy_descriptors()
        .map_err(str::to_string)
        .and_then(|pool| {
            pool.get_message_by_name(name)
                .ok_or_else(|| format!("unknown type {name}"))
        })
        .and_then(|desc| {
            DynamicMessage::decode(desc, any.value.as_slice()).map_err(|e| e.to_string())
        })
        .and_then(|msg| serde_json::to_value(&msg).map_err(|e| e.to_string()));
    match decoded {
        Ok(serde_json::Value::Object(fields)) => {
            let mut out = serde_json::Map::new();
            out.insert("@type".into(), any.type_url.clone().into());
            out.extend(fields);
            serde_json::Value::Object(out)
        }
        Ok(other) => other,
        Err(e) => serde_json::json!({"@type": any.type_url, "error": e, "bytes": any.value.len()}),
    }
}

/// Hides inline private keys (SDS secrets carry the workload's key), as Envoy's own config dump does; file
/// names stay visible.
pub fn redact_keys(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(fields) => {
                for (k, field) in fields.iter_mut() {
                    if k == "privateKey"
                        && let serde_json::Value::Object(source) = field
                    {
                        for inline in ["inlineBytes", "inlineString"] {
                            if let Some(x) = source.get_mut(inline) {
                                *x = "[redacted]".into();
                            }
                        }
                    } else {
                        walk(field);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use crate::envoy::config::cluster::v3::Cluster;
    use crate::envoy::config::core::v3::{TransportSocket, transport_socket};
    use crate::envoy::config::listener::v3::{Listener, ListenerFilter, listener_filter};
    use crate::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    use crate::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;

    use super::{any_to_json, redact_keys};

    fn pack<M: prost::Message + prost::Name>(m: &M) -> crate::google::protobuf::Any {
        crate::google::protobuf::Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    #[test]
    fn gateway_and_tls_resources_decode_to_json() {
        let cluster = Cluster {
            name: "outbound|443||api.example.com".into(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
                    &UpstreamTlsContext {
                        sni: "api.example.com".into(),
                        ..Default::default()
                    },
                ))),
            }),
            ..Default::default()
        };
        let json = any_to_json(&pack(&cluster)).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(
            json.contains("api.example.com\"") && json.contains("\"sni\""),
            "{json}"
        );
        let listener = Listener {
            name: "0.0.0.0_443".into(),
            listener_filters: vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(pack(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = any_to_json(&pack(&listener)).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(json.contains("TlsInspector"), "{json}");
    }

    #[test]
    fn secrets_show_their_certificate_but_not_their_key() {
        use crate::envoy::config::core::v3::{DataSource, data_source::Specifier};
        use crate::envoy::extensions::transport_sockets::tls::v3::{
            Secret, TlsCertificate, secret,
        };
        let inline = |s: &str| DataSource {
            specifier: Some(Specifier::InlineBytes(s.as_bytes().to_vec())),
            ..Default::default()
        };
        let secret = Secret {
            name: "default".into(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline("-----BEGIN CERTIFICATE-----")),
                private_key: Some(inline("-----BEGIN PRIVATE KEY----- very secret")),
                ..Default::default()
            })),
        };
        let json = redact_keys(any_to_json(&pack(&secret))).to_string();
        assert!(!json.contains("\"error\""), "{json}");
        assert!(json.contains("\"certificateChain\""), "{json}");
        assert!(json.contains("[redacted]"), "{json}");
        // Inline bytes are base64 in JSON: neither form of the key may appear.
        assert!(
            !json.contains("very secret") && !json.contains("LS0tLS1CRUdJTiBQUklWQVRF"),
            "{json}"
        );
    }
}
