//! The `sextant` binary: wires the roles. Each subcommand is a thin layer over a library crate.

mod adapter;
mod admission;
mod agent;
mod attrs;
mod check;
mod dev;
mod identity;
mod kube;
mod otel;
mod pilot;
mod proxy;
mod proxy_init;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Sextant: a service mesh with a WebAssembly-extensible policy and telemetry hub.
///
/// The mesh: `hub` (policy decisions, rate limits and telemetry through Wasm adapters), `pilot` (the xDS
/// control plane, certificates and the Kubernetes webhooks), `proxy` (the sidecar), `agent` (a stock Envoy
/// sidecar's workload key) and `proxy-init` (the pod's traffic capture). On one machine: `dev` (the whole mesh
/// with bookinfo and a dashboard). For resources: `validate`, `crds`, `attributes` and `check`. For adapters:
/// `adapter` (new and build). For Kubernetes: `kube` (inject). For the shell: `completions` and `man`.
#[derive(Parser)]
#[command(name = "sextant")]
struct Cli {
    /// The format of the logs on stderr: `text` (coloured on a terminal unless NO_COLOR is set) or `json`
    /// (one object per line, for log collectors). RUST_LOG chooses what is logged (default `info`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The choices of `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, fields.
    Json,
}

/// `sextant --version`: the version, the adapter ABI it loads (the WIT package `sextant:adapter`) and the
/// commit it was built from.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (adapter ABI sextant:adapter@{}, commit {})",
        env!("CARGO_PKG_VERSION"),
        hub_adapters::ABI_VERSION,
        env!("SEXTANT_GIT_COMMIT")
    )
});

