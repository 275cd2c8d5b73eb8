//! `sextant proxy`: wires the proxy's crates: the xDS client feeds the store, the store's snapshots drive the
//! listeners, and the admin endpoints read both.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use proxy_admin::Admin;
use proxy_state::Store;
use proxy_stats::Stats;
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::google::protobuf::{ListValue, Struct, Value, value::Kind};
use sextant_supervise::TaskHealth;
use tokio::sync::watch;

use crate::{Failure, fail};

/// Flags of `sextant proxy`; as with Istio's pilot-agent, the node also comes from the pod's environment.
#[derive(clap::Args)]
pub struct ProxyArgs {
    /// Export this process's own traces and metrics over OTLP.
    #[command(flatten)]
    pub otlp: crate::otel::OtlpArgs,
    /// Pilot's xDS (ADS) address.
    #[arg(long, env = "SEXTANT_XDS_ADDR", default_value = "127.0.0.1:15010")]
    xds_addr: String,
    /// The xDS protocol: state of the world or delta.
    #[arg(long, value_enum, default_value_t = XdsProtocol::Sotw)]
    xds_protocol: XdsProtocol,
    /// The node id; by default Istio's sidecar form built from the environment,
    /// `sidecar~$INSTANCE_IP~$POD_NAME.$POD_NAMESPACE~$POD_NAMESPACE.svc.cluster.local`.
    #[arg(long)]
    node_id: Option<String>,
    /// A JSON object merged into the node's metadata (the environment's ISTIO_META_* win over it).
    #[arg(long)]
    node_metadata_file: Option<PathBuf>,
    /// The admin address (/ready, /stats, /config_dump, /clusters, /listeners, /drain_listeners, /quitquitquit).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
    /// The Prometheus address (/stats/prometheus).
    #[arg(long, default_value = "127.0.0.1:15090")]
    stats_addr: SocketAddr,
    /// The status port (Istio's 15020; off by default): `/healthz/ready` for the kubelet, and the application's
    /// probes the sidecar injector rewrote to `/app-health/CONTAINER/livez|readyz|startupz`, run from inside the
    /// pod as `$ISTIO_KUBE_APP_PROBERS` describes them.
    #[arg(long)]
    status_addr: Option<SocketAddr>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// How long connections may finish their requests after SIGTERM or /drain_listeners before the proxy exits.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain_time: Duration,
    /// Open downstream connections at most, over all listeners.
    #[arg(long, default_value_t = 100_000)]
    max_connections: usize,
    /// Longest wait for a request's headers (slow clients are cut off after it).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    request_headers_timeout: Duration,
    /// A downstream connection with no request in flight and no bytes for this long is closed (Envoy's
    /// idle_timeout).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// `SO_MARK` on every upstream socket and the connection to pilot (Istio's 1337), which istio-init's
    /// rules let through uncaptured; needs CAP_NET_ADMIN.
    #[arg(long)]
    upstream_mark: Option<u32>,
    /// The proxy's own key and certificate, and TLS to pilot.
    #[command(flatten)]
    identity: crate::identity::IdentityArgs,
    /// `$POD_NAME`.
    #[arg(long, env = "POD_NAME", default_value = "sextant-proxy", hide = true)]
    pod_name: String,
    /// `$POD_NAMESPACE`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", hide = true)]
    pod_namespace: String,
    /// `$INSTANCE_IP`.
    #[arg(long, env = "INSTANCE_IP", default_value = "127.0.0.1", hide = true)]
    instance_ip: String,
    /// `$SERVICE_ACCOUNT`.
    #[arg(long, env = "SERVICE_ACCOUNT", default_value = "default", hide = true)]
    service_account: String,
}

/// The node metadata saying the proxy keeps its own key and certificate (pilot sends it no secrets).
pub const LOCAL_CERT_METADATA: &str = "SEXTANT_LOCAL_CERT";

/// The values of `--xds-protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdsProtocol {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Delta (`DeltaAggregatedResources`).
    Delta,
}

