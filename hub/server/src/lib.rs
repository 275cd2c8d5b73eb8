//! The hub process.
//!
//! One gRPC port serves the native `sextant.mixer.v1.Mixer` (Check and Report) and Envoy's ext_authz,
//! rate-limit and access-log services, all using the same [`HubState`], plus gRPC health and reflection. A
//! third port serves what the adapters recorded into the host metrics registry in Prometheus format. One admin HTTP port serves
//! health, readiness, metrics and the active configuration, and the query API (from the hub's window of
//! recent telemetry, or, with [`HubOptions::prometheus_url`], partly from a Prometheus: `query/`). A
//! background task polls the config directory and swaps in each valid new configuration atomically.

mod admin;
mod background;
mod caller;
mod dedup;
mod envoy_als;
mod envoy_authz;
mod envoy_rls;
mod failure;
mod fill;
mod ingest;
mod isolate;
mod metrics;
mod native;
mod query;
mod refusal;
mod routes;
mod shed;
mod state;
mod telemetry;
mod tls;
mod trace;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sextant_proto::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use sextant_proto::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use sextant_proto::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use sextant_proto::mixer::mixer_server::MixerServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use caller::CallerIdentity;
pub use envoy_als::{Reporter as AlsReporter, bags_of as als_bags, response_flags};
pub use envoy_authz::{bag_of as authz_bag, to_authz_response};
pub use failure::LoadFailure;
pub use hub_quota::Overflow as RateLimitOverflow;
pub use ingest::{DecodedReport, MAX_REPORT_BAGS, each_report_bag, report, report_bags};
pub use metrics::{GateMetrics, Metrics};
pub use native::to_check_response;
pub use query::{PrometheusUrl, UrlError};
pub use routes::MixerRoutes;
pub use shed::default_max_in_flight;
pub use state::{ConfigSource, DecisionOptions, HubState};
pub use telemetry::{
    Ingested, Telemetry, Validated as ValidatedTelemetry, adapter_config,
    validate as validate_telemetry,
};
pub use tls::{CertificateSource, ServingCertificate, TlsError, TlsOptions};

/// Largest gRPC message the hub decodes; bigger requests are refused with a clear status.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How to run a hub (runtime flags; policy lives in the config directory).
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Directory (or file) of resources.
    pub config_dir: PathBuf,
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address.
    pub admin_addr: SocketAddr,
    /// Listen address of the adapters' Prometheus exposition (`/metrics`).
    pub prometheus_addr: SocketAddr,
    /// Directory of precompiled adapter components (None: compile on every start).
    pub adapter_cache: Option<PathBuf>,
    /// How often to look for configuration changes.
    pub reload_interval: Duration,
    /// Decision caching and rate-limit memory.
    pub decisions: DecisionOptions,
    /// A Prometheus scraping every hub of the fleet (`--prometheus-url`): the query API's graph, services,
    /// RED and rate limits come from it by PromQL instead of this hub's window (`docs/dashboard.md`).
    pub prometheus_url: Option<PrometheusUrl>,
    /// Read the resources from the Kubernetes API server instead of `config_dir`, and write their status.
    pub kubernetes: Option<hub_kube::KubeOptions>,
    /// The most Checks, Reports, ext_authz and rate-limit calls admitted at once; beyond, calls are refused
    /// with RESOURCE_EXHAUSTED (see [`default_max_in_flight`]).
    pub max_in_flight: usize,
    /// On shutdown, how long the adapters may take to deliver what they have queued.
    pub drain_timeout: Duration,
    /// Serve gRPC over TLS (and require client certificates, binding the caller's attributes to them). With
    /// a handed certificate, [`start`] opens no port before the first one comes.
    pub tls: Option<TlsOptions>,
    /// Export the hub's metrics over OTLP as well (`--otlp-endpoint`; the spans go through the process's
    /// `tracing` subscriber, which the binary sets up).
    pub otlp: Option<sextant_otel::Options>,
}

