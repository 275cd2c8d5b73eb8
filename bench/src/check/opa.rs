//! OPA, check-bench's side-by-side peer: built with `go install` ([`crate::go_peer`]), run as
//! `opa run --server --h2c` with the benchmark's policies in Rego ([`crate::rego`]) on the server side's CPU,
//! and asked through its REST decision API (`POST /v1/data/…` over HTTP/2): opa-envoy-plugin, which would
//! take Envoy's ext_authz gRPC itself, is not served by the Go module proxy (403 for every version).
//!
//! [`agreement`] asks the hub (ext_authz) and OPA the same questions before anything is measured, so the
//! comparison is between engines that decide alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::body::Bytes;
use prost::Message as _;
use sextant_proto::envoy::service::auth::v3 as authz;

use crate::config::ConfigDir;
use crate::go_peer::{self, free_port};
use crate::traffic::Variant;
use crate::wire::{Api, Conn};

/// The Go module.
pub const MODULE: &str = "github.com/open-policy-agent/opa";
/// The version built (the issue's; the Go module proxy serves it).
pub const VERSION: &str = "v1.22.4";
/// How OPA is asked, for the output.
pub const DOOR: &str = "REST decision API (POST /v1/data/sextant/bench/result, JSON over h2c)";

/// OPA's binary: built by `go install` the first time, reused after.
pub fn build() -> Result<PathBuf, String> {
    go_peer::install(MODULE, VERSION, &format!("opa-{VERSION}"), "opa")
}

/// A running `opa run --server`.
pub struct Opa {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: ConfigDir,
}

impl Opa {
    /// Starts `bin` (on the CPUs of the calling thread; Go sizes GOMAXPROCS to them) serving `rego` alone.
    pub fn start(bin: &Path, rego: &str) -> anyhow::Result<Opa> {
        let dir = ConfigDir::with_files("opa", &[("bench.rego", rego)])?;
        let log = dir.path().join("opa.log");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let child = Command::new(bin)
            .args(["run", "--server", "--h2c", "--skip-version-check"])
            .args(["--log-level", "error", "--addr"])
            .arg(addr.to_string())
            .arg(dir.path().join("bench.rego"))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Opa {
            child,
            addr,
            log,
            _dir: dir,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 30 s) until it decides `probe` (a decision body).
    pub async fn ready(&mut self, probe: Bytes) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                anyhow::bail!("opa exited ({status}):\n{}", self.logs());
            }
            match Conn::open(self.addr, Api::Opa).await {
                Ok(mut c) => match c.exchange(probe.clone()).await {
                    Ok(a) if a.http == 200 && crate::wire::opa_allowed(&a.body).is_some() => {
                        return Ok(());
                    }
                    Ok(a) => {
                        last = format!("HTTP {}: {}", a.http, String::from_utf8_lossy(&a.body));
                    }
                    Err(e) => last = format!("POST: {e:#}"),
                },
                Err(e) => last = format!("connecting: {e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("opa not ready within 30 s ({last}):\n{}", self.logs())
    }

    /// The end of its output.
    fn logs(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text += &std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Opa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an engine decided for one request: allowed, and whether it set the staff header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Allowed (else denied).
    pub allowed: bool,
    /// `x-sextant-staff: true` added to the request.
    pub staff: bool,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.allowed { "allow" } else { "deny" })?;
        if self.staff {
            f.write_str("+staff header")?;
        }
        Ok(())
    }
}

/// The hub's verdict from its ext_authz answer.
fn hub_verdict(body: Bytes) -> anyhow::Result<Verdict> {
    let r = authz::CheckResponse::decode(body).context("decoding the hub's CheckResponse")?;
    let staff = match &r.http_response {
        Some(authz::check_response::HttpResponse::OkResponse(ok)) => ok.headers.iter().any(|h| {
            h.header
                .as_ref()
                .is_some_and(|h| h.key == "x-sextant-staff" && h.value == "true")
        }),
        _ => false,
    };
    Ok(Verdict {
        allowed: r.status.map_or(0, |s| s.code) == 0,
        staff,
    })
}

/// OPA's verdict from its decision document.
fn opa_verdict(body: &[u8]) -> anyhow::Result<Verdict> {
    let doc: serde_json::Value = serde_json::from_slice(body).context("OPA's answer")?;
    let d = &doc["result"]["decision"];
    Ok(Verdict {
        allowed: d["allowed"]
            .as_bool()
            .with_context(|| format!("no decision in {doc}"))?,
        staff: d["headers"]["x-sextant-staff"] == "true",
    })
}

/// The result of asking both engines every request once.
pub struct Agreement {
    /// Requests asked.
    pub checked: usize,
    /// The requests they decided differently: request, hub, OPA.
    pub disagreements: Vec<(String, Verdict, Verdict)>,
    /// Requests where the hub, and where OPA, denied other than the benchmark expects
    /// ([`Variant::expect_denied`]).
    pub unexpected: (usize, usize),
    /// Denials among the requests (hub's).
    pub denied: usize,
}

/// Asks the hub (ext_authz at `hub`) and OPA (at `opa`) for each of `variants` once, one at a time.
pub async fn agreement(
    hub: SocketAddr,
    opa: SocketAddr,
    variants: &[Variant],
) -> anyhow::Result<Agreement> {
    let mut hub_conn = Conn::open(hub, Api::Authz).await?;
    let mut opa_conn = Conn::open(opa, Api::Opa).await?;
    let mut a = Agreement {
        checked: 0,
        disagreements: Vec::new(),
        unexpected: (0, 0),
        denied: 0,
    };
    for v in variants {
        let req = v.authz();
        let h = hub_conn.exchange(crate::wire::grpc_frame(&req)).await?;
        anyhow::ensure!(
            h.http == 200 && h.grpc == Some(0),
            "the hub failed a Check (HTTP {}, grpc-status {:?})",
            h.http,
            h.grpc
        );
        let hub = hub_verdict(h.body)?;
        let o = opa_conn.exchange(crate::rego::input(&req)).await?;
        anyhow::ensure!(
            o.http == 200,
            "OPA answered HTTP {}: {}",
            o.http,
            String::from_utf8_lossy(&o.body)
        );
        let opa = opa_verdict(&o.body)?;
        a.checked += 1;
        a.denied += usize::from(!hub.allowed);
        let expected_allowed = !v.expect_denied();
        a.unexpected.0 += usize::from(hub.allowed != expected_allowed);
        a.unexpected.1 += usize::from(opa.allowed != expected_allowed);
        if hub != opa {
            a.disagreements.push((
                format!(
                    "svc-{} {} {} {}",
                    v.service,
                    crate::config::user_name(v.user),
                    v.method,
                    v.path
                ),
                hub,
                opa,
            ));
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opa_documents_give_verdicts() {
        let v = opa_verdict(
            br#"{"result":{"audit":[],"decision":{"allowed":true,"headers":{"x-sextant-staff":"true"},"rule":"staff"}}}"#,
        )
        .expect("a verdict");
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                staff: true
            }
        );
        let v = opa_verdict(br#"{"result":{"decision":{"allowed":false,"http_status":403}}}"#)
            .expect("a verdict");
        assert!(!v.allowed && !v.staff);
        assert!(opa_verdict(br#"{"result":{}}"#).is_err());
    }
}
