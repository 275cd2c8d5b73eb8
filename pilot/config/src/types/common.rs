//! Types several kinds share: string matches, destinations, ports, percentages, header operations.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// How a string is matched: exactly one of `exact`, `prefix` or `regex` (RE2 syntax). Empty (`{}`) in a
/// header match means only that the header is present.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// The whole string equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The string starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The whole string matches this RE2 regular expression.
    #[serde(default)]
    pub regex: Option<String>,
}

/// A port of a service, selected by number.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number (1–65535).
    pub number: u32,
}

/// A percentage, 0.0 to 100.0.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    /// The percentage.
    pub value: f64,
}

/// A service (and optionally one subset and port of it) traffic is sent to.
#[derive(Clone, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// The service's host name; a short name resolves in the resource's namespace.
    pub host: String,
    /// A subset a DestinationRule of that host defines.
    #[serde(default)]
    pub subset: Option<String>,
    /// The port; required only when the service has more than one.
    #[serde(default)]
    pub port: Option<PortSelector>,
}

/// Edits of a message's headers.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Headers set, replacing existing values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers appended to existing values.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Header edits of the request (before forwarding) and the response (before returning it).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Edits of the request.
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    /// Edits of the response.
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}