/// Errors starting the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which port.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The Wasm adapter runtime could not start.
    #[error("adapter runtime: {0}")]
    Runtime(#[from] hub_adapters::RuntimeError),
    /// The gRPC server stopped with an error.
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// No client for the Kubernetes API server.
    #[error("{0}")]
    Kube(#[from] sextant_kube::ClientError),
    /// The TLS certificate, key or client CA cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The OTLP metric exporter could not be set up.
    #[error("{0}")]
    Otlp(#[from] sextant_otel::InstallError),
    /// The gRPC server's task panicked or was cancelled.
    #[error("gRPC server task failed: {0}")]
    Panicked(String),
}

/// A hub that is running.
pub struct RunningHub {
    /// The bound gRPC address (useful with port 0).
    pub grpc_addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    /// The bound address of the adapters' Prometheus exposition.
    pub prometheus_addr: SocketAddr,
    /// The shared state.
    pub state: Arc<HubState>,
    server: JoinHandle<Result<(), HubError>>,
}

impl RunningHub {
    /// Waits until the hub has stopped (after the shutdown future given to [`start`] resolved and in-flight
    /// calls drained).
    pub async fn wait(self) -> Result<(), HubError> {
        // The gRPC server cannot be restarted in place: the process must exit non-zero.
        sextant_supervise::ended("grpc-server", &self.state.tasks, self.server.await)
            .map_err(HubError::Panicked)?
    }
}

/// How long the configuration files must stay unchanged before a change is loaded: a burst of writes (an
/// editor saving, `kubectl cp` of a directory) is one reload.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);

/// Reloads when the configuration directory changes ([`sextant_watch::DirWatch`], polled every `interval`
/// as a safety net) or an adapter's module file does (checked every `interval`), and does the rate limits'
/// housekeeping every 10 s.
async fn watch_config(state: Arc<HubState>, interval: Duration) {
    let mut changes = match state.source() {
        ConfigSource::Dir(dir) => Changes::Dir(
            sextant_watch::DirWatch::start(dir.clone(), interval, RELOAD_DEBOUNCE).await,
        ),
        ConfigSource::Kubernetes(kube) => Changes::Kube {
            version: kube.changes(),
            pending: false,
        },
    };
    // What changed before the watch started (the load at start, or before a restart) is loaded now.
    state.reload(false).await;
    let mut modules = tokio::time::interval(interval);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = changes.next() => {
                state.reload(false).await;
            }
            _ = modules.tick() => {
                if state.modules_changed().await {
                    state.reload(true).await;
                }
            }
            _ = housekeeping.tick() => state.housekeeping(),
        }
    }
}

/// What tells the watcher the resources changed.
enum Changes {
    /// The configuration directory's watch.
    Dir(sextant_watch::DirWatch),
    /// The API server's resources' version, and whether a change was seen whose debounce has not run out.
    Kube {
        /// The resources' version.
        version: tokio::sync::watch::Receiver<u64>,
        /// A change seen and not yet reported.
        pending: bool,
    },
}

impl Changes {
    /// Waits for the next change (a burst of watch events settles for [`RELOAD_DEBOUNCE`] first). Cancel
    /// safe: a change seen by a call that was dropped (another branch of the watcher's `select!` won during
    /// the debounce) is reported by the next call.
    async fn next(&mut self) {
        match self {
            Changes::Dir(dir) => dir.changed().await,
            Changes::Kube { version, pending } => {
                if !*pending {
                    if version.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    *pending = true;
                }
                tokio::time::sleep(RELOAD_DEBOUNCE).await;
                *pending = false;
            }
        }
    }
}

