//! Builds an adapter crate (or a workspace of them) to wasm32-wasip2 components, choosing the toolchain by
//! itself, so that a plain `cargo build` of the hub works on a fresh machine.
//!
//! The toolchain, in this order ([`Toolchain::detect`]):
//! 1. rustup with the `wasm32-wasip2` target installed (`rustup target add wasm32-wasip2`, a developer
//!    laptop): `cargo build --release --target wasm32-wasip2` with that toolchain's cargo and rustc.
//! 2. Debian's `rustc-web` 1.96 with its library source and the wasm linkers (`.ci/wasm-toolchain` installs
//!    them; rustup's wasm targets cannot be downloaded everywhere): `/usr/bin/cargo` with
//!    `RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi -C link-self-contained=no"`
//!    and `-Zbuild-std=std,panic_abort` (std is compiled from source for the target).
//! 3. Otherwise [`BuildError::NoToolchain`], naming both fixes.
//!
//! `SEXTANT_WASM_TOOLCHAIN=rustup|debian` forces a path. The build runs in its own target directory (by
//! default `<dir>/target`), so a build script calling [`build`] does not wait on the outer cargo's lock;
//! variables the outer cargo sets for build scripts (`RUSTFLAGS`, `CARGO_TARGET_DIR`, `RUSTC_WRAPPER`,
//! `CARGO_ENCODED_RUSTFLAGS`, `CARGO_BUILD_*`, jobserver, ...) are removed from its environment. Every output
//! is checked to be a component, not a core module.

mod toolchain;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub use toolchain::Toolchain;

/// The target adapters are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The first 8 bytes of a component: `\0asm`, version 0x0d, layer 1 (a core module has version 1, layer 0).
pub const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Neither toolchain path is available.
    #[error(
        "no Rust toolchain for {TARGET}: {detail}. Fix with either `rustup target add {TARGET}` or \
         `.ci/wasm-toolchain` (installs Debian's rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc)"
    )]
    NoToolchain {
        /// What was looked for and missing.
        detail: String,
    },
    /// A program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// cargo exited with an error (its diagnostics went to stderr).
    #[error("cargo build of {dir} for {TARGET} with {toolchain} failed ({status})")]
    Cargo {
        /// The crate or workspace directory.
        dir: PathBuf,
        /// The toolchain used.
        toolchain: String,
        /// cargo's exit status.
        status: std::process::ExitStatus,
    },
    /// The build produced no `.wasm` file (no `cdylib` crate?).
    #[error(
        "building {dir} produced no .wasm file: adapter crates need `crate-type = [\"cdylib\"]`"
    )]
    NoOutput {
        /// The crate or workspace directory.
        dir: PathBuf,
    },
    /// An output is not a component.
    #[error("{path} is not a Wasm component: {reason}")]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What its first bytes say.
        reason: String,
    },
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Build the dev profile instead of release.
    pub debug: bool,
    /// Only these packages (`-p`); all of the workspace's default members when empty.
    pub packages: Vec<String>,
    /// The target directory; `<dir>/target` when `None`.
    pub target_dir: Option<PathBuf>,
    /// `--jobs`; cargo's default when `None`.
    pub jobs: Option<u32>,
    /// `--locked`: fail instead of updating `Cargo.lock`.
    pub locked: bool,
    /// The toolchain; [`Toolchain::detect`] when `None`.
    pub toolchain: Option<Toolchain>,
}

