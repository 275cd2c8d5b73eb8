//! README's first command, exactly as a newcomer pastes it into a shell at the root of the checkout (CI runs
//! every test in a fresh clone of main, so this is the fresh-clone run). `cargo test` builds the workspace
//! with its dev-dependencies' features, so the `cargo run` in the command would build sextant once more: that
//! build is done first, with no clock on it, and the command then finds it done. A user would notice: the mesh comes up and says where to look;
//! productpage answers through the mesh; the dashboard loads and its API draws the mesh from live traffic;
//! Ctrl-C (SIGINT to the shell's process group, as a terminal sends it) exits 0 and leaves no process and no
//! listening port behind. The command takes its addresses from `SEXTANT_DEV_*` variables here, so the test
//! runs the text unchanged and still on ports the kernel picks.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{DevMesh, Proc, get, get_json, repo, scratch, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// The first command of README's "Two commands": the first line of its shell block that is not a comment.
fn first_command() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Two commands")
        .nth(1)
        .expect("README has a \"Two commands\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a ```sh block");
    block
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("the block has a command")
        .to_string()
}

/// Kills the shell's whole process group when the test ends early.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

#[test]
fn readmes_first_command_runs_the_mesh_and_ctrl_c_stops_it() {
    let command = first_command();
    assert!(
        command.contains("sextant") && command.ends_with(" dev"),
        "README's first command runs `sextant dev`: {command}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let built = Command::new(cargo)
        .args(["build", "-p", "sextant-cli", "--bin", "sextant"])
        .current_dir(repo())
        .status()
        .expect("run cargo build");
    assert!(built.success(), "the build README's command runs failed");
    let dir = scratch("readme");
    let net = format!("127.{}", 30 + std::process::id() % 200);
    let mut shell = Command::new("bash");
    shell
        .args(["-c", &command])
        .current_dir(repo())
        .process_group(0)
        .env("SEXTANT_DEV_LOOPBACK", &net)
        .env("SEXTANT_DEV_GRPC_ADDR", "127.0.0.1:0")
        .env("SEXTANT_DEV_ADMIN_ADDR", "127.0.0.1:0")
        .env("SEXTANT_DEV_PROMETHEUS_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn");
    let proc = Proc::spawn("README's first command", shell, dir.join("readme.log"));
    let _group = Group(proc.pid());
    let DevMesh {
        proc: mut shell,
        entry,
        admin,
        ..
    } = DevMesh::up(proc, net.clone());

    let page = get(entry, "/productpage", &[("x-user", "newcomer")]).expect("productpage answers");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Reviewer1"), "{}", page.body);
    let dashboard = get(admin, "/dashboard/", &[]).expect("the dashboard answers");
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("<html"), "{}", dashboard.body);
    let mut graph = serde_json::Value::Null;
    wait_until(WAIT, "the dashboard's graph to show the traffic", || {
        graph = get_json(admin, "/api/v1/graph?window=1m");
        graph["edges"].as_array().is_some_and(|edges| {
            edges.iter().any(|e| {
                e["destination"] == "bookinfo/reviews/v1"
                    && e["stats"]["rps"].as_f64().is_some_and(|r| r > 0.0)
            })
        })
    });

    let status = shell.stop_group_with("INT");
    assert!(
        status.success(),
        "the command exited {status} after Ctrl-C:\n{}",
        shell.log()
    );
    let left = Command::new("pgrep")
        .args(["-a", "-f", &format!("{}\\.1\\.", net.replace('.', "\\."))])
        .output()
        .expect("pgrep");
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "processes left behind"
    );
    for addr in [entry, admin] {
        assert!(
            std::net::TcpListener::bind(addr).is_ok(),
            "{addr} is free again"
        );
    }
}