/// Binds `addr`, returning the listener and the address it got (the port, when 0 was asked for).
async fn bind(addr: SocketAddr, what: &'static str) -> Result<(TcpListener, SocketAddr), HubError> {
    let err = |source| HubError::Bind { addr, what, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

/// Binds the ports, loads the configuration and starts serving. `shutdown` resolving starts a graceful stop:
/// no new calls are accepted and in-flight ones complete. With a handed TLS certificate
/// ([`CertificateSource::Handed`]) the first one is waited for before any port is bound; `shutdown` resolving
/// meanwhile ends the start with [`TlsError::Stopped`].
pub async fn start(
    options: HubOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningHub, HubError> {
    // Checked before anything runs: the files are read now, and a bad one stops the start. A handed
    // certificate is waited for here, before any port opens: the gRPC port never answers in plain text, and
    // the admin port's /readyz does not say ready before calls can be served.
    let mut shutdown = Box::pin(shutdown);
    let tls = match &options.tls {
        Some(t) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let serving = tokio::select! {
                biased;
                serving = tls::Serving::start(&t.certificate, provider.clone()) => serving?,
                () = &mut shutdown => {
                    let from = match &t.certificate {
                        CertificateSource::Handed { from, .. } => from.clone(),
                        CertificateSource::Files { cert_file, .. } => cert_file.display().to_string(),
                    };
                    return Err(TlsError::Stopped { from }.into());
                }
            };
            let config =
                tls::server_config(t.client_ca_file.as_deref(), serving.resolver(), provider)?;
            Some((config, serving))
        }
        None => None,
    };
    let (grpc, grpc_addr) = bind(options.grpc_addr, "gRPC").await?;
    let (admin, admin_addr) = bind(options.admin_addr, "admin").await?;
    let (exposition, prometheus_addr) = bind(options.prometheus_addr, "prometheus").await?;

    let runtime = hub_adapters::Runtime::new(hub_adapters::RuntimeOptions {
        cache_dir: options.adapter_cache.clone(),
        builtins: Some(hub_builtin_adapters::get),
        ..hub_adapters::RuntimeOptions::default()
    })?;
    let tasks = Arc::new(sextant_supervise::TaskHealth::default());
    let source = match &options.kubernetes {
        Some(kube) => ConfigSource::Kubernetes(hub_kube::HubKube::start(kube, &tasks).await?),
        None => ConfigSource::Dir(options.config_dir.clone()),
    };
    let state = Arc::new(HubState::with_tasks(
        source,
        options.decisions.clone(),
        Arc::new(runtime),
        tasks,
    ));
    state.reload(true).await;
    let otlp_metrics = match options.otlp.as_ref().filter(|o| o.metrics) {
        Some(o) => {
            let metrics = state.clone();
            Some(sextant_otel::metrics::start(o, move || {
                metrics.metrics.encode()
            })?)
        }
        None => None,
    };

    // GLOBAL rate limits: the lease calls and the fleet's heartbeat. Restartable: it holds only its queue.
    let global_quota = options.decisions.global_quota.clone().map(|global| {
        let worker = global.clone();
        let task = sextant_supervise::restarting("quota-redis", state.tasks.clone(), move || {
            worker.clone().run()
        });
        (global, task)
    });

    // Restarting the watcher is safe: it holds nothing but timers, and reads the directory anew.
    let watcher = {
        let watched = state.clone();
        let interval = options.reload_interval;
        sextant_supervise::restarting("config-watcher", state.tasks.clone(), move || {
            watch_config(watched.clone(), interval)
        })
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MixerServer<native::MixerService>>()
        .await;
    health
        .set_serving::<AuthorizationServer<envoy_authz::AuthzService>>()
        .await;
    health
        .set_serving::<RateLimitServiceServer<envoy_rls::RlsService>>()
        .await;
    health
        .set_serving::<AccessLogServiceServer<envoy_als::AlsService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(sextant_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let admin_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let exposition_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let exposition_router = admin::exposition_router(state.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(exposition, exposition_router)
            .with_graceful_shutdown(exposition_stop)
            .await
        {
            tracing::error!(error = %e, "prometheus exposition server stopped");
        }
    });
    if let Some(url) = &options.prometheus_url {
        tracing::info!(%url, "the query API's graph, services, RED and rate limits come from Prometheus");
    }
    let source = Arc::new(query::Source::new(options.prometheus_url.clone()));
    let admin_router = admin::router(state.clone(), source);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(admin, admin_router)
            .with_graceful_shutdown(admin_stop)
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    });

    let mixer = routes::MixerRoutes::new(state.clone(), MAX_MESSAGE_BYTES);
    let authz = AuthorizationServer::new(envoy_authz::AuthzService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let rls = RateLimitServiceServer::new(envoy_rls::RlsService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let als = AccessLogServiceServer::new(envoy_als::AlsService::new(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut grpc_stop = stop_rx;
    let gate = shed::Gate::new(options.max_in_flight, state.metrics.gate());
    let router = tonic::transport::Server::builder()
        .layer(shed::ShedLayer(gate))
        .add_service(health_service)
        .add_optional_service(reflection.ok())
        .add_service(mixer)
        .add_service(authz)
        .add_service(rls)
        .add_service(als);
    // Small gRPC frames must not wait for Nagle / delayed ACK (a ~40 ms tail otherwise); keepalive finds dead
    // proxies.
    let (drained, drain_timeout) = (state.clone(), options.drain_timeout);
    let certificate_watcher = tls.as_ref().map(|(_, serving)| {
        let serving = serving.clone();
        sextant_supervise::restarting("tls-certificate", state.tasks.clone(), move || {
            serving.clone().keep_fresh()
        })
    });
    let server = tokio::spawn(async move {
        let stop = async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
            tracing::info!("shutting down: draining in-flight calls");
        };
        let result = match tls {
            Some((config, _)) => {
                let incoming = sextant_tls_incoming::accept(grpc, config);
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
            None => {
                let incoming = tonic::transport::server::TcpIncoming::from(grpc)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(Duration::from_secs(60)));
                router.serve_with_incoming_shutdown(incoming, stop).await
            }
        };
        watcher.abort();
        if let Some(w) = certificate_watcher {
            w.abort();
        }
        // Reports acknowledged before the stop reach the adapters (bounded by the drain timeout).
        for (adapter, stats) in drained.telemetry.drain_all(drain_timeout).await {
            tracing::info!(%adapter, delivered = stats.delivered, dropped = stats.dropped.total(), queued = stats.queued, "adapter drained");
        }
        if let Some((global, task)) = global_quota {
            // Leave the fleet and give back the units held, while the worker still runs the calls.
            global.leave().await;
            task.abort();
        }
        // The last metrics are exported once the calls have drained.
        drop(otlp_metrics);
        result.map_err(HubError::from)
    });
    tracing::info!(%grpc_addr, %admin_addr, %prometheus_addr, "hub listening");
    Ok(RunningHub {
        grpc_addr,
        admin_addr,
        prometheus_addr,
        state,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_seen_by_a_wait_dropped_during_its_debounce_is_not_lost() {
        let (tx, version) = tokio::sync::watch::channel(0u64);
        let mut changes = Changes::Kube {
            version,
            pending: false,
        };
        tx.send_replace(1);
        // Another branch of the watcher's select! wins while the change settles.
        tokio::select! {
            () = changes.next() => panic!("the debounce had not run out"),
            () = tokio::time::sleep(RELOAD_DEBOUNCE / 2) => {}
        }
        let reported = tokio::time::timeout(Duration::from_secs(10), changes.next()).await;
        assert!(
            reported.is_ok(),
            "the change was lost with the dropped wait"
        );
    }
}
