//! The adapter SDK from an author's side: `sextant adapter new` scaffolds a crate that builds and validates
//! (against a checkout's sdk/, or with the SDK's source the binary carries, vendored: then it builds and
//! passes its own tests in an empty directory with nothing of the checkout), and the SDK's example adapter,
//! built by `sextant adapter build`, is loaded by a hub and records metrics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Hub, get, repo, scratch, target_dir, wait_until};
use sextant_attributes::{Bag, Value};
use sextant_proto::mixer::{self, mixer_client::MixerClient};

/// One target directory for every guest build of the test run: the std library (-Zbuild-std) is built once.
fn guest_target() -> PathBuf {
    target_dir().join("sextant-test-guests")
}

fn sextant(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(args)
        .output()
        .expect("run sextant")
}

fn build(dir: &Path) -> PathBuf {
    let out = sextant(&[
        "adapter",
        "build",
        &dir.display().to_string(),
        "--target-dir",
        &guest_target().display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = PathBuf::from(stdout.lines().last().expect("a .wasm path").trim());
    assert!(
        wasm.extension().is_some_and(|e| e == "wasm") && wasm.is_file(),
        "{stdout}"
    );
    wasm
}

#[test]
fn the_example_adapter_is_built_and_loaded_by_a_hub() {
    let wasm = build(&repo().join("examples/adapter"));
    assert!(wasm.ends_with("status_counter.wasm"), "{}", wasm.display());

    let dir = scratch("sdk-example");
    let yaml = format!(
        r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: status-counter}}
spec:
  module: {}
  limits: {{flushInterval: 50ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: codes}}
spec:
  adapters: [status-counter]
  logs:
  - {{name: accesslog, fields: {{response_code: response.code}}}}
"#,
        wasm.display()
    );
    std::fs::write(dir.join("adapter.yaml"), yaml).expect("write");
    let hub = Hub::start(&dir);
    let bags: Vec<Bag> = [200, 200, 503]
        .iter()
        .map(|code| {
            let mut b = Bag::new();
            b.set_by_name("response.code", Value::Int64(*code))
                .expect("attr");
            b
        })
        .collect();
    let req = mixer::ReportRequest {
        attributes: bags.iter().map(sextant_attributes::to_compressed).collect(),
        default_words: Vec::new(),
        global_word_count: sextant_attributes::global_word_count(),
        repeated_attributes_semantics: 1,
    };
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut c = MixerClient::connect(format!("http://{}", hub.grpc))
                .await
                .expect("connect");
            assert_eq!(
                c.report(req).await.expect("report").into_inner().accepted,
                3
            );
        });
    wait_until(
        Duration::from_secs(20),
        "the example adapter's counter in the exposition",
        || {
            let body = get(hub.prometheus, "/metrics", &[])
                .map(|r| r.body)
                .unwrap_or_default();
            body.contains(r#"requests_by_code_total{code="200"} 2"#)
                && body.contains(r#"requests_by_code_total{code="503"} 1"#)
        },
    );
}

#[test]
fn a_scaffolded_adapter_builds_and_validates() {
    let dir = scratch("sdk-new");
    let sdk = repo().join("sdk");
    let out = sextant(&[
        "adapter",
        "new",
        "hello-adapter",
        "--dir",
        &dir.display().to_string(),
        "--sdk-path",
        &sdk.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = dir.join("hello-adapter");
    assert!(String::from_utf8_lossy(&out.stdout).contains("sextant adapter build"));
    let wasm = build(&krate);
    assert!(wasm.ends_with("hello_adapter.wasm"), "{}", wasm.display());

    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("hello.yaml"),
        format!(
            "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {{name: hello}}\nspec:\n  module: {}\n",
            wasm.display()
        ),
    )
    .expect("write");
    let out = sextant(&["validate", &config.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 adapters"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A name that is not a crate name is refused with one line and a hint.
    let out = sextant(&[
        "adapter",
        "new",
        "Bad Name",
        "--dir",
        &dir.display().to_string(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not a crate name") && err.contains("hint:"),
        "{err}"
    );
}

/// Every file under `dir` (but target/), with its text.
fn texts(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read a directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("target") {
                texts(&path, out);
            }
        } else {
            out.push((
                path.clone(),
                std::fs::read_to_string(&path).unwrap_or_default(),
            ));
        }
    }
}

#[test]
fn a_scaffold_with_the_vendored_sdk_builds_and_tests_with_no_checkout() {
    let empty = scratch("sdk-vendor");
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["adapter", "new", "my-counter", "--vendor-sdk"])
        .current_dir(&empty)
        .env_remove("SEXTANT_SDK_PATH")
        .output()
        .expect("run sextant");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = empty.join("my-counter");
    // Nothing in the new crate points back at the checkout: it can be moved, shared and built anywhere.
    let mut files = Vec::new();
    texts(&krate, &mut files);
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with("vendor/sextant-adapter-sdk/wit/adapter.wit")),
        "the SDK's WIT is vendored: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let checkout = repo().display().to_string();
    for (path, text) in &files {
        assert!(
            !text.contains(&checkout),
            "{} names the checkout {checkout}",
            path.display()
        );
    }
    // `sextant adapter build` in its own target directory, then the crate's own tests.
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(["adapter", "build", "my-counter"])
        .current_dir(&empty)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run sextant adapter build");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("my-counter/target/wasm32-wasip2/release/my_counter.wasm"),
        "{stdout}"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["test", "--quiet"])
        .current_dir(&krate)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 2 passed"),
        "the scaffold's tests:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_sdk_crates_are_publishable() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "package",
            "-p",
            "sextant-batch",
            "-p",
            "sextant-adapter-sdk",
        ])
        .args(["--allow-dirty", "--target-dir"])
        .arg(scratch("sdk-package").join("target"))
        .current_dir(repo())
        .output()
        .expect("run cargo package");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo package:\n{stderr}");
    // Each was built from its packaged files alone (the SDK against the packaged sextant-batch).
    for krate in ["sextant-batch v0.2.0", "sextant-adapter-sdk v0.2.0"] {
        assert!(stderr.contains(&format!("Verifying {krate}")), "{stderr}");
    }
}
