//! What the hub keeps of each resource it watches: the document a file would hold (so the same loader and
//! validation judge it), its generation, and the status it carries.

use std::path::{Path, PathBuf};

use hub_config::ResourceStatus;
use kube::api::{ApiResource, DynamicObject};
use sextant_kube::Key;

/// The hub's kinds, as the API server serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `Policy`.
    Policy,
    /// `RateLimit`.
    RateLimit,
    /// `Telemetry`.
    Telemetry,
    /// `Adapter`.
    Adapter,
}

impl Kind {
    /// Every kind, in the order the stores are kept.
    pub const ALL: [Kind; 4] = [
        Kind::Policy,
        Kind::RateLimit,
        Kind::Telemetry,
        Kind::Adapter,
    ];

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Policy => "Policy",
            Kind::RateLimit => "RateLimit",
            Kind::Telemetry => "Telemetry",
            Kind::Adapter => "Adapter",
        }
    }

    /// Its index in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The API resource (group, version, plural) of the kind.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Policy => ApiResource::erase::<hub_config::Policy>(&()),
            Kind::RateLimit => ApiResource::erase::<hub_config::RateLimit>(&()),
            Kind::Telemetry => ApiResource::erase::<hub_config::Telemetry>(&()),
            Kind::Adapter => ApiResource::erase::<hub_config::Adapter>(&()),
        }
    }

    fn of_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One watched resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// Its `metadata.generation` (0 when the server gave none).
    pub generation: i64,
    /// The resource as a file would hold it — `apiVersion`, `kind`, `metadata` (name and namespace) and
    /// `spec` — as JSON with one field per line (JSON is YAML).
    pub text: String,
    /// Its `status` as read (`None` when absent or not the hub's shape).
    pub status: Option<ResourceStatus>,
}

impl Object {
    /// The projection of `object`, a resource of `kind`.
    pub fn of(kind: Kind, object: &DynamicObject) -> Object {
        let meta = &object.metadata;
        let document = serde_json::json!({
            "apiVersion": hub_config::API_VERSION,
            "kind": kind.name(),
            "metadata": {
                "name": meta.name.clone().unwrap_or_default(),
                "namespace": meta.namespace.clone().unwrap_or_default(),
            },
            "spec": object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null),
        });
        Object {
            generation: meta.generation.unwrap_or(0),
            text: serde_json::to_string_pretty(&document).unwrap_or_default(),
            status: object
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        }
    }
}

/// The path a resource is known by in the hub's configuration (and its errors):
/// `kubernetes/KIND/NAMESPACE/NAME`.
pub fn path(kind: Kind, key: &Key) -> PathBuf {
    Path::new("kubernetes")
        .join(kind.name())
        .join(&key.0)
        .join(&key.1)
}

/// The resource a [`path`] names.
pub fn of_path(path: &Path) -> Option<(Kind, Key)> {
    let mut parts = path.strip_prefix("kubernetes").ok()?.iter();
    let kind = Kind::of_name(parts.next()?.to_str()?)?;
    let namespace = parts.next()?.to_str()?.to_string();
    let name = parts.next()?.to_str()?.to_string();
    parts.next().is_none().then_some((kind, (namespace, name)))
}