/// Builds the crate or workspace at `dir` for [`TARGET`] and returns the components it produced (one per
/// `cdylib` crate). Progress lines and cargo's diagnostics go to stderr.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<Vec<PathBuf>, BuildError> {
    // cargo runs in `dir`: a relative target directory would be resolved from there.
    let dir = &std::path::absolute(dir).map_err(|source| BuildError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let toolchain = match &opts.toolchain {
        Some(t) => t.clone(),
        None => Toolchain::detect()?,
    };
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| dir.join("target"));
    eprintln!(
        "sextant-adapter-build: building {} for {TARGET} with {}",
        dir.display(),
        toolchain.describe()
    );

    let mut cmd = toolchain.cargo_command();
    cmd.current_dir(dir)
        .arg("build")
        .args([
            "--target",
            TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    if !opts.debug {
        cmd.arg("--release");
    }
    if opts.locked {
        cmd.arg("--locked");
    }
    if let Some(j) = opts.jobs {
        cmd.arg(format!("--jobs={j}"));
    }
    for p in &opts.packages {
        cmd.args(["-p", p]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());

    let program = format!("{:?}", cmd.get_program());
    let mut child = cmd.spawn().map_err(|source| BuildError::Spawn {
        program: program.clone(),
        source,
    })?;
    let mut outputs = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|source| BuildError::Spawn {
                program: program.clone(),
                source,
            })?;
            outputs.extend(wasm_artifacts(&line));
        }
    }
    let status = child
        .wait()
        .map_err(|source| BuildError::Spawn { program, source })?;
    if !status.success() {
        return Err(BuildError::Cargo {
            dir: dir.to_owned(),
            toolchain: toolchain.describe(),
            status,
        });
    }
    outputs.sort();
    outputs.dedup();
    if outputs.is_empty() {
        return Err(BuildError::NoOutput {
            dir: dir.to_owned(),
        });
    }
    for o in &outputs {
        check_component(o)?;
    }
    eprintln!(
        "sextant-adapter-build: built {} component(s)",
        outputs.len()
    );
    Ok(outputs)
}

/// The `.wasm` files of one `compiler-artifact` message of cargo's JSON output.
fn wasm_artifacts(line: &str) -> Vec<PathBuf> {
    let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
        return Vec::new();
    };
    if msg["reason"] != "compiler-artifact" {
        return Vec::new();
    }
    msg["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

/// Checks that `path` starts with the component-model preamble.
pub fn check_component(path: &Path) -> Result<(), BuildError> {
    let mut head = [0u8; 8];
    let n = std::fs::File::open(path)
        .and_then(|f| f.take(8).read(&mut head))
        .map_err(|source| BuildError::Io {
            path: path.to_owned(),
            source,
        })?;
    if n == 8 && head == COMPONENT_PREAMBLE {
        return Ok(());
    }
    let reason = if n == 8 && head[..4] == COMPONENT_PREAMBLE[..4] && head[4..] == [1, 0, 0, 0] {
        "it is a core Wasm module (the target's linker did not make a component: is the target wasm32-wasip2 and \
         the linker wasm-component-ld?)"
            .to_owned()
    } else {
        format!(
            "it starts with {:02x?}, not the component preamble {COMPONENT_PREAMBLE:02x?}",
            &head[..n]
        )
    };
    Err(BuildError::NotAComponent {
        path: path.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_are_read_from_cargo_json() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"]},"filenames":["/t/x/release/a.wasm","/t/x/release/liba.rlib"]}"#;
        assert_eq!(
            wasm_artifacts(line),
            vec![PathBuf::from("/t/x/release/a.wasm")]
        );
        assert!(wasm_artifacts(r#"{"reason":"build-finished","success":true}"#).is_empty());
        assert!(wasm_artifacts("Compiling x").is_empty());
    }

    #[test]
    fn core_modules_and_junk_are_not_components() {
        let dir =
            std::env::temp_dir().join(format!("sextant-adapter-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let core = dir.join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\0\0\0rest").unwrap();
        let e = check_component(&core).unwrap_err().to_string();
        assert!(e.contains("core Wasm module"), "{e}");
        let junk = dir.join("junk.wasm");
        std::fs::write(&junk, b"MZ").unwrap();
        assert!(check_component(&junk).is_err());
        let comp = dir.join("comp.wasm");
        std::fs::write(&comp, [&COMPONENT_PREAMBLE[..], b"..."].concat()).unwrap();
        check_component(&comp).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
