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

/// `bytes` with every import of the `sextant:adapter` interfaces renamed from version `from` to `to` (of the
/// same length): the component an adapter built against an SDK of version `to` would be.
fn with_abi(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut renamed = 0;
    for iface in ["types", "log", "clock", "metrics", "http"] {
        let old = format!("sextant:adapter/{iface}@{from}");
        let new = format!("sextant:adapter/{iface}@{to}");
        let mut at = 0;
        while let Some(i) = out[at..]
            .windows(old.len())
            .position(|w| w == old.as_bytes())
        {
            out[at + i..at + i + old.len()].copy_from_slice(new.as_bytes());
            at += i + old.len();
            renamed += 1;
        }
    }
    assert!(
        renamed > 0,
        "the component imports no sextant:adapter@{from} interface"
    );
    out
}

#[tokio::test]
async fn an_adapter_built_against_another_abi_version_is_refused_naming_both() {
    let wit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/wit/adapter.wit"),
    )
    .expect("sdk/wit/adapter.wit");
    assert!(
        wit.contains(&format!(
            "package sextant:adapter@{};",
            hub_adapters::ABI_VERSION
        )),
        "ABI_VERSION must be the WIT package version"
    );

    let rt = runtime(None);
    let real = hub_builtin_adapters::get("prometheus").expect("prometheus");
    let old = with_abi(real, hub_adapters::ABI_VERSION, "0.1.0");
    let err = rt
        .validate(&bytes("prometheus-old.wasm", &old))
        .await
        .expect_err("an older ABI");
    assert!(
        matches!(&err, LoadError::IncompatibleSdk { built_with, .. } if built_with == "0.1.0"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("ns/broken")
            && msg.contains("prometheus-old.wasm")
            && msg.contains("sextant:adapter@0.1.0")
            && msg.contains(&format!("sextant:adapter@{}", hub_adapters::ABI_VERSION)),
        "{msg}"
    );
    assert!(rt.start(bytes("prometheus-old.wasm", &old)).await.is_err());

    // The same component at the hub's version loads.
    rt.validate(&bytes("prometheus.wasm", real))
        .await
        .expect("the current ABI loads");
}
