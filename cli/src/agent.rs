//! `sextant agent`: pilot-agent's certificate part for a stock Envoy sidecar (`proxy-agent`): the workload
//! key made and kept here, its certificate from pilot by CSR, served to Envoy over SDS on a Unix socket.

use std::path::PathBuf;
use std::sync::Arc;

use proxy_stats::Stats;
use sextant_supervise::TaskHealth;
use tokio::sync::watch;

use crate::{Failure, fail};

/// Flags of `sextant agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// The Unix socket Envoy's `sds-grpc` cluster connects to.
    #[arg(long, default_value = "./var/run/secrets/workload-spiffe-uds/socket")]
    sds_socket: PathBuf,
    /// The workload's key and certificate (--token-file and --root-cert are required).
    #[command(flatten)]
    identity: crate::identity::IdentityArgs,
    /// `$POD_NAMESPACE`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", hide = true)]
    pod_namespace: String,
    /// `$SERVICE_ACCOUNT`.
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default", hide = true)]
    service_account: String,
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(args: &AgentArgs) -> Result<(), Failure> {
    let tls = args.identity.pilot_tls()?;
    let Some(settings) =
        args.identity
            .settings(tls, None, &args.pod_namespace, &args.service_account, None)?
    else {
        return Err(fail(
            "the agent needs --token-file to prove the workload's identity",
            "give --token-file, --root-cert and --ca-addr https://PILOT:15012",
        ));
    };
    let (publish, secrets) = watch::channel(None);
    let root_pem = settings.root_pem.clone();
    let version = std::sync::atomic::AtomicU64::new(0);
    let sink: proxy_identity::Sink = Arc::new(move |cert: &proxy_identity::Certificate| {
        let v = version.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        publish.send_replace(Some(Arc::new(proxy_agent::Secrets::of(cert, &root_pem, v))));
        Ok(())
    });
    let health = Arc::new(TaskHealth::default());
    proxy_identity::run(settings, sink, &Stats::new(), health);
    eprintln!("agent: SDS on unix:{}", args.sds_socket.display());
    proxy_agent::serve(
        &args.sds_socket,
        proxy_agent::Sds::new(secrets),
        crate::shutdown_signal(),
    )
    .await
    .map_err(|e| {
        fail(
            format!("SDS socket {}: {e}", args.sds_socket.display()),
            "give --sds-socket a path the agent may create",
        )
    })
}
