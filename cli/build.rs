//! Records the commit the binary is built from, for `sextant --version` (`unknown` outside a git checkout),
//! and embeds the adapter SDK's source (sdk/ and sdk/batch/, as published) for `sextant adapter new
//! --vendor-sdk`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of the published SDK crates under `sdk`: manifests, READMEs, sources and the WIT.
fn sdk_files(sdk: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(sdk)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if path.is_dir() {
            // sdk/build is the host-side builder (a crate of the workspace, not of the SDK).
            if !matches!(rel.as_str(), "build" | "target") {
                sdk_files(sdk, &path, out);
            }
        } else if rel.ends_with(".rs")
            || rel.ends_with(".wit")
            || rel.ends_with("Cargo.toml")
            || rel.ends_with("README.md")
        {
            out.push(path);
        }
    }
}

fn embed_sdk() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let sdk = manifest.join("../sdk");
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    let mut files = Vec::new();
    sdk_files(&sdk, &sdk, &mut files);
    let mut table = String::from(
        "/// The adapter SDK's source as this binary was built with it: (path under sdk/, contents).\n\
         pub static SDK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        let rel = f
            .strip_prefix(&sdk)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            f.display().to_string()
        ));
        println!("cargo:rerun-if-changed={}", f.display());
    }
    table.push_str("];\n");
    for dir in ["", "src", "wit", "batch", "batch/src"] {
        println!("cargo:rerun-if-changed={}", sdk.join(dir).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("sdk_files.rs");
    if let Err(e) = std::fs::write(&out, table) {
        panic!("writing {}: {e}", out.display());
    }
}

fn main() {
    embed_sdk();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let commit = if dirty && commit != "unknown" {
        format!("{commit}-modified")
    } else {
        commit
    };
    println!("cargo:rustc-env=SEXTANT_GIT_COMMIT={commit}");
    // A new commit or a checkout changes HEAD or the ref it names.
    for path in ["../.git/HEAD", "../.git/index"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
