//! A Python grpcio client (stubs generated from proto/ at run time) sending the plain form, and the Rust
//! `sextant check` client sending the compressed form, get identical decisions from one hub.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Hub, python, repo};
use serde_json::{Value, json};

/// One attribute of a case: name, and either a scalar or map entries.
enum A {
    S(&'static str, &'static str),
    I(&'static str, i64),
    B(&'static str, bool),
    M(&'static str, &'static [(&'static str, &'static str)]),
}

fn python_check(hub: &Hub, attrs: &[A]) -> Value {
    let mut map = serde_json::Map::new();
    for a in attrs {
        let (name, v) = match a {
            A::S(n, v) => (n, json!({"string": v})),
            A::I(n, v) => (n, json!({"int64": v})),
            A::B(n, v) => (n, json!({"bool": v})),
            A::M(n, kv) => (
                n,
                json!({"string_map": kv.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}),
            ),
        };
        map.insert(name.to_string(), v);
    }
    let mut child = Command::new(python())
        .arg(repo().join("tests/python/check_client.py"))
        .arg(hub.grpc.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!({"attributes": map}).to_string().as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("python client");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}

fn rust_check(hub: &Hub, attrs: &[A]) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(["check", "--compressed", "--hub", &hub.grpc.to_string()]);
    for a in attrs {
        match a {
            A::S(n, v) => cmd.arg("-a").arg(format!("{n}={v}")),
            A::I(n, v) => cmd.arg("-a").arg(format!("{n}={v}")),
            A::B(n, v) => cmd.arg("-a").arg(format!("{n}={v}")),
            A::M(n, kv) => cmd.args(
                kv.iter()
                    .flat_map(|(k, v)| ["-a".to_string(), format!("{n}[{k}]={v}")]),
            ),
        };
    }
    let out = cmd.output().expect("sextant check");
    assert!(
        out.status.success(),
        "sextant check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sextant check prints JSON")
}

#[test]
fn plain_grpcio_and_compressed_rust_clients_agree() {
    let hub = Hub::start(&repo().join("examples/policies"));
    let cases: &[(&str, &[A])] = &[
        (
            "allowed",
            &[
                A::S("destination.service.name", "reviews"),
                A::M("request.headers", &[("x-user", "alice")]),
            ],
        ),
        (
            "denied",
            &[
                A::S("destination.service.name", "reviews"),
                A::M("request.headers", &[("x-user", "guest"), ("accept", "*/*")]),
            ],
        ),
        (
            "header op",
            &[
                A::S("destination.service.name", "reviews"),
                A::M("request.headers", &[("x-user", "ann@staff")]),
            ],
        ),
        (
            "absent header",
            &[
                A::S("destination.service.name", "reviews"),
                A::S("request.method", "GET"),
            ],
        ),
        (
            "default deny",
            &[
                A::S("destination.service.name", "ratings"),
                A::S("request.method", "POST"),
                A::S(
                    "source.principal",
                    "spiffe://cluster.local/ns/default/sa/productpage",
                ),
            ],
        ),
        (
            "allowed writer",
            &[
                A::S("destination.service.name", "ratings"),
                A::S("request.method", "POST"),
                A::S(
                    "source.principal",
                    "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
                ),
                A::I("request.size", 12),
                A::B("connection.mtls", true),
            ],
        ),
        (
            "nothing applies",
            &[
                A::S("destination.service.name", "details"),
                A::S("request.path", "/details/0"),
            ],
        ),
    ];
    for (name, attrs) in cases {
        let py = python_check(&hub, attrs);
        let rs = rust_check(&hub, attrs);
        assert!(py.get("grpc_error").is_none(), "{name}: {py}");
        assert_eq!(
            py, rs,
            "{name}: plain (grpcio) and compressed (Rust) decisions differ"
        );
    }
    // The decisions themselves are what the example policy says.
    let denied = python_check(&hub, cases[1].1);
    assert_eq!(denied["code"], 7);
    assert_eq!(
        denied["direct_response"],
        json!({"http_status": 403, "body": "guests may not read reviews"})
    );
    assert_eq!(
        denied["referenced"],
        json!([
            ["destination.service.name", "", "EXACT"],
            ["request.headers", "x-user", "EXACT"],
            ["request.method", "", "ABSENCE"]
        ])
    );
    let staff = python_check(&hub, cases[2].1);
    assert_eq!(
        staff["header_operations"],
        json!([["REQUEST", "x-sextant-staff", "true", "REPLACE"]])
    );
    assert_eq!(staff["valid_duration_ms"], 60000);
}