#[derive(Subcommand)]
enum Command {
    /// Run the hub: native Check and Report, Envoy ext_authz, rate-limit and access-log services, Wasm adapters,
    /// admin HTTP and the adapters' Prometheus exposition.
    Hub(Box<HubArgs>),
    /// Run pilot: Istio networking resources translated to Envoy configuration and served over ADS
    /// (state of the world and delta) to Envoy sidecars and proxyless gRPC clients.
    Pilot(pilot::PilotArgs),
    /// Run the sidecar/gateway proxy: listeners, routes, clusters and endpoints from pilot over xDS; HTTP/1.1,
    /// HTTP/2 and TCP proxying; admin endpoints in Envoy's shapes.
    Proxy(proxy::ProxyArgs),
    /// Keep a stock Envoy sidecar's workload key in the pod (pilot-agent's certificate part): make the key,
    /// get its certificate from pilot by CSR, serve both to Envoy over SDS on a Unix socket, renewed at half
    /// life.
    Agent(agent::AgentArgs),
    /// Write istio-init's iptables rules into this network namespace (a pod's), so the sidecar captures its
    /// applications' TCP: outbound to 15001, inbound to 15006, the proxy's own uid/gid let through. Takes
    /// istio-init's flags; `--dry-run` prints the rules, `--clean` removes them.
    ProxyInit(proxy_init::ProxyInitArgs),
    /// Validate resources (a file or a directory tree): CEL, references, and each adapter's own init.
    Validate {
        /// File or directory of YAML resources.
        path: PathBuf,
        /// Do not add the default Telemetry (Istio's standard metrics).
        #[arg(long)]
        no_default_telemetry: bool,
    },
    /// Write and build Wasm adapters.
    #[command(subcommand)]
    Adapter(AdapterCommand),
    /// Print the CustomResourceDefinitions of the hub's resource kinds (YAML).
    Crds,
    /// Print the attribute vocabulary as Markdown (the source of docs/attributes.md).
    Attributes,
    /// Call Check on a hub and print the decision as JSON.
    Check {
        /// The hub's gRPC address, or a fleet's addresses separated by commas (calls go to a hub that
        /// answers).
        #[arg(long, default_value = "127.0.0.1:9091")]
        hub: String,
        /// An attribute: `name=value`, or `map[key]=value` for string maps.
        #[arg(short = 'a', long = "attr")]
        attributes: Vec<String>,
        /// Send the compressed (dictionary) form instead of the plain one.
        #[arg(long)]
        compressed: bool,
        /// Request a quota: `name=amount`.
        #[arg(long = "quota")]
        quotas: Vec<String>,
        /// Call a hub serving TLS (`sextant hub --tls-cert-file`), trusting this CA (PEM).
        #[command(flatten)]
        tls: check::TlsArgs,
    },
    /// Run the whole mesh on this machine: pilot, the hub, a sidecar per bookinfo workload, the demo
    /// application and live traffic, configured from a directory you can edit; Ctrl-C stops everything.
    Dev(dev::DevArgs),
    /// Kubernetes tools: `inject` adds the sidecar to Pods and workloads in YAML, offline, as pilot's
    /// injector does.
    #[command(subcommand)]
    Kube(kube::KubeCommand),
    /// Print a completion script for a shell: `sextant completions bash > /etc/bash_completion.d/sextant`,
    /// or `source <(sextant completions zsh)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `sextant man > sextant.1 && man ./sextant.1`.
    Man,
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// Scaffold a buildable adapter crate (with native tests) in DIR/NAME.
    New {
        /// Crate name, e.g. `my-adapter`.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Depend on the SDK in this directory (a checkout's sdk/, for developing the SDK) instead of the
        /// published crate.
        #[arg(
            long,
            alias = "sdk",
            value_name = "DIR",
            env = "SEXTANT_SDK_PATH",
            conflicts_with = "vendor_sdk"
        )]
        sdk_path: Option<PathBuf>,
        /// Copy the SDK's source that this binary carries into the new crate (vendor/) and depend on it:
        /// builds anywhere, with no checkout and before the SDK is on crates.io.
        #[arg(long)]
        vendor_sdk: bool,
    },
    /// Build an adapter crate to a wasm32-wasip2 component and print where the `.wasm` is.
    Build {
        /// The adapter crate (or a workspace of adapters).
        path: PathBuf,
        /// Build without optimisations.
        #[arg(long)]
        debug: bool,
        /// Cargo target directory (default: PATH/target).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct HubArgs {
    /// Export this process's own traces and metrics over OTLP.
    #[command(flatten)]
    otlp: crate::otel::OtlpArgs,
    /// Directory (searched recursively) or file of YAML resources; watched and hot-reloaded.
    #[arg(
        long,
        env = "SEXTANT_CONFIG_DIR",
        required_unless_present = "kubernetes",
        conflicts_with = "kubernetes"
    )]
    config_dir: Option<PathBuf>,
    /// Read the resources from the Kubernetes API server (`policy.sextant.dev` Policy, RateLimit, Telemetry,
    /// Adapter) instead of a directory, and write each one's status (one replica does: the holder of the
    /// `sextant-hub-status` Lease).
    #[arg(long)]
    kubernetes: bool,
    /// With --kubernetes: the kubeconfig (default: in-cluster, else $KUBECONFIG or ~/.kube/config).
    #[arg(long, requires = "kubernetes", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// With --kubernetes: read only this namespace's resources (default: all namespaces).
    #[arg(long, requires = "kubernetes", value_name = "NS")]
    namespace: Option<String>,
    /// With --kubernetes: where the status Lease lives (default: $POD_NAMESPACE, else --namespace, else
    /// `default`).
    #[arg(long, requires = "kubernetes", value_name = "NS")]
    lease_namespace: Option<String>,
    /// gRPC listen address: the native Check and Report (Mixer), Envoy's ext_authz, rate-limit and access-log
    /// services, health and reflection.
    #[arg(long, default_value = "127.0.0.1:9091")]
    grpc_addr: SocketAddr,
    /// Admin HTTP listen address (/healthz, /readyz, /metrics, /debug/config).
    #[arg(long, default_value = "127.0.0.1:9093")]
    admin_addr: SocketAddr,
    /// How often to look for configuration changes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    reload_interval: Duration,
    /// How long proxies may cache a cacheable decision.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    decision_ttl: Duration,
    /// How many requests may reuse a cacheable decision.
    #[arg(long, default_value_t = 10_000)]
    decision_uses: i32,
    /// The most rate-limit buckets (distinct dimension values) one RateLimit keeps in memory.
    #[arg(long, default_value_t = 100_000)]
    max_rate_limit_keys: usize,
    /// New keys of a RateLimit whose buckets are all in use: share one overflow bucket, or are refused.
    #[arg(long, value_enum, default_value = "shared")]
    rate_limit_overflow: OverflowArg,
    /// Listen address of the adapters' Prometheus exposition (/metrics).
    #[arg(long, default_value = "127.0.0.1:42422")]
    prometheus_addr: SocketAddr,
    /// Directory of precompiled adapter components (default: ~/.cache/sextant/components).
    #[arg(long, env = "SEXTANT_ADAPTER_CACHE")]
    adapter_cache: Option<PathBuf>,
    /// Do not load the default Telemetry (Istio's standard metrics into the builtin prometheus adapter).
    #[arg(long)]
    no_default_telemetry: bool,
    /// A Prometheus scraping every hub of the fleet (`http://HOST:PORT`): the query API's graph, services,
    /// RED and rate limits (and so the dashboard's) come from it by PromQL instead of this hub's window.
    #[arg(long, value_name = "URL")]
    prometheus_url: Option<String>,
    /// Redis holding the GLOBAL RateLimits' buckets, shared by every hub given the same URL:
    /// redis[s]://[USER:PASSWORD@]HOST:PORT[/DB], redis[s]+cluster://HOST:PORT,HOST:PORT,… or
    /// redis[s]+sentinel://HOST:PORT,…/MASTER. Without it, GLOBAL limits are counted by this hub alone.
    #[arg(long, value_name = "URL", env = "SEXTANT_REDIS_URL")]
    redis_url: Option<String>,
    /// The longest any Redis call may take (they run in the background, never while a request waits).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    redis_timeout: Duration,
    /// The longest a decision waits for a lease from Redis before the RateLimit's onBackendFailure decides.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    redis_decision_budget: Duration,
    /// The fraction of a GLOBAL limit all hubs together may grant above it per window, traded for leases
    /// (fewer Redis calls): 0.01 is 1%.
    #[arg(long, default_value_t = 0.01)]
    global_overshoot: f64,
    /// The prefix of every Redis key the hubs write (hubs sharing a Redis with different prefixes do not
    /// share limits).
    #[arg(long, default_value = "sextant:quota")]
    redis_key_prefix: String,
    /// The CA (PEM) to trust for a rediss:// Redis instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    redis_ca_file: Option<PathBuf>,
    /// The client certificate (PEM) for a Redis that requires one (with --redis-key-file).
    #[arg(long, value_name = "FILE", requires = "redis_key_file")]
    redis_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "redis_cert_file")]
    redis_key_file: Option<PathBuf>,
    /// The most Checks, Reports, ext_authz and rate-limit calls the hub admits at once; beyond, calls are
    /// refused at once with RESOURCE_EXHAUSTED (clients apply their failure policy) instead of queueing
    /// [default: 256 per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: Option<u64>,
    /// On SIGTERM, after the calls in flight are answered: how long the adapters may take to deliver the
    /// telemetry they have queued before the hub exits.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first; e.g. one the mesh CA issued). Read
    /// again when the file changes. (Or --token-file: the certificate from pilot's CA.)
    #[arg(long, value_name = "FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM; the mesh root): the attributes naming the calling
    /// workload (destination.principal and .namespace for an inbound sidecar, source.* for an outbound one)
    /// are bound to the SPIFFE ID of its certificate. With --token-file it defaults to --root-cert.
    #[arg(long, value_name = "FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// A call whose attributes name another workload than its client certificate: `override` (the
    /// certificate's identity replaces the claim) or `reject` (PERMISSION_DENIED). Needs a client CA
    /// [default: override].
    #[arg(long, value_enum)]
    caller_identity: Option<CallerIdentityArg>,
    /// Serve gRPC over TLS with a certificate from pilot's CA instead of files: with --token-file (the
    /// bootstrap token of the hub's identity), --root-cert (the mesh root, which also becomes the client CA
    /// unless --tls-client-ca-file says otherwise) and --ca-addr (pilot's secure port), the hub makes its
    /// key in memory, has pilot sign it for spiffe://TRUST_DOMAIN/ns/$POD_NAMESPACE/sa/$SERVICE_ACCOUNT,
    /// renews it at half life and serves each new one to new connections; no port opens before the first.
    #[command(flatten)]
    identity: identity::IdentityArgs,
    /// With --token-file: the namespace of the hub's identity
    /// (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT), as Kubernetes' downward API gives it.
    #[arg(
        long,
        value_name = "NAMESPACE",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    pod_namespace: String,
    /// With --token-file: the service account of the hub's identity.
    #[arg(
        long,
        value_name = "ACCOUNT",
        env = "SERVICE_ACCOUNT",
        default_value = "default"
    )]
    service_account: String,
}

