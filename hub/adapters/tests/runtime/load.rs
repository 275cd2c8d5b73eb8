//! Modules that cannot be loaded give clear errors, never panics.

use std::sync::Arc;

use hub_adapters::{AdapterConfig, LoadError, ModuleSource};

use crate::{runtime, scratch};

fn bytes(label: &str, bytes: &[u8]) -> AdapterConfig {
    AdapterConfig::new(
        "ns/broken",
        ModuleSource::Bytes {
            label: label.into(),
            bytes: Arc::from(bytes),
        },
        serde_json::json!({}),
    )
}

#[tokio::test]
async fn a_core_module_is_not_a_component() {
    let rt = runtime(None);
    // The smallest valid core module: magic and version 1, no sections.
    let core = b"\0asm\x01\0\0\0";
    let err = rt
        .validate(&bytes("core.wasm", core))
        .await
        .expect_err("core module");
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ns/broken")
            && msg.contains("core.wasm")
            && msg.contains("core WebAssembly module"),
        "{msg}"
    );
    // Through start too.
    assert!(rt.start(bytes("core.wasm", core)).await.is_err());
}

#[tokio::test]
async fn garbage_and_truncated_components_are_refused() {
    let rt = runtime(None);
    let err = rt
        .validate(&bytes("garbage.bin", b"definitely not wasm at all"))
        .await
        .expect_err("garbage");
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.bin"), "{err}");

    let real = hub_builtin_adapters::get("prometheus").expect("prometheus");
    let err = rt
        .validate(&bytes("truncated.wasm", &real[..real.len() / 2]))
        .await
        .expect_err("truncated");
    assert!(matches!(err, LoadError::NotAComponent { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_file_and_unknown_builtin() {
    let rt = runtime(None);
    let missing = scratch("missing").join("nope.wasm");
    let cfg = AdapterConfig::new(
        "ns/missing",
        ModuleSource::Path(missing.clone()),
        serde_json::json!({}),
    );
    let err = rt.validate(&cfg).await.expect_err("missing file");
    assert!(matches!(err, LoadError::Source { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let cfg = AdapterConfig::new(
        "ns/x",
        ModuleSource::Builtin("nosuch".into()),
        serde_json::json!({}),
    );
    let err = rt.validate(&cfg).await.expect_err("unknown builtin");
    assert!(err.to_string().contains("nosuch"), "{err}");
}

#[tokio::test]
async fn init_errors_name_the_adapter_and_the_message() {
    let rt = runtime(None);
    let cfg = AdapterConfig::new(
        "ns/prom",
        ModuleSource::Builtin("prometheus".into()),
        serde_json::json!({"no_such_option": true}),
    );
    let err = rt.validate(&cfg).await.expect_err("bad config");
    assert!(matches!(err, LoadError::Init { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("ns/prom")
            && msg.contains("builtin:prometheus")
            && msg.contains("no_such_option"),
        "{msg}"
    );

    let ok = AdapterConfig::new(
        "ns/prom",
        ModuleSource::Builtin("prometheus".into()),
        serde_json::json!({}),
    );
    let caps = rt.validate(&ok).await.expect("valid");
    assert!(caps.metrics && !caps.check);
}

#[tokio::test]
async fn a_component_file_on_disk_loads() {
    let dir = scratch("path");
    let path = dir.join("prometheus.wasm");
    std::fs::write(
        &path,
        hub_builtin_adapters::get("prometheus").expect("prometheus"),
    )
    .expect("write");
    let rt = runtime(None);
    let cfg = AdapterConfig::new("ns/prom", ModuleSource::Path(path), serde_json::json!({}));
    assert!(rt.validate(&cfg).await.expect("loads").metrics);
}

#[test]
fn a_runtime_needs_tokio() {
    let err =
        hub_adapters::Runtime::new(hub_adapters::RuntimeOptions::default()).expect_err("no tokio");
    assert!(
        matches!(err, hub_adapters::RuntimeError::NoTokio(_)),
        "{err:?}"
    );
}