impl ProxyArgs {
    /// The node sent to pilot: id, cluster and metadata (file, then `ISTIO_META_*` and `ISTIO_METAJSON_*`).
    fn node(&self, env: impl Iterator<Item = (String, String)>) -> Result<Node, Failure> {
        let mut metadata: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        if let Some(path) = &self.node_metadata_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                fail(
                    format!("cannot read {}: {e}", path.display()),
                    "give --node-metadata-file a readable JSON file",
                )
            })?;
            let serde_json::Value::Object(fields) = serde_json::from_str(&text).map_err(|e| {
                fail(
                    format!("{}: {e}", path.display()),
                    "the node metadata file must hold one JSON object",
                )
            })?
            else {
                return Err(fail(
                    format!("{}: not a JSON object", path.display()),
                    "the node metadata file must hold one JSON object",
                ));
            };
            metadata.extend(fields);
        }
        metadata.insert("NAMESPACE".into(), self.pod_namespace.clone().into());
        metadata.insert(
            "SERVICE_ACCOUNT".into(),
            self.service_account.clone().into(),
        );
        metadata.insert("INSTANCE_IPS".into(), self.instance_ip.clone().into());
        if self.identity.token_file.is_some() {
            // Pilot must not make this proxy a key: it has its own.
            metadata.insert(LOCAL_CERT_METADATA.into(), "true".into());
        }
        for (key, value) in env {
            if let Some(name) = key.strip_prefix("ISTIO_METAJSON_") {
                let parsed = serde_json::from_str(&value).map_err(|e| {
                    fail(
                        format!("{key}: {e}"),
                        "ISTIO_METAJSON_* variables must hold JSON",
                    )
                })?;
                metadata.insert(name.to_string(), parsed);
            } else if let Some(name) = key.strip_prefix("ISTIO_META_") {
                metadata.insert(name.to_string(), value.into());
            }
        }
        let id = self.node_id.clone().unwrap_or_else(|| {
            let ns = &self.pod_namespace;
            format!(
                "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
                self.instance_ip, self.pod_name
            )
        });
        Ok(Node {
            id,
            cluster: metadata
                .get("CLUSTER_ID")
                .and_then(|v| v.as_str())
                .unwrap_or("Kubernetes")
                .to_string(),
            metadata: Some(Struct {
                fields: metadata
                    .into_iter()
                    .map(|(k, v)| (k, to_value(v)))
                    .collect(),
            }),
            user_agent_name: "sextant-proxy".into(),
            ..Default::default()
        })
    }
}

/// What the status port serves: its address, the application's probes and the pod's IP.
type StatusSettings = (SocketAddr, proxy_probe::Probers, IpAddr);

impl ProxyArgs {
    /// With `--status-addr`: the application's probes from `$ISTIO_KUBE_APP_PROBERS` (none when unset) and the
    /// pod's IP they run against; the proxy refuses to start with probes it could not run.
    fn status(&self) -> Result<Option<StatusSettings>, Failure> {
        let env = proxy_probe::ENV;
        let Some(addr) = self.status_addr else {
            if std::env::var_os(env).is_some() {
                tracing::warn!(
                    "{env} is set without --status-addr: the application's probes are not served"
                );
            }
            return Ok(None);
        };
        let probers = match std::env::var(env) {
            Ok(text) => proxy_probe::Probers::parse(&text).map_err(|e| {
                fail(
                    format!("{env}: {e}"),
                    "the sidecar injector writes it: one JSON object of the application's httpGet, tcpSocket or grpc probes by /app-health/CONTAINER/livez|readyz|startupz",
                )
            })?,
            Err(std::env::VarError::NotPresent) => proxy_probe::Probers::default(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(fail(
                    format!("{env} is not UTF-8"),
                    "the sidecar injector writes it as JSON",
                ));
            }
        };
        let pod_ip = self.instance_ip.parse::<IpAddr>().map_err(|_| {
            fail(
                format!(
                    "INSTANCE_IP {:?} is not an IP address, and the status port runs the application's probes against it",
                    self.instance_ip
                ),
                "set INSTANCE_IP to the pod's IP (status.podIP)",
            )
        })?;
        Ok(Some((addr, probers, pod_ip)))
    }
}