/// The choices of `--caller-identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CallerIdentityArg {
    /// The certificate's identity replaces the claim.
    Override,
    /// The call is refused with PERMISSION_DENIED.
    Reject,
}

/// The choices of `--rate-limit-overflow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OverflowArg {
    /// New keys share one bucket of the limit until buckets free up.
    Shared,
    /// New keys are refused (429) until buckets free up.
    Deny,
}

/// Where precompiled components are kept unless a flag says otherwise.
fn default_adapter_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("sextant").join("components"))
}

impl HubArgs {
    /// TLS on the gRPC port from the flags: certificate files, or pilot's CA (then also what obtains the
    /// certificates, to start with the hub); contradictory combinations refused with one line and a hint.
    fn tls(
        &self,
    ) -> Result<
        (
            Option<hub_server::TlsOptions>,
            Option<identity::HubCertificates>,
        ),
        Failure,
    > {
        let from_pilot = self.identity.token_file.is_some();
        if from_pilot && self.tls_cert_file.is_some() {
            return Err(fail(
                "--tls-cert-file and --token-file both give the hub's serving certificate",
                "give certificate files (--tls-cert-file, --tls-key-file), or --token-file to have pilot's CA issue it, not both",
            ));
        }
        if !from_pilot && (self.identity.root_cert.is_some() || self.identity.ca_addr.is_some()) {
            return Err(fail(
                "--root-cert and --ca-addr are used only with --token-file",
                "add --token-file to get the serving certificate from pilot's CA (or unset SEXTANT_ROOT_CERT / CA_ADDR)",
            ));
        }
        let (certificate, supply, default_ca) = if from_pilot {
            let (supply, source) = identity::HubCertificates::new(
                &self.identity,
                &self.pod_namespace,
                &self.service_account,
            )?;
            (Some(source), Some(supply), self.identity.root_cert.clone())
        } else {
            let files = self.tls_cert_file.clone().zip(self.tls_key_file.clone());
            let source = files.map(
                |(cert_file, key_file)| hub_server::CertificateSource::Files {
                    cert_file,
                    key_file,
                },
            );
            (source, None, None)
        };
        let client_ca_file = self.tls_client_ca_file.clone().or(default_ca);
        if certificate.is_none() && client_ca_file.is_some() {
            return Err(fail(
                "--tls-client-ca-file needs the hub to serve TLS",
                "give --tls-cert-file and --tls-key-file, or --token-file",
            ));
        }
        if client_ca_file.is_none() && self.caller_identity.is_some() {
            return Err(fail(
                "--caller-identity needs client certificates",
                "give --tls-client-ca-file (the mesh root), or --token-file and --root-cert",
            ));
        }
        let tls = certificate.map(|certificate| hub_server::TlsOptions {
            certificate,
            client_ca_file,
        });
        Ok((tls, supply))
    }

