//! Builds the `adapters/` workspace to wasm32-wasip2 components (release) and embeds them; see the crate docs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sextant_adapter_build::{BuildOptions, build};

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    // hub/builtin-adapters → the repository root.
    let root = manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.join("../.."), Path::to_path_buf);
    let adapters = root.join("adapters");
    let out_dir = PathBuf::from(env("OUT_DIR"));

    rerun_if_changed(&adapters, &root);
    println!("cargo:rerun-if-env-changed=SEXTANT_WASM_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=SEXTANT_SKIP_ADAPTERS");

    let mut table =
        String::from("/// (name, component) of every adapter built from `adapters/`.\n");
    table.push_str("static COMPONENTS: &[(&str, &[u8])] = &[\n");
    if std::env::var_os("SEXTANT_SKIP_ADAPTERS").is_some_and(|v| v != "0") {
        println!(
            "cargo:warning=SEXTANT_SKIP_ADAPTERS is set: the hub is built without its builtin adapters"
        );
    } else {
        let opts = BuildOptions {
            jobs: std::env::var("NUM_JOBS").ok().and_then(|j| j.parse().ok()),
            target_dir: Some(adapters.join("target")),
            ..BuildOptions::default()
        };
        let components = match build(&adapters, &opts) {
            Ok(c) => c,
            Err(e) => fail(&e.to_string()),
        };
        for wasm in components {
            let Some(name) = wasm.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let dest = out_dir.join(format!("{name}.wasm"));
            if let Err(e) = std::fs::copy(&wasm, &dest) {
                fail(&format!(
                    "copying {} to {}: {e}",
                    wasm.display(),
                    dest.display()
                ));
            }
            let _ = writeln!(
                table,
                "    ({name:?}, include_bytes!({:?})),",
                dest.display().to_string()
            );
        }
    }
    table.push_str("];\n");
    if let Err(e) = std::fs::write(out_dir.join("components.rs"), table) {
        fail(&format!("writing components.rs: {e}"));
    }
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| fail(&format!("cargo did not set {key}")))
}

/// Sources of the guest build: a change in any of them rebuilds the adapters. Not `adapters/` as a whole:
/// its `target/` changes with every build.
fn rerun_if_changed(adapters: &Path, root: &Path) {
    let mut paths = vec![
        adapters.join("Cargo.toml"),
        adapters.join("Cargo.lock"),
        root.join("sdk/Cargo.toml"),
        root.join("sdk/src"),
        root.join("sdk/wit"),
        root.join("sdk/batch/Cargo.toml"),
        root.join("sdk/batch/src"),
    ];
    if let Ok(entries) = std::fs::read_dir(adapters) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").is_file() {
                paths.push(dir.join("Cargo.toml"));
                paths.push(dir.join("src"));
            }
        }
    }
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

fn fail(message: &str) -> ! {
    for line in message.lines() {
        println!("cargo:warning={line}");
    }
    println!(
        "cargo:warning=set SEXTANT_SKIP_ADAPTERS=1 to build the hub without its builtin adapters"
    );
    eprintln!("error: building the builtin adapters: {message}");
    std::process::exit(1);
}
