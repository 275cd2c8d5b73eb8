//! `sextant adapter new` (scaffold a buildable adapter crate) and `sextant adapter build` (build it to a
//! wasm32-wasip2 component with whichever toolchain this machine has).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The version of the SDK crates this binary carries (the adapter ABI's).
fn sdk_version() -> &'static str {
    hub_adapters::ABI_VERSION
}

/// Where a new adapter's SDK comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sdk {
    /// crates.io, by version (the adapter ABI's).
    Version,
    /// A checkout's `sdk/` directory, by path (developing the SDK itself).
    Path(PathBuf),
    /// The SDK's source this binary carries, copied into the new crate's `vendor/` (builds with no checkout
    /// and no registry holding the SDK).
    Vendor,
}

/// Writes the SDK this binary carries into `dir` (sdk/ as `dir`, sdk/batch/ as `dir/batch`).
fn vendor(dir: &Path) -> anyhow::Result<()> {
    for (rel, bytes) in SDK_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes a new adapter crate `name` into `parent/name`; returns its directory.
pub fn new(name: &str, parent: &Path, sdk: &Sdk) -> anyhow::Result<PathBuf> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !ok {
        bail!(
            "{name:?} is not a crate name: lower-case letters, digits, '-' and '_', starting with a letter"
        );
    }
    let dependency = match sdk {
        Sdk::Version => format!("\"{}\"", sdk_version()),
        Sdk::Path(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("the SDK path {}", p.display()))?;
            if !p.join("Cargo.toml").is_file() {
                bail!(
                    "{} has no Cargo.toml: give sextant's sdk/ directory",
                    p.display()
                );
            }
            format!("{{ path = {:?} }}", p.display().to_string())
        }
        Sdk::Vendor => "{ path = \"vendor/sextant-adapter-sdk\" }".to_string(),
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let ident = name.replace('-', "_");
    let ty: String = ident
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let files = [
        (
            "Cargo.toml",
            CARGO_TOML
                .replace("{name}", name)
                .replace("{sdk}", &dependency),
        ),
        (
            "src/lib.rs",
            LIB_RS
                .replace("{ident}", &ident)
                .replace("{Type}", &ty)
                .replace("{name}", name),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    if *sdk == Sdk::Vendor {
        vendor(&dir.join("vendor/sextant-adapter-sdk"))?;
    }
    Ok(dir)
}

/// Builds the adapter crate (or workspace) at `dir`; returns the components.
pub fn build(dir: &Path, debug: bool, target_dir: Option<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml: point at an adapter crate (made with `sextant adapter new`)",
            dir.display()
        );
    }
    let opts = sextant_adapter_build::BuildOptions {
        debug,
        target_dir,
        ..Default::default()
    };
    Ok(sextant_adapter_build::build(dir, &opts)?)
}

const CARGO_TOML: &str = r#"# A Sextant adapter: built to a wasm32-wasip2 component with `sextant adapter build .`, tested natively with
# `cargo test`.
[workspace]

[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the Wasm component; rlib: native tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
sextant-adapter-sdk = {sdk}

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const LIB_RS: &str = r#"//! The `{name}` adapter: counts the hub's log entries by name into the hub's Prometheus registry
//! (`{ident}_entries_total{log="..."}` on the hub's :42422/metrics).
//!
//! Load it with an `Adapter` resource, and send it log entries with a `Telemetry` resource:
//!
//! ```yaml
//! apiVersion: policy.sextant.dev/v1alpha1
//! kind: Adapter
//! metadata: {name: {name}}
//! spec:
//!   module: target/wasm32-wasip2/release/{ident}.wasm   # relative to this YAML file, or absolute
//! ---
//! apiVersion: policy.sextant.dev/v1alpha1
//! kind: Telemetry
//! metadata: {name: access-{name}}
//! spec:
//!   adapters: [{name}]
//!   logs:
//!   - {name: accesslog, fields: {path: request.url_path, code: response.code}}
//! ```

use sextant_adapter_sdk::{
    Adapter, AdapterError, Batch, Capabilities, FamilyHandle, Host, MetricFamily, MetricKind, SampleWriter,
};

/// One instance: the hub calls `init` once, then the handlers with every batch.
pub struct {Type} {
    entries: FamilyHandle,
}

impl Adapter for {Type} {
    fn init(_config: &str, host: &Host) -> Result<Self, String> {
        // `_config` is the Adapter's `spec.config` as JSON; parse it with `sextant_adapter_sdk::parse_config`.
        let family = MetricFamily::new(
            "{ident}_entries",
            "Log entries the {name} adapter received, by log name",
            MetricKind::Counter,
            ["log"],
        );
        Ok(Self { entries: host.metrics().define(&family)? })
    }

    // The hub sends only the kinds declared here.
    fn capabilities(&self) -> Capabilities {
        Capabilities::LOGS
    }

    fn handle_logs(&mut self, batch: &Batch<'_>, host: &Host) -> Result<(), AdapterError> {
        let mut samples = SampleWriter::new();
        for entry in batch.logs() {
            samples.sample(self.entries.0, 1.0, [entry.name()]);
        }
        host.metrics().record(&samples).map_err(AdapterError::permanent)?;
        Ok(())
    }
}

sextant_adapter_sdk::export_adapter!({Type});

#[cfg(test)]
mod tests {
    use sextant_adapter_sdk::testing::{self, Harness};

    use super::*;

    #[test]
    fn passes_the_compliance_check() {
        testing::compliance::<{Type}>("{}");
    }

    #[test]
    fn counts_entries_by_log_name() {
        let mut h = Harness::<{Type}>::new("{}").expect("init");
        h.handle_logs(&testing::logs_batch()).expect("handled");
        assert!(!h.samples().is_empty());
        assert!(h.samples().iter().all(|s| s.label("log").is_some()));
    }
}
"#;