    /// The hub's options, the flags that need more than clap's parsing checked (pure), and with --token-file
    /// what obtains its certificates (started by the caller, before the hub, which waits for the first).
    fn options(
        self,
    ) -> Result<(hub_server::HubOptions, Option<identity::HubCertificates>), Failure> {
        let (tls, certificates) = self.tls()?;
        let prometheus_url = match &self.prometheus_url {
            None => None,
            Some(url) => Some(hub_server::PrometheusUrl::parse(url).map_err(|e| {
                fail(
                    format!("--prometheus-url {url:?}: {e}"),
                    "give Prometheus's address, like --prometheus-url http://127.0.0.1:9090",
                )
            })?),
        };
        let global_quota = match &self.redis_url {
            None => None,
            Some(url) => {
                let topology = hub_quota_redis::Topology::parse(url).map_err(|e| {
                    fail(
                        e,
                        "give Redis's address, like --redis-url redis://127.0.0.1:6379",
                    )
                })?;
                let mut o = hub_quota_redis::Options::new(topology);
                o.timeout = self.redis_timeout;
                o.budget = self.redis_decision_budget;
                o.overshoot = self.global_overshoot;
                o.max_keys = self.max_rate_limit_keys;
                o.prefix = self.redis_key_prefix.clone();
                let read = |flag: &str, path: &PathBuf| {
                    std::fs::read(path).map_err(|e| {
                        fail(
                            format!("{flag} {}: {e}", path.display()),
                            "give a readable PEM file",
                        )
                    })
                };
                if let Some(ca) = &self.redis_ca_file {
                    o.tls.ca = Some(read("--redis-ca-file", ca)?);
                }
                if let (Some(cert), Some(key)) = (&self.redis_cert_file, &self.redis_key_file) {
                    o.tls.client = Some((
                        read("--redis-cert-file", cert)?,
                        read("--redis-key-file", key)?,
                    ));
                }
                Some(hub_quota_redis::RedisBackend::new(o).map_err(|e| {
                    fail(
                        e,
                        "see sextant hub --help for --redis-timeout, --redis-decision-budget and --global-overshoot",
                    )
                })?)
            }
        };
        let kubernetes = self.kubernetes.then(|| {
            let lease_namespace = self
                .lease_namespace
                .clone()
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .or_else(|| self.namespace.clone())
                .unwrap_or_else(|| "default".to_string());
            // The Pod's name where there is one (Kubernetes sets HOSTNAME to it), made unique per process.
            let host = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| "hub".to_string());
            hub_kube::KubeOptions {
                kubeconfig: self.kubeconfig.clone(),
                namespace: self.namespace.clone(),
                lease: hub_kube::LeaseOptions {
                    namespace: lease_namespace,
                    name: "sextant-hub-status".to_string(),
                    identity: format!("{host}-{}", std::process::id()),
                },
            }
        });
        let options = hub_server::HubOptions {
            config_dir: self.config_dir.unwrap_or_default(),
            grpc_addr: self.grpc_addr,
            admin_addr: self.admin_addr,
            prometheus_addr: self.prometheus_addr,
            adapter_cache: self.adapter_cache.or_else(default_adapter_cache),
            reload_interval: self.reload_interval,
            decisions: hub_server::DecisionOptions {
                ttl: self.decision_ttl,
                uses: self.decision_uses,
                max_rate_limit_keys: self.max_rate_limit_keys,
                rate_limit_overflow: match self.rate_limit_overflow {
                    OverflowArg::Shared => hub_server::RateLimitOverflow::Shared,
                    OverflowArg::Deny => hub_server::RateLimitOverflow::Deny,
                },
                default_telemetry: !self.no_default_telemetry,
                global_quota,
                caller_identity: match self.caller_identity {
                    None | Some(CallerIdentityArg::Override) => {
                        hub_server::CallerIdentity::Override
                    }
                    Some(CallerIdentityArg::Reject) => hub_server::CallerIdentity::Reject,
                },
            },
            prometheus_url,
            kubernetes,
            max_in_flight: self
                .max_in_flight
                .map_or_else(hub_server::default_max_in_flight, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                }),
            drain_timeout: self.drain_timeout,
            tls,
            otlp: self.otlp.options("sextant-hub")?,
        };
        Ok((options, certificates))
    }
}

