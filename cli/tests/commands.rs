//! The user-facing commands `validate` and `crds`, and the shell's: `--version`, `completions` and `man` (the
//! README's main command, `sextant dev`: `dev.rs`).

mod common;

use std::process::Command;

use common::{repo, scratch};

fn sextant(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sextant")
}

#[test]
fn validate_accepts_the_examples_and_names_file_and_line_of_errors() {
    let ok = sextant(&[
        "validate",
        repo()
            .join("examples/policies")
            .to_str()
            .expect("utf-8 path"),
    ]);
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "ok: 2 policies, 1 rate limits, 2 telemetry, 1 adapters; 0 virtual services, 0 destination rules, 0 gateways, 0 services in 1 files\n"
    );

    // Istio networking resources in the same directory are validated as pilot loads them.
    let mesh = scratch("validate-mesh");
    let vs = mesh.join("reviews.yaml");
    std::fs::write(
        &vs,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews, subset: v9}\n",
    )
    .expect("write");
    let out = sextant(&["validate", mesh.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:8: VirtualService default/reviews",
            vs.display()
        )) && stderr.contains("v9"),
        "{stderr}"
    );
    // A Gateway terminating TLS without a certificate, and a DestinationRule mixing mesh mTLS with files.
    let gw = mesh.join("gateway.yaml");
    std::fs::write(
        &gw,
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [shop.example.com]\n    tls: {mode: SIMPLE}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, caCertificates: /etc/ca.pem}\n",
    )
    .expect("write");
    let out = sextant(&["validate", mesh.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        format!(
            "{}:9: Gateway default/edge: spec.servers[0].tls: terminating TLS needs serverCertificate and privateKey",
            gw.display()
        ),
        format!(
            "{}:17: DestinationRule default/reviews: spec.trafficPolicy.tls.caCertificates: ISTIO_MUTUAL uses the mesh's workload certificates",
            gw.display()
        ),
    ] {
        assert!(stderr.contains(&want), "{want} in:\n{stderr}");
    }

    let dir = scratch("validate");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: policy.sextant.dev/v1alpha1\nkind: RateLimit\nmetadata: {name: r}\nspec:\n  selector: 'request.path.startsWith(1)'\n  limit: {requests: 1, per: 1s}\n").expect("write");
    let out = sextant(&["validate", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: {}:5: RateLimit default/r: spec.selector:",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn crds_are_printed_for_every_kind() {
    let out = sextant(&["crds"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("name: policies.policy.sextant.dev")
            && text.contains("name: ratelimits.policy.sextant.dev")
            && text.contains("name: telemetries.policy.sextant.dev")
            && text.contains("name: adapters.policy.sextant.dev"),
        "{text}"
    );
    let docs: Vec<serde_json::Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("each CRD is valid YAML"))
        .collect();
    assert_eq!(docs.len(), 4);
    assert_eq!(
        docs[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["rules"]["type"],
        "array"
    );
}

#[test]
fn version_completions_and_manual() {
    let version = sextant(&["--version"]);
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(version.status.success(), "{version:?}");
    assert!(
        text.starts_with("sextant 0.")
            && text.contains("(adapter ABI sextant:adapter@")
            && text.contains(", commit "),
        "{text}"
    );
    for (shell, marker) in [
        ("bash", "complete -F _sextant"),
        ("zsh", "#compdef sextant"),
        ("fish", "complete -c sextant"),
    ] {
        let out = sextant(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains(marker),
            "{shell}: {script}"
        );
        assert!(
            script.contains("redis-url"),
            "{shell}: the hub's flags complete too"
        );
    }
    let man = sextant(&["man"]);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(man.status.success(), "{man:?}");
    assert!(
        page.contains(".TH sextant 1") && page.contains(".SH NAME"),
        "{page}"
    );
    for command in ["hub", "pilot", "proxy", "completions"] {
        assert!(page.contains(command), "the manual names {command}");
    }
}
