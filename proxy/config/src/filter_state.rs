//! `envoy.filters.http.set_filter_state`: values a request puts in its filter state, in a connection
//! manager's filter list and as the filter's per-route configuration (Envoy applies the listener's values,
//! then the route's, so a route's value replaces the listener's for the same key).
//!
//! The one key implemented is Envoy's well-known `envoy.network.application_protocols`: a comma-separated ALPN
//! list that replaces a TLS cluster's own on the upstream handshake of the request's connection (pilot sets
//! Istio's `istio-http/1.1,istio,http/1.1` on routes to mesh-mTLS clusters, so the server's sidecar knows the
//! connection carries HTTP). It must reach the upstream connection (`shared_with_upstream` `ONCE` or
//! `TRANSITIVE`), and it is a constant: a format string of plain text, without `%` command operators. Any
//! other key, and every other field, is refused by name.

use std::sync::Arc;

use sextant_proto::envoy::config::core::v3::{data_source, substitution_format_string};
use sextant_proto::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use sextant_proto::envoy::extensions::filters::http::set_filter_state::v3::Config;
use sextant_proto::google::protobuf::Any;

use crate::decode_payload;
use crate::error::{Partial, at, within};

/// `envoy.filters.http.set_filter_state` (the filter's name and its per-route configuration's key).
pub const SET_FILTER_STATE: &str = "envoy.filters.http.set_filter_state";
/// The filter state key overriding the upstream TLS handshake's ALPN list.
pub const APPLICATION_PROTOCOLS: &str = "envoy.network.application_protocols";
/// The longest ALPN protocol name TLS carries.
const MAX_PROTOCOL_LEN: usize = 255;

/// An ALPN list, in the order offered.
pub type Alpn = Arc<[String]>;

/// What one set-filter-state configuration puts in a request's filter state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetFilterState {
    /// The ALPN list that replaces a TLS cluster's own on the request's upstream connection.
    pub application_protocols: Option<Alpn>,
}

impl SetFilterState {
    /// The values of `self` (the listener's) with `more` (a route's) applied after them.
    pub fn then(&self, more: Option<&SetFilterState>) -> SetFilterState {
        SetFilterState {
            application_protocols: more
                .and_then(|m| m.application_protocols.clone())
                .or_else(|| self.application_protocols.clone()),
        }
    }
}

/// Decodes a `set_filter_state.v3.Config` (its type URL checked here).
pub fn set_filter_state(config: &Any) -> Partial<SetFilterState> {
    if !config
        .type_url
        .ends_with(&format!("/{}", <Config as prost::Name>::full_name()))
    {
        return at(
            "",
            format!(
                "{SET_FILTER_STATE} takes {}, not {}",
                <Config as prost::Name>::type_url(),
                config.type_url
            ),
        );
    }
    let c: Config = decode_payload(config)?;
    let mut out = SetFilterState::default();
    for (i, v) in c.on_request_headers.iter().enumerate() {
        let alpn = within(&format!("on_request_headers[{i}]"), value(v))?;
        out.application_protocols = Some(alpn);
    }
    Ok(out)
}

fn value(v: &FilterStateValue) -> Partial<Alpn> {
    let Some(filter_state_value::Key::ObjectKey(key)) = &v.key else {
        return at("object_key", "a filter state value needs an object_key");
    };
    if key != APPLICATION_PROTOCOLS {
        return at(
            "object_key",
            format!("filter state key {key:?} is not implemented (only {APPLICATION_PROTOCOLS:?})"),
        );
    }
    if !v.factory_key.is_empty() && v.factory_key != APPLICATION_PROTOCOLS {
        return at(
            "factory_key",
            format!(
                "factory {:?} is not implemented (only {APPLICATION_PROTOCOLS:?})",
                v.factory_key
            ),
        );
    }
    use filter_state_value::SharedWithUpstream;
    match SharedWithUpstream::try_from(v.shared_with_upstream) {
        Ok(SharedWithUpstream::Once | SharedWithUpstream::Transitive) => {}
        _ => {
            return at(
                "shared_with_upstream",
                format!(
                    "{APPLICATION_PROTOCOLS} only changes the upstream connection when shared with it (ONCE or TRANSITIVE)"
                ),
            );
        }
    }
    let Some(filter_state_value::Value::FormatString(f)) = &v.value else {
        return at(
            "format_string",
            "a filter state value needs a format_string",
        );
    };
    let text = match &f.format {
        Some(substitution_format_string::Format::TextFormatSource(source)) => {
            match &source.specifier {
                Some(data_source::Specifier::InlineString(s))
                    if source.watched_directory.is_none() =>
                {
                    s.as_str()
                }
                _ => {
                    return at(
                        "format_string.text_format_source",
                        "only inline_string is implemented",
                    );
                }
            }
        }
        _ => {
            return at("format_string", "only text_format_source is implemented");
        }
    };
    let path = "format_string.text_format_source.inline_string";
    if text.contains('%') {
        return at(
            path,
            format!(
                "{text:?}: command operators (%…%) are not implemented; the value must be constant"
            ),
        );
    }
    let protocols: Vec<String> = text.split(',').map(str::to_string).collect();
    if let Some(bad) = protocols
        .iter()
        .find(|p| p.is_empty() || p.len() > MAX_PROTOCOL_LEN)
    {
        return at(
            path,
            format!(
                "{text:?} is not a comma-separated list of ALPN protocols ({bad:?} is not 1 to {MAX_PROTOCOL_LEN} bytes)"
            ),
        );
    }
    Ok(protocols.into())
}