/// A failure shown as one line and a hint.
struct Failure {
    message: String,
    hint: &'static str,
}

fn fail(message: impl std::fmt::Display, hint: &'static str) -> Failure {
    Failure {
        message: message.to_string(),
        hint,
    }
}

/// Writes to stdout; a closed pipe (`sextant crds | head`) ends the output quietly instead of panicking.
fn out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(fail(
            format!("cannot write output: {e}"),
            "check where stdout goes",
        )),
        _ => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Hub(args) => {
            let (options, certificates) = (*args).options()?;
            if let Some(certificates) = certificates {
                certificates.start();
            }
            let hub = match hub_server::start(options, shutdown_signal()).await {
                Ok(hub) => hub,
                // SIGTERM before the first certificate came: a normal stop.
                Err(hub_server::HubError::Tls(e @ hub_server::TlsError::Stopped { .. })) => {
                    tracing::info!("{e}");
                    return Ok(());
                }
                Err(e @ hub_server::HubError::Tls(_)) => {
                    return Err(fail(
                        e,
                        "check --tls-cert-file, --tls-key-file and --tls-client-ca-file (or --token-file, --root-cert and --ca-addr)",
                    ));
                }
                Err(e) => {
                    return Err(fail(e, "pick free ports with --grpc-addr / --admin-addr"));
                }
            };
            // One line with the addresses as bound (a port may have been 0): what scripts and tests read.
            eprintln!(
                "hub: gRPC on {}, admin on http://{}/readyz, prometheus on http://{}/metrics",
                hub.grpc_addr, hub.admin_addr, hub.prometheus_addr
            );
            hub.wait().await.map_err(|e| fail(e, "see the log above"))
        }
        Command::Pilot(args) => pilot::run(&args).await,
        Command::Proxy(args) => proxy::run(&args).await,
        Command::Agent(args) => agent::run(&args).await,
        Command::ProxyInit(args) => proxy_init::run(&args),
        Command::Validate {
            path,
            no_default_telemetry,
        } => validate(&path, !no_default_telemetry).await,
        Command::Adapter(AdapterCommand::New {
            name,
            dir,
            sdk_path,
            vendor_sdk,
        }) => {
            let sdk = match (sdk_path, vendor_sdk) {
                (Some(p), _) => adapter::Sdk::Path(p),
                (None, true) => adapter::Sdk::Vendor,
                (None, false) => adapter::Sdk::Version,
            };
            let made = adapter::new(&name, &dir, &sdk).map_err(|e| {
                fail(
                    format!("{e:#}"),
                    "pass --dir to choose where, --sdk-path to point at sextant's sdk/",
                )
            })?;
            out(&format!(
                "created {}\nbuild it with: sextant adapter build {}\ntest it with:  cargo test --manifest-path {}/Cargo.toml\n",
                made.display(),
                made.display(),
                made.display()
            ))
        }
        Command::Adapter(AdapterCommand::Build {
            path,
            debug,
            target_dir,
        }) => {
            let built = adapter::build(&path, debug, target_dir).map_err(|e| {
                fail(
                    format!("{e:#}"),
                    "with rustup: `rustup target add wasm32-wasip2`; on Debian: run .ci/wasm-toolchain",
                )
            })?;
            for c in built {
                out(&format!("{}\n", c.display()))?;
            }
            Ok(())
        }
        Command::Crds => {
            for crd in hub_config::crds() {
                let yaml = serde_saphyr::to_string(&crd)
                    .map_err(|e| fail(e, "this is a bug; please report it"))?;
                out(&format!("---\n{yaml}"))?;
            }
            Ok(())
        }
        Command::Kube(command) => kube::run(&command),
        Command::Attributes => out(&sextant_attributes::attributes_markdown()),
        Command::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut command(), "sextant", &mut text);
            out(&String::from_utf8_lossy(&text))
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(command())
                .render(&mut text)
                .map_err(|e| fail(e, "this is a bug; please report it"))?;
            out(&String::from_utf8_lossy(&text))
        }
        Command::Check {
            hub,
            attributes,
            compressed,
            quotas,
            tls,
        } => {
            let tls = tls.config().map_err(|e| {
                fail(
                    format!("{e:#}"),
                    "--ca-file is the hub's CA; --cert-file and --key-file a client certificate",
                )
            })?;
            let bag = attrs::parse(&attributes).map_err(|e| {
                fail(
                    format!("{e:#}"),
                    "attributes are name=value or map[key]=value; names are in docs/attributes.md",
                )
            })?;
            let quotas = quotas
                .iter()
                .map(|q| {
                    q.split_once('=')
                        .and_then(|(n, a)| Some((n.to_string(), a.parse().ok()?)))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| fail("a quota is name=amount", "e.g. --quota per-user=1"))?;
            let json = check::run(&hub, tls.as_ref(), &bag, compressed, &quotas)
                .await
                .map_err(|e| {
                    fail(
                        format!("{e:#}"),
                        "is the hub running? start it with `sextant hub --config-dir DIR`",
                    )
                })?;
            out(&format!("{json}\n"))
        }
        Command::Dev(args) => dev::run(&args).await.map_err(|e| {
            fail(
                format!("{e:#}"),
                "its logs are in the config directory's logs/",
            )
        }),
    }
}

