//! `sextant dev`: the whole mesh on one machine. The hub (in this process), pilot and a `sextant proxy` per
//! bookinfo workload (child processes), bookinfo's applications and a traffic generator (tasks), on loopback
//! addresses of their own ([`mesh::Plan`]); or with `--intercept` (root), each workload's application and
//! sidecar in a pod of its own ([`pods`]). The configuration is in a directory the user edits, applied live.
//! Ctrl-C stops everything: the traffic, then the children (SIGTERM, and the kernel's SIGTERM to any child
//! whose parent died), the pods, then the hub.

mod app;
mod children;
mod mesh;
mod pods;
mod traffic;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use children::Children;

/// `sextant dev`'s flags.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// The dev configuration: `hub/` (policies), `mesh/` (Istio routing), `apps.yaml` (latency and errors).
    /// Missing files are written with the defaults; changes apply live. Default: a fresh temporary directory,
    /// removed when the mesh stops cleanly.
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// The loopback network the workloads take addresses in: `127.X` (pods on 127.X.1.N; with --intercept,
    /// pods on 10.X.0.N).
    #[arg(long, default_value = "127.77", env = "SEXTANT_DEV_LOOPBACK")]
    loopback: String,
    /// Run each workload as a pod (root only): its application and sidecar in a network namespace of its
    /// own with `sextant proxy-init`'s rules, the sidecar as uid 1337, pilot and the hub's gRPC at the pods'
    /// gateway 10.X.0.254.
    #[arg(long)]
    intercept: bool,
    /// The hub's gRPC address.
    #[arg(long, default_value = "127.0.0.1:9091", env = "SEXTANT_DEV_GRPC_ADDR")]
    grpc_addr: SocketAddr,
    /// The hub's admin address.
    #[arg(long, default_value = "127.0.0.1:9093", env = "SEXTANT_DEV_ADMIN_ADDR")]
    admin_addr: SocketAddr,
    /// The hub's adapter metrics (Prometheus exposition) address.
    #[arg(
        long,
        default_value = "127.0.0.1:42422",
        env = "SEXTANT_DEV_PROMETHEUS_ADDR"
    )]
    prometheus_addr: SocketAddr,
    /// Do not generate traffic (the mesh still serves requests).
    #[arg(long)]
    no_traffic: bool,
    /// Open the dashboard in the desktop's browser (`xdg-open`) once the mesh is up.
    #[arg(long)]
    open: bool,
    /// Send the mesh's spans over OTLP/HTTP to this collector (e.g. Jaeger's `http://127.0.0.1:4318`): the
    /// hub gets the OTLP adapter and a Telemetry for server and client spans (`hub/zz-traces.yaml`).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Jaeger's UI (e.g. `http://127.0.0.1:16686`): the dashboard's traces link to it. With no
    /// --otlp-endpoint, spans go to the same host's OTLP/HTTP port 4318.
    #[arg(long, value_name = "URL")]
    jaeger_url: Option<String>,
    /// What runs inside a pod.
    #[command(subcommand)]
    inside: Option<Inside>,
}

/// The parts of the dev mesh that run as processes of their own inside its pods (`--intercept`).
#[derive(clap::Subcommand, Debug)]
enum Inside {
    /// A bookinfo workload's application (`reviews-v2`).
    #[command(hide = true)]
    App {
        /// The workload.
        name: String,
    },
}

impl DevArgs {
    /// Where spans go, if anywhere: --otlp-endpoint, else Jaeger's host on OTLP/HTTP's port.
    fn otlp(&self) -> anyhow::Result<Option<String>> {
        if let Some(e) = &self.otlp_endpoint {
            return Ok(Some(e.trim_end_matches('/').to_string()));
        }
        let Some(ui) = &self.jaeger_url else {
            return Ok(None);
        };
        let host = ui
            .strip_prefix("http://")
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| !h.is_empty())
            .with_context(|| format!("--jaeger-url {ui:?}: want http://HOST[:PORT]"))?;
        Ok(Some(format!("http://{host}:4318")))
    }
}

