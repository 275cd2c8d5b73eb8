//! `sextant dev`: a local hub on the embedded example configuration, with a few demonstration calls.
//! (It grows into the whole local mesh as pilot and the proxy land.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sextant_attributes::{Bag, Value};

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

/// Runs the demonstration calls against the hub at `grpc` and prints each decision; then reports traffic and
/// shows the Istio-standard metrics the prometheus adapter made of it on `exposition`.
pub async fn demo(grpc: &str, exposition: SocketAddr, config_dir: &Path) -> anyhow::Result<()> {
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
        ("destination.service.name", s("details")),
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
    report_traffic(grpc, exposition).await?;
    println!(
        "\nTry it yourself:\n  sextant check --hub {grpc} -a destination.service.name=reviews -a 'request.headers[x-user]=guest'\n  curl -s http://{exposition}/metrics | grep istio_requests_total\n"
    );
    Ok(())
}

/// Reports a little bookinfo traffic (as inbound sidecars would) and prints the resulting request counts.
async fn report_traffic(grpc: &str, exposition: SocketAddr) -> anyhow::Result<()> {
    use sextant_proto::mixer;
    let s = |v: &str| Value::String(v.to_string());
    let mut bags = Vec::new();
    for (version, code, n) in [("v1", 200, 6), ("v2", 200, 3), ("v3", 503, 1)] {
        for _ in 0..n {
            bags.push(bag(&[
                ("context.reporter.kind", s("inbound")),
                ("source.workload.name", s("productpage-v1")),
                ("source.workload.namespace", s("bookinfo")),
                (
                    "destination.workload.name",
                    s(&format!("reviews-{version}")),
                ),
                ("destination.workload.namespace", s("bookinfo")),
                (
                    "destination.service.host",
                    s("reviews.bookinfo.svc.cluster.local"),
                ),
                ("destination.service.name", s("reviews")),
                (
                    "destination.labels",
                    Value::StringMap([("version".to_string(), version.to_string())].into()),
                ),
                ("request.protocol", s("http")),
                ("response.code", Value::Int64(code)),
                (
                    "response.duration",
                    Value::Duration(sextant_attributes::Span {
                        seconds: 0,
                        nanos: 8_000_000,
                    }),
                ),
            ]));
        }
    }
    let request = mixer::ReportRequest {
        attributes: bags.iter().map(sextant_attributes::to_compressed).collect(),
        default_words: Vec::new(),
        global_word_count: sextant_attributes::global_word_count(),
        repeated_attributes_semantics:
            mixer::report_request::RepeatedAttributesSemantics::IndependentEncoding as i32,
    };
    let mut client = mixer::mixer_client::MixerClient::connect(format!("http://{grpc}"))
        .await
        .context("connecting to the hub")?;
    let ack = client.report(request).await.context("Report")?.into_inner();
    println!(
        "\n  reported {} requests to reviews (v1: 6, v2: 3, v3: 1 failing)",
        ack.accepted
    );
    // The adapter batches for up to a second.
    let mut lines = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let body = scrape(exposition).await.unwrap_or_default();
        lines = body
            .lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .map(short)
            .collect();
        if lines.len() >= 3 {
            break;
        }
    }
    println!("  the prometheus adapter on http://{exposition}/metrics now has:");
    for l in lines {
        println!("    {l}");
    }
    Ok(())
}

/// A series line with only the labels that differ here.
fn short(line: &str) -> String {
    let keep = ["destination_version", "response_code"];
    let Some((series, value)) = line.rsplit_once(' ') else {
        return line.to_string();
    };
    let labels: Vec<&str> = series
        .split(['{', '}', ','])
        .filter(|kv| keep.iter().any(|k| kv.starts_with(&format!("{k}="))))
        .collect();
    format!("istio_requests_total{{{}, ...}} {value}", labels.join(","))
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await?;
    Ok(body)
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