/// `sextant validate`: everything a reload checks, including each adapter's init with its config. Documents
/// of Istio kinds neither role reads are `warning:` lines; only errors fail.
async fn validate(path: &std::path::Path, default_telemetry: bool) -> Result<(), Failure> {
    const HINT: &str = "fix the resources at the lines named above";
    // Istio's networking resources in the same directory, each judged on its own as pilot loads them.
    let networking = hub_config::ConfigFiles::read(path).map(|files| {
        let set = pilot_config::NetworkingSet::load_with(&files, &mut Default::default());
        let v = pilot_config::validate_each(&set);
        (set.unread, v)
    });
    if let Ok((unread, _)) = &networking {
        for u in unread {
            eprintln!("warning: {u}");
        }
    }
    let mut set = hub_config::load_path(path).map_err(|e| fail(e, HINT))?;
    if default_telemetry {
        hub_telemetry::add_defaults(&mut set);
    }
    let (files, p, r) = (set.files, set.policies.len(), set.rate_limits.len());
    let (t, a) = (set.telemetry.len(), set.adapters.len());
    let policy = hub_policy::validate(set.clone()).err();
    let telemetry = hub_server::validate_telemetry(&set, hub_telemetry::validate(&set));
    let mut errors: Vec<String> = policy
        .map(|e| e.0.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    match &telemetry {
        Err(e) => errors.extend(e.0.iter().map(ToString::to_string)),
        Ok(v) => {
            let runtime = hub_adapters::Runtime::new(hub_adapters::RuntimeOptions {
                cache_dir: default_adapter_cache(),
                builtins: Some(hub_builtin_adapters::get),
                ..hub_adapters::RuntimeOptions::default()
            })
            .map_err(|e| fail(e, "this is a bug; please report it"))?;
            let mut caps = std::collections::HashMap::new();
            for (res, cfg) in v.adapters() {
                match runtime.validate(cfg).await {
                    Ok(c) => {
                        caps.insert(res.key(), c);
                    }
                    Err(e) => errors.push(
                        res.invalid("Adapter", "spec.config", e.to_string())
                            .to_string(),
                    ),
                }
            }
            errors.extend(
                v.policy_adapter_errors(|key| caps.get(key).copied())
                    .iter()
                    .map(ToString::to_string),
            );
        }
    }
    let mesh = match networking {
        Ok((_, v)) => {
            errors.extend(
                v.rejected
                    .iter()
                    .flat_map(|r| &r.errors)
                    .map(ToString::to_string),
            );
            Some(v.config)
        }
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    if !errors.is_empty() {
        return Err(fail(errors.join("\n"), HINT));
    }
    let (vs, dr, gw, svc) = mesh.map_or((0, 0, 0, 0), |m| {
        (
            m.virtual_services.len(),
            m.destination_rules.len(),
            m.gateways.len(),
            m.services.len(),
        )
    });
    out(&format!(
        "ok: {p} policies, {r} rate limits, {t} telemetry, {a} adapters; {vs} virtual services, {dr} destination rules, {gw} gateways, {svc} services in {files} files\n"
    ))
}

/// mimalloc rather than glibc's allocator: it gives freed memory back to the OS, where glibc keeps the pages
/// of a burst (pilot pushing megabytes to each of thousands of proxies at once) for the rest of the process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable naming the process whose exit this one follows (set by `sextant dev` on its
/// children).
pub(crate) const EXIT_WITH_PARENT: &str = "SEXTANT_EXIT_WITH_PARENT";

/// When [`EXIT_WITH_PARENT`] names this process's parent, asks the kernel for SIGTERM when that parent
/// exits, and exits now if it already has (so a killed `sextant dev` leaves no process behind).
fn exit_with_parent() {
    let Some(parent) = std::env::var(EXIT_WITH_PARENT)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent) {
        std::process::exit(1);
    }
}

/// Whether logs are coloured: only on a terminal, and not when `NO_COLOR` is set to anything
/// (<https://no-color.org>); a file or a pipe gets plain text.
fn log_colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The command line's definition, with the version.
fn command() -> clap::Command {
    Cli::command().version(VERSION.as_str())
}

/// Logs to stderr in `format`, filtered by RUST_LOG (default `info`); with `otlp`, also exports the spans
/// meant for export (target `otel`, never logged) over OTLP, returning the handle that flushes them at exit.
fn init_logs(
    format: LogFormat,
    otlp: Option<&sextant_otel::Options>,
) -> Result<Option<sextant_otel::Exporting>, Failure> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info".into())
        .add_directive(
            format!("{}=off", sextant_otel::TARGET)
                .parse()
                .map_err(|e| fail(e, "a bug: the log filter's directive"))?,
        );
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs.json().with_current_span(false).boxed(),
        LogFormat::Text => logs
            .with_ansi(log_colour(
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
                std::env::var_os("NO_COLOR"),
            ))
            .boxed(),
    };
    let (spans, exporting) = match otlp.filter(|o| o.traces) {
        None => (None, None),
        Some(o) => {
            let (layer, exporting) = sextant_otel::install(o).map_err(|e| {
                fail(
                    e,
                    "check --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) and --otlp-protocol",
                )
            })?;
            (
                Some(layer.with_filter(sextant_otel::filter())),
                Some(exporting),
            )
        }
    };
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
    Ok(exporting)
}

