//! Logs as an operator collects them: written to a file (or a pipe), `sextant`'s log lines carry no ANSI colour
//! codes even when `NO_COLOR` is not set, `RUST_LOG` chooses what is logged, and `--log-format json` writes one
//! JSON object per line.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Proc, repo, scratch};

fn hub(rust_log: &str) -> Proc {
    hub_with(rust_log, &[])
}

fn hub_with(rust_log: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sextant"));
    cmd.args(args)
        .arg("hub")
        .arg("--config-dir")
        .arg(repo().join("examples/policies"))
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--prometheus-addr", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log)
        .env_remove("NO_COLOR");
    let mut proc = Proc::spawn("hub", cmd, scratch("logs").join("hub.log"));
    proc.wait_for_line("hub: gRPC on ", Duration::from_secs(120));
    proc
}

#[test]
fn logs_in_a_file_are_plain_text_and_rust_log_chooses_them() {
    let mut info = hub("info");
    let log = info.log();
    assert!(log.contains("INFO"), "info lines are logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a file: {log:?}"
    );
    info.terminate();

    let mut quiet = hub("warn");
    let log = quiet.log();
    assert!(
        !log.contains(" INFO "),
        "RUST_LOG=warn leaves info out: {log}"
    );
    quiet.terminate();
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut hub = hub_with("info", &["--log-format", "json"]);
    let log = hub.log();
    hub.terminate();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("hub: gRPC on "))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(
            entry["timestamp"].is_string()
                && entry["level"].is_string()
                && entry["target"].is_string()
                && entry["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"hub listening\"") && l.contains("\"grpc_addr\"")),
        "the fields are JSON fields: {log}"
    );
}
