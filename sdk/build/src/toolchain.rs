//! Finding a toolchain that can build wasm32-wasip2 components.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BuildError, TARGET};

/// Debian's toolchain files and the package providing each.
const DEBIAN_PARTS: [(&str, &str); 6] = [
    ("/usr/bin/rustc", "rustc-web"),
    ("/usr/bin/cargo", "cargo-web"),
    (
        "/usr/lib/rustlib/src/rust/library/std/src/lib.rs",
        "rust-web-src",
    ),
    (
        "/usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld",
        "rust-web-llvm",
    ),
    ("/usr/bin/rust-lld", "lld-22"),
    ("/usr/lib/wasm32-wasi/libc.a", "wasi-libc"),
];

/// Variables the outer cargo (or the user) sets that must not leak into the guest build: they name host
/// flags, another target directory, a wrapper or the outer jobserver.
const CLEARED_VARS: [&str; 19] = [
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTC_BOOTSTRAP",
    "CARGO",
    "CARGO_TARGET_DIR",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_INCREMENTAL",
    "CARGO_PRIMARY_PACKAGE",
    "OUT_DIR",
    "TARGET",
];

/// Prefixes of variables cleared for the same reason (`CARGO_BUILD_TARGET`, `CARGO_PROFILE_RELEASE_LTO`,
/// `CARGO_CFG_*` and `CARGO_FEATURE_*` of the outer build script, ...).
const CLEARED_PREFIXES: [&str; 7] = [
    "CARGO_BUILD_",
    "CARGO_TARGET_",
    "CARGO_PROFILE_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
];

/// A toolchain that builds [`TARGET`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// A rustup toolchain with the target installed.
    Rustup {
        /// Its cargo (`rustup which cargo`).
        cargo: PathBuf,
        /// Its rustc (`rustup which rustc`).
        rustc: PathBuf,
    },
    /// Debian's rustc-web with its library source: std is built with `-Zbuild-std`.
    Debian,
}

impl Toolchain {
    /// Picks rustup when it has the target, else Debian's packages when all are installed. The error names
    /// what is missing and both fixes. `SEXTANT_WASM_TOOLCHAIN=rustup|debian` forces one.
    pub fn detect() -> Result<Self, BuildError> {
        let forced = std::env::var("SEXTANT_WASM_TOOLCHAIN").unwrap_or_default();
        let rustup = || Self::rustup();
        let debian = || Self::debian();
        match forced.as_str() {
            "rustup" => rustup(),
            "debian" => debian(),
            _ => rustup().or_else(|rustup_err| {
                debian().map_err(|debian_err| BuildError::NoToolchain {
                    detail: format!("{}; {}", no_detail(rustup_err), no_detail(debian_err)),
                })
            }),
        }
    }

    /// The rustup toolchain in effect, if it has the target.
    pub fn rustup() -> Result<Self, BuildError> {
        let installed = run("rustup", &["target", "list", "--installed"])
            .map_err(|e| no_toolchain(format!("rustup is not usable ({e})")))?;
        if !installed.lines().any(|l| l.trim() == TARGET) {
            return Err(no_toolchain(format!(
                "rustup's toolchain lacks the {TARGET} target"
            )));
        }
        let which = |tool: &str| {
            run("rustup", &["which", tool])
                .map(|p| PathBuf::from(p.trim()))
                .map_err(|e| no_toolchain(format!("rustup which {tool}: {e}")))
        };
        Ok(Self::Rustup {
            cargo: which("cargo")?,
            rustc: which("rustc")?,
        })
    }

    /// Debian's toolchain, if all its packages are installed.
    pub fn debian() -> Result<Self, BuildError> {
        let missing: Vec<String> = DEBIAN_PARTS
            .iter()
            .filter(|(path, _)| !Path::new(path).exists())
            .map(|(path, pkg)| format!("{pkg} ({path})"))
            .collect();
        if missing.is_empty() {
            Ok(Self::Debian)
        } else {
            Err(no_toolchain(format!(
                "Debian's toolchain lacks {}",
                missing.join(", ")
            )))
        }
    }

    /// A one-line description for progress output and errors.
    pub fn describe(&self) -> String {
        match self {
            Self::Rustup { rustc, .. } => format!("rustup ({})", rustc.display()),
            Self::Debian => "Debian rustc-web (/usr/bin/rustc, -Zbuild-std)".to_owned(),
        }
    }

    /// `cargo` of this toolchain with a clean environment and the toolchain's variables; add `build` and the
    /// rest.
    pub fn cargo_command(&self) -> Command {
        let mut cmd = match self {
            Self::Rustup { cargo, .. } => Command::new(cargo),
            Self::Debian => Command::new("/usr/bin/cargo"),
        };
        for (key, _) in std::env::vars_os() {
            let Some(k) = key.to_str() else { continue };
            if CLEARED_VARS.contains(&k)
                || CLEARED_PREFIXES.iter().any(|p| k.starts_with(p))
                || k.starts_with("__CARGO")
            {
                cmd.env_remove(&key);
            }
        }
        match self {
            Self::Rustup { rustc, .. } => {
                cmd.env("RUSTC", rustc);
            }
            Self::Debian => {
                // rustup's proxies must not pick a toolchain for the Debian cargo's subprocesses.
                cmd.env_remove("RUSTUP_TOOLCHAIN")
                    .env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env(
                        "RUSTFLAGS",
                        "-L /usr/lib/wasm32-wasi -C link-self-contained=no",
                    )
                    .arg("-Zbuild-std=std,panic_abort");
            }
        }
        cmd
    }
}

fn no_toolchain(detail: String) -> BuildError {
    BuildError::NoToolchain { detail }
}

fn no_detail(e: BuildError) -> String {
    match e {
        BuildError::NoToolchain { detail } => detail,
        other => other.to_string(),
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_both_fixes() {
        let e = BuildError::NoToolchain { detail: "x".into() }.to_string();
        assert!(e.contains("rustup target add wasm32-wasip2"), "{e}");
        assert!(e.contains(".ci/wasm-toolchain"), "{e}");
    }

    #[test]
    fn the_guest_build_does_not_inherit_host_flags() {
        let cmd = Toolchain::Debian.cargo_command();
        let envs: Vec<_> = cmd.get_envs().collect();
        let get = |k: &str| envs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(
            get("RUSTC"),
            Some(Some(std::ffi::OsStr::new("/usr/bin/rustc")))
        );
        assert_eq!(
            get("RUSTC_BOOTSTRAP"),
            Some(Some(std::ffi::OsStr::new("1")))
        );
        assert!(cmd.get_args().any(|a| a == "-Zbuild-std=std,panic_abort"));
    }
}