/// The OTLP options of the command's role, if it is one that exports its own telemetry.
fn otlp_of(command: &Command) -> Result<Option<sextant_otel::Options>, Failure> {
    match command {
        Command::Hub(args) => args.otlp.options("sextant-hub"),
        Command::Pilot(args) => args.otlp.options("sextant-pilot"),
        Command::Proxy(args) => args.otlp.options("sextant-proxy"),
        _ => Ok(None),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    exit_with_parent();
    let exporting =
        match otlp_of(&cli.command).and_then(|otlp| init_logs(cli.log_format, otlp.as_ref())) {
            Ok(e) => e,
            Err(f) => {
                eprintln!("error: {}", f.message);
                eprintln!("hint: {}", f.hint);
                return ExitCode::FAILURE;
            }
        };
    let runtime = match &cli.command {
        // The proxy's data path runs on exactly --concurrency workers, as Envoy's --concurrency.
        Command::Proxy(args) => {
            proxy::keep_pages_small();
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.concurrency.max(1))
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // The spans still queued are exported before the process ends.
    drop(exporting);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            eprintln!("hint: {}", f.hint);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_colour;

    /// Every command, at every depth, with the arguments it takes.
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.to_string(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn help_names_every_command_and_explains_every_flag() {
        let top = super::command();
        top.clone().debug_assert();
        let about = top
            .get_long_about()
            .map(ToString::to_string)
            .unwrap_or_default();
        let visible: Vec<&str> = top
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .map(|c| c.get_name())
            .collect();
        for name in &visible {
            assert!(
                about.contains(&format!("`{name}`")),
                "the description leaves out `{name}`: {about}"
            );
        }
        // And it names no command that does not exist.
        for quoted in about.split('`').skip(1).step_by(2) {
            assert!(
                visible.contains(&quoted),
                "the description names `{quoted}`, which is not a command"
            );
        }
        let mut all = Vec::new();
        walk(&top, "sextant", &mut all);
        for (path, cmd) in &all {
            if cmd.is_hide_set() {
                continue;
            }
            assert!(cmd.get_about().is_some(), "{path} has no description");
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                assert!(arg.get_help().is_some(), "{path}: {id} has no help text");
            }
        }
    }

    #[test]
    fn the_version_names_the_adapter_abi_and_the_commit() {
        let v = super::VERSION.as_str();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(
            v.contains(&format!("sextant:adapter@{}", hub_adapters::ABI_VERSION)),
            "{v}"
        );
        assert!(v.contains("commit "), "{v}");
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(
            log_colour(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
        assert!(!log_colour(true, Some("1".into())));
        assert!(!log_colour(false, None), "a file or a pipe gets plain text");
    }
}