/// Runs the dev mesh until Ctrl-C or SIGTERM.
pub async fn run(args: &DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = mesh::Plan::new(&args.loopback, args.intercept)?;
    let dir = match &args.config_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sextant-dev-{}", std::process::id())),
    };
    if let Some(Inside::App { name }) = &args.inside {
        return app::run(&plan, dir, name).await;
    }
    mesh::write_defaults(&dir)?;
    mesh::write_traces(&dir, args.otlp()?.as_deref())?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let pods = if plan.pods() {
        let (plan, bin) = (
            plan.clone(),
            std::env::temp_dir().join(format!("sextant-dev-{}-bin", std::process::id())),
        );
        let pods = tokio::task::spawn_blocking(move || pods::Pods::create(&plan, &bin))
            .await
            .context("making the pods")??;
        Some(pods)
    } else {
        None
    };
    // Pods reach the hub at their gateway.
    let grpc_addr = match plan.gateway() {
        Some(gateway) => SocketAddr::new(gateway, args.grpc_addr.port()),
        None => args.grpc_addr,
    };
    let mut children = Children::new(logs.clone(), pods);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hub_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let hub = hub_server::start(
        hub_server::HubOptions {
            config_dir: dir.join("hub"),
            grpc_addr,
            admin_addr: args.admin_addr,
            prometheus_addr: args.prometheus_addr,
            adapter_cache: crate::default_adapter_cache(),
            reload_interval: Duration::from_secs(1),
            decisions: hub_server::DecisionOptions::default(),
            prometheus_url: None,
            kubernetes: None,
            max_in_flight: hub_server::default_max_in_flight(),
            drain_timeout: Duration::from_secs(5),
            tls: None,
            otlp: None,
        },
        hub_stop,
    )
    .await;
    let hub = match hub {
        Ok(hub) => hub,
        Err(e) => {
            children.stop().await;
            return Err(anyhow::Error::new(e).context("starting the hub (another `sextant dev` may be running; pick ports with --grpc-addr, --admin-addr, --prometheus-addr)"));
        }
    };

    let mesh_dir = dir.join("mesh");
    std::fs::write(
        mesh_dir.join("workloads.yaml"),
        plan.workloads_yaml(hub.grpc_addr),
    )
    .context("writing mesh/workloads.yaml")?;

    let outcome = async {
        let host = plan
            .gateway()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let pilot = children
            .pilot(
                &mesh_dir,
                &dir.join("ca"),
                host,
                mesh::HUB_HOST,
                mesh::HUB_PORT,
            )
            .await?;
        for planned in plan.workloads() {
            if plan.pods() {
                children.app(&planned, args, &dir).await?;
            } else {
                app::serve(&planned, dir.join("apps.yaml"), stop_rx.clone())
                    .await
                    .with_context(|| {
                        format!(
                            "is the loopback network {} taken? try --loopback",
                            args.loopback
                        )
                    })?;
            }
            children.proxy(&planned, pilot.xds).await?;
        }
        for planned in plan.workloads() {
            children.wait_ready(&planned).await?;
        }
        anyhow::Ok(pilot)
    }
    .await;
    let pilot = match outcome {
        Ok(p) => p,
        Err(e) => {
            children.stop().await;
            let _ = stop_tx.send(true);
            let _ = hub.wait().await;
            return Err(e);
        }
    };
    if !args.no_traffic {
        tokio::spawn(traffic::generate(plan.entry(), stop_rx.clone()));
    }
    print_urls(
        &plan,
        &hub,
        &dashboard_url(hub.admin_addr, args.jaeger_url.as_deref()),
        pilot.monitoring,
        &dir,
        started,
        args.no_traffic,
    );
    if args.open {
        let url = dashboard_url(hub.admin_addr, args.jaeger_url.as_deref());
        let opened = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if opened.is_err() {
            println!("(no xdg-open here: open {url} yourself)");
        }
    }

    crate::shutdown_signal().await;
    eprintln!("sextant dev: stopping");
    let _ = stop_tx.send(true);
    children.stop().await;
    hub.wait().await.context("the hub ended with an error")?;
    if args.config_dir.is_none() {
        // A temporary directory of this run's own; kept when the mesh failed, for its logs.
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("sextant dev: stopped");
    Ok(())
}

/// The dashboard's address, telling it where Jaeger's UI is when there is one.
fn dashboard_url(admin: SocketAddr, jaeger: Option<&str>) -> String {
    match jaeger {
        Some(j) => format!(
            "http://{admin}/dashboard/?jaeger={}",
            j.trim_end_matches('/')
        ),
        None => format!("http://{admin}/dashboard/"),
    }
}

fn print_urls(
    plan: &mesh::Plan,
    hub: &hub_server::RunningHub,
    dashboard: &str,
    pilot: SocketAddr,
    dir: &Path,
    started: Instant,
    no_traffic: bool,
) {
    let entry = plan.entry();
    println!(
        "sextant dev: the bookinfo mesh is up in {:.1} s\n\
         \n  dashboard    {dashboard}\n\
         \x20 productpage  http://{entry}/productpage   (as a guest: curl -H 'x-user: guest' http://{entry}/productpage)\n\
         \x20 hub          gRPC {}, admin http://{}/metrics, adapter metrics http://{}/metrics\n\
         \x20 pilot        http://{pilot}/debug/config\n\
         \x20 sidecars     {}\n\
         \x20 config       {} (hub/ and mesh/ apply live; apps.yaml sets each workload's latency and errors)\n\
         \x20 logs         {}\n\
         \x20 traffic      {}\n\
         \nCtrl-C stops everything.",
        started.elapsed().as_secs_f64(),
        hub.grpc_addr,
        hub.admin_addr,
        hub.prometheus_addr,
        plan.workloads()
            .iter()
            .map(|p| format!("{} http://{}/stats", p.workload.name(), p.admin()))
            .collect::<Vec<_>>()
            .join(", "),
        dir.display(),
        dir.join("logs").display(),
        if no_traffic {
            "none (--no-traffic)".to_string()
        } else {
            format!(
                "{} requests/s to productpage as several users (one a guest, one a bot over its rate limit)",
                traffic::RATE
            )
        },
    );
}