fn to_value(v: serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(Struct {
            fields: fields.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// Runs the proxy until SIGTERM/SIGINT or `/quitquitquit`, then drains for `--drain-time`.
pub async fn run(args: &ProxyArgs) -> Result<(), Failure> {
    raise_open_files_limit();
    let node = args.node(std::env::vars())?;
    let endpoint = if args.xds_addr.contains("://") {
        args.xds_addr.clone()
    } else {
        format!("http://{}", args.xds_addr)
    };
    let tls = args.identity.pilot_tls()?;
    if endpoint.starts_with("https://") && tls.is_none() {
        return Err(fail(
            format!("--xds-addr {endpoint} is TLS, and no mesh root checks pilot's certificate"),
            "give --root-cert pilot's root-cert.pem",
        ));
    }
    let status = args.status()?;
    let identity = args.identity.settings(
        tls.clone(),
        Some(&endpoint),
        &args.pod_namespace,
        &args.service_account,
        args.upstream_mark,
    )?;
    let mut options = proxy_xds::Options::new(endpoint.clone(), node);
    options.tls = tls
        .map(|(t, _)| t)
        .filter(|_| endpoint.starts_with("https://"));
    options.protocol = match args.xds_protocol {
        XdsProtocol::Sotw => proxy_xds::Protocol::StateOfTheWorld,
        XdsProtocol::Delta => proxy_xds::Protocol::Delta,
    };
    options.mark = args.upstream_mark;
    if let Some(mark) = args.upstream_mark {
        proxy_balance::set_upstream_mark(mark);
    }
    let stats = Stats::new();
    // The proxy's statistics over OTLP too (Envoy's Prometheus names), until the proxy exits.
    let _otlp_metrics = match args.otlp.options("sextant-proxy")?.filter(|o| o.metrics) {
        Some(o) => {
            let stats = stats.clone();
            Some(
                sextant_otel::metrics::start(&o, move || {
                    let mut text = stats.prometheus();
                    text.push_str(&sextant_otel::stats::text("sextant_proxy"));
                    text
                })
                .map_err(|e| fail(e, "check --otlp-endpoint and --otlp-protocol"))?,
            )
        }
        None => None,
    };
    let health = Arc::new(TaskHealth::default());
    let (store, snapshots) = Store::new(stats.clone());
    let store = proxy_state::SharedStore(Arc::new(std::sync::Mutex::new(store)));
    if let Some(settings) = identity {
        let sink = proxy_identity::into_store(store.clone(), settings.root_pem.clone());
        proxy_identity::run(settings, sink, &stats, health.clone());
    }
    let (status_tx, xds) = watch::channel(proxy_xds::Status::default());
    let (drain, drained) = watch::channel(false);
    let (quit, mut quitting) = watch::channel(false);

    let bind = |addr: SocketAddr, what: &str| {
        let what = what.to_string();
        async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                fail(
                    format!("cannot bind the {what} address {addr}: {e}"),
                    "pick free ports with --admin-addr / --stats-addr",
                )
            })
        }
    };
    let admin_listener = bind(args.admin_addr, "admin").await?;
    let stats_listener = bind(args.stats_addr, "stats").await?;
    let admin_addr = admin_listener.local_addr().map_err(|e| fail(e, "retry"))?;
    let stats_addr = stats_listener.local_addr().map_err(|e| fail(e, "retry"))?;
    let status = match status {
        Some((addr, probers, pod_ip)) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                fail(
                    format!("cannot bind the status address {addr}: {e}"),
                    "pick a free port with --status-addr",
                )
            })?;
            let bound = listener.local_addr().map_err(|e| fail(e, "retry"))?;
            Some((listener, bound, probers, pod_ip))
        }
        None => None,
    };
    let rejected = stats.counter(
        &proxy_stats::Scope::Server,
        "status_port.app_probes_rejected",
    );

    let xds_task = tokio::spawn(proxy_xds::run(options, store, status_tx));
    let listeners = tokio::spawn(proxy_listen::run(
        snapshots.clone(),
        stats.clone(),
        proxy_listen::Options {
            max_connections: args.max_connections,
            http: proxy_http::Limits {
                header_read_timeout: args.request_headers_timeout,
                idle_timeout: args.idle_timeout,
            },
            hubs: Some(proxy_http::Hubs::new(
                stats.clone(),
                health.clone(),
                snapshots.clone(),
            )),
        },
        drained,
    ));
    let admin = Arc::new(Admin {
        stats,
        snapshots,
        xds,
        drain: drain.clone(),
        quit,
        health: health.clone(),
    });
    let admin_server = tokio::spawn(serve(admin_listener, proxy_admin::router(admin.clone())));
    let stats_server = tokio::spawn(serve(
        stats_listener,
        proxy_admin::stats_router(admin.clone()),
    ));
    let mut status_line = String::new();
    let status_server = status.map(|(listener, bound, probers, pod_ip)| {
        status_line = format!(", status on http://{bound}/healthz/ready");
        let port = proxy_probe::StatusPort::new(probers, pod_ip, move || admin.not_ready())
            .count_rejected(rejected);
        tokio::spawn(serve(listener, proxy_probe::router(Arc::new(port))))
    });
    // One line with the addresses as bound (a port may have been 0): what scripts and tests read.
    eprintln!(
        "proxy: admin on http://{admin_addr}/ready, prometheus on http://{stats_addr}/stats/prometheus, xDS from {}{status_line}",
        args.xds_addr
    );

    tokio::select! {
        _ = crate::shutdown_signal() => {},
        _ = quitting.wait_for(|q| *q) => {},
    }
    tracing::info!(drain_time = ?args.drain_time, "draining listeners before exiting");
    drain.send_replace(true);
    // The listeners' task ends once every connection has ended; they get the drain time to.
    if tokio::time::timeout(args.drain_time, listeners)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain time; exiting anyway");
    }
    xds_task.abort();
    admin_server.abort();
    stats_server.abort();
    if let Some(server) = status_server {
        server.abort();
    }
    if let Some(down) = health.down().first() {
        tracing::warn!(task = %down, "a task had failed");
    }
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every connection is two descriptors.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open files limit");
        }
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for huge pages on its arenas, so each
/// 2 MiB region a sidecar touches becomes resident in full: measured with proxy-bench, that is half of an
/// idle proxy's resident memory (about 50 → 28 MB), with no throughput to show for it at a sidecar's heap
/// size. A sidecar runs once per pod, so its memory counts more than the TLB misses huge pages would save.
/// The flag applies to the pages touched from then on (the kernel checks it at each fault), so `main` calls
/// this before the runtime's threads allocate; the allocator itself is built without its huge-page advice
/// (mimalloc's `no_thp`), which covers the kernels that give huge pages only when asked.
pub fn keep_pages_small() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
}

