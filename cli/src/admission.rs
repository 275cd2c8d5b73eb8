//! The hub's kinds (`policy.sextant.dev`) judged for pilot's admission webhook: the resource alone, with the
//! validation `sextant validate` and the hub apply — its shape, and every CEL expression compiled and
//! type-checked — so `kubectl apply` of a Policy with a typo is refused with the same field-level message.
//! References to other resources (a Telemetry naming an Adapter not created yet) are not judged here: the
//! order resources are applied in is the user's, and the hub reports a dangling one in the resource's status.

use hub_config::{ConfigError, ConfigFiles};
use pilot_server::webhook::{Admission, document_path, without_location};
use serde_json::Value;

/// The hub's validation, for the webhook.
#[derive(Debug, Default)]
pub struct HubValidation;

impl Admission for HubValidation {
    fn validate(&self, group: &str, kind: &str, object: &Value) -> Option<Result<(), String>> {
        if group != hub_config::GROUP {
            return None;
        }
        // The resource as a file would hold it (the API server's metadata and status aside).
        let meta = &object["metadata"];
        let document = serde_json::json!({
            "apiVersion": object["apiVersion"],
            "kind": kind,
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": object["spec"],
        });
        let files = ConfigFiles::from_texts(vec![(
            document_path(kind, object),
            serde_json::to_string_pretty(&document).unwrap_or_default(),
        )]);
        let (set, mut errors) = hub_config::load_each(&files);
        if errors.is_empty() {
            match kind {
                "Policy" | "RateLimit" => {
                    if let Err(e) = hub_policy::validate(set) {
                        errors.extend(e.0);
                    }
                }
                "Telemetry" => {
                    if let Err(e) = hub_telemetry::validate(&set) {
                        errors.extend(e.into_iter().filter(|e| !names_an_adapter(e)));
                    }
                }
                _ => {}
            }
        }
        Some(if errors.is_empty() {
            Ok(())
        } else {
            Err(errors
                .iter()
                .map(|e| without_location(&e.to_string()))
                .collect::<Vec<_>>()
                .join("; "))
        })
    }
}

/// Whether `e` is about which adapters a Telemetry names (judged by the hub, with the adapters there).
fn names_an_adapter(e: &ConfigError) -> bool {
    e.field().is_some_and(|f| f.starts_with("spec.adapters"))
}
