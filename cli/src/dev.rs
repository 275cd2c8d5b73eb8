//! `sextant dev`: a local hub on the embedded example configuration, with a few demonstration calls.
//! (It grows into the whole local mesh as pilot and the proxy land.)

use std::path::{Path, PathBuf};

use anyhow::Context;
use hub_attributes::{Bag, Value};

/// The example configuration compiled into the binary.
const EXAMPLE: &[(&str, &str)] = &[(
    "bookinfo.yaml",
    include_str!("../../examples/policies/bookinfo.yaml"),
)];

/// Writes the embedded example to a fresh directory the user can edit (the hub hot-reloads it).
pub fn write_example() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sextant-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in EXAMPLE {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    Ok(dir)
}

fn bag(pairs: &[(&str, Value)]) -> Bag {
    let mut bag = Bag::new();
    for (name, v) in pairs {
        // Demo attributes are vocabulary names with matching types.
        let _ = bag.set_by_name(name, v.clone());
    }
    bag
}

fn headers(user: &str) -> Value {
    Value::StringMap([("x-user".to_string(), user.to_string())].into())
}

/// Runs the demonstration calls against the hub at `grpc` and prints each decision.
pub async fn demo(grpc: &str, config_dir: &Path) -> anyhow::Result<()> {
    let s = |v: &str| Value::String(v.to_string());
    let calls = [
        (
            "alice reads reviews",
            bag(&[
                ("destination.service.name", s("reviews")),
                ("request.headers", headers("alice")),
            ]),
        ),
        (
            "a guest reads reviews",
            bag(&[
                ("destination.service.name", s("reviews")),
                ("request.headers", headers("guest")),
            ]),
        ),
        (
            "ann@staff reads reviews",
            bag(&[
                ("destination.service.name", s("reviews")),
                ("request.headers", headers("ann@staff")),
            ]),
        ),
        (
            "productpage rates a book",
            bag(&[
                ("destination.service.name", s("ratings")),
                ("request.method", s("POST")),
            ]),
        ),
    ];
    println!(
        "\nSextant hub demo: config in {} (edit it: the hub reloads it)\n",
        config_dir.display()
    );
    for (what, bag) in &calls {
        let d = crate::check::run(grpc, bag, true, &[]).await?;
        println!("  {what:<28} -> {}", summary(&d));
    }
    let api = bag(&[
        ("request.path", s("/api/books")),
        ("request.headers", headers("bob")),
    ]);
    let mut line = String::new();
    for _ in 0..6 {
        let d = crate::check::run(grpc, &api, true, &[]).await?;
        line.push_str(if d["code"] == 0 { "ok " } else { "429 " });
    }
    println!(
        "  {:<28} -> {line}(5 at once, then limited)",
        "bob calls /api six times"
    );
    println!(
        "\nTry it yourself:\n  sextant check --hub {grpc} -a destination.service.name=reviews -a 'request.headers[x-user]=guest'\n"
    );
    Ok(())
}

fn summary(d: &serde_json::Value) -> String {
    match d["code"].as_i64() {
        Some(0) => format!("ALLOW (cacheable for {} ms)", d["valid_duration_ms"]),
        Some(code) => format!(
            "{} {} \"{}\"",
            hub_policy::code_name(i32::try_from(code).unwrap_or(2)),
            d["direct_response"]["http_status"],
            d["message"].as_str().unwrap_or_default()
        ),
        None => d.to_string(),
    }
}