async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "admin server ended");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProxyArgs,
    }

    #[test]
    fn the_node_follows_pilot_agents_environment() {
        let cli = Cli::parse_from([
            "proxy",
            "--pod-name",
            "productpage-1",
            "--pod-namespace",
            "shop",
            "--instance-ip",
            "10.0.0.7",
        ]);
        let env = [
            (
                "ISTIO_META_INTERCEPTION_MODE".to_string(),
                "NONE".to_string(),
            ),
            (
                "ISTIO_METAJSON_LABELS".to_string(),
                r#"{"app":"productpage","version":"v1"}"#.to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let node = cli
            .args
            .node(env.into_iter())
            .map_err(|f| f.message)
            .expect("node");
        assert_eq!(
            node.id,
            "sidecar~10.0.0.7~productpage-1.shop~shop.svc.cluster.local"
        );
        let fields = node.metadata.expect("metadata").fields;
        assert_eq!(
            fields["NAMESPACE"].kind,
            Some(Kind::StringValue("shop".into()))
        );
        assert_eq!(
            fields["INTERCEPTION_MODE"].kind,
            Some(Kind::StringValue("NONE".into()))
        );
        let Some(Kind::StructValue(labels)) = &fields["LABELS"].kind else {
            panic!("labels: {:?}", fields["LABELS"])
        };
        assert_eq!(
            labels.fields["version"].kind,
            Some(Kind::StringValue("v1".into()))
        );
        assert!(!fields.contains_key("HOME"));
    }
}
