//! The pilot process: reads Istio networking resources from a configuration directory, translates them per
//! proxy view into Envoy resources, and serves them over ADS, with monitoring on a second port.
//!
//! Data flow: [`ConfigWatch`] polls the directory (digest of names and contents), debounces bursts of
//! changes, validates each resource on its own with `pilot-config` (an invalid one is left out, logged,
//! listed on `/debug/config` and counted in `pilot_config_rejected`; the rest is served, so start-up with
//! some invalid resources serves the valid ones and is ready) and publishes a [`Mesh`] into [`MeshSource`]; ADS streams (`pilot-xds`) wake on it and
//! ask the source for their proxy's snapshot, which a [`Translator`] builds once per view and generation.
//! In Kubernetes mode ([`RegistryMode::Kubernetes`]) a `pilot-kube` registry adds the cluster's Services to
//! the directory's ServiceEntries, and `/ready` waits for its first full sync. With the mesh CA
//! ([`PilotOptions::secure`]) a second port serves the same ADS and Istio's certificate API over TLS
//! ([`secure`]), and with [`PilotOptions::webhook`] a third the admission webhooks ([`webhook`]). In
//! Kubernetes mode with the CA, the CA's root is published into every namespace ([`pilot_kube::roots`]).

mod admin;
pub mod secure;
mod source;
mod watch;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pilot_xds::AdsServer;
use prometheus_client::registry::Registry;
use secure::{CertificateService, ServingCertificate};
use sextant_proto::istio_ca::istio_certificate_service_server::IstioCertificateServiceServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use admin::Monitor;
pub use secure::{SecureOptions, TOKENS_DIR};
pub use source::{MAX_VIEWS, Mesh, MeshSource, Translator};
pub use watch::{ConfigWatch, LoadReport, MAX_REJECTED_SERIES};

/// Where services come from besides the configuration directory's ServiceEntries.
#[derive(Clone, Debug, Default)]
pub enum RegistryMode {
    /// Only the directory's ServiceEntries and WorkloadEntries.
    #[default]
    File,
    /// Also the Services, EndpointSlices and Pods of a Kubernetes cluster.
    Kubernetes(pilot_kube::KubeOptions),
}

/// The gRPC service name health checks ask about.
pub const ADS_SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

/// How pilot runs (flags, not resources).
#[derive(Clone, Debug)]
pub struct PilotOptions {
    /// The configuration directory (or file).
    pub config_dir: PathBuf,
    /// ADS (gRPC, plaintext).
    pub xds_addr: SocketAddr,
    /// Monitoring HTTP.
    pub monitoring_addr: SocketAddr,
    /// How often the directory is read.
    pub poll: Duration,
    /// How long the files must stay unchanged before a change is pushed.
    pub debounce: Duration,
    /// Open ADS streams at most.
    pub max_streams: usize,
    /// The service registry besides the directory.
    pub registry: RegistryMode,
    /// The secure port (ADS and the certificate API over TLS), with the mesh CA; `None`: no secure port.
    pub secure: Option<SecureOptions>,
    /// The validating admission webhook (HTTPS, a certificate of the mesh CA); `None`: none.
    pub webhook: Option<webhook::WebhookOptions>,
    /// Export pilot's metrics over OTLP as well (`--otlp-endpoint`; the spans go through the process's
    /// `tracing` subscriber, which the binary sets up).
    pub otlp: Option<sextant_otel::Options>,
}

impl Default for PilotOptions {
    fn default() -> Self {
        PilotOptions {
            config_dir: PathBuf::from("."),
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 15010)),
            monitoring_addr: SocketAddr::from(([127, 0, 0, 1], 15014)),
            poll: Duration::from_millis(500),
            debounce: Duration::from_millis(50),
            max_streams: 20_000,
            registry: RegistryMode::File,
            secure: None,
            webhook: None,
            otlp: None,
        }
    }
}

/// Why pilot could not start.
#[derive(Debug, thiserror::Error)]
pub enum PilotError {
    /// A port could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which port.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Kubernetes registry could not start.
    #[error("Kubernetes registry: {0}")]
    Kube(#[from] pilot_kube::KubeError),
    /// The gRPC server failed.
    #[error("ADS server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The OTLP metric exporter could not be set up.
    #[error("{0}")]
    Otlp(#[from] sextant_otel::InstallError),
    /// Pilot's own TLS certificate for the secure port could not be made.
    #[error("pilot's TLS certificate: {0}")]
    ServingCertificate(String),
    /// A server task that cannot be restarted panicked: the process must exit non-zero.
    #[error("{task} panicked: {why}")]
    Panicked {
        /// The task.
        task: &'static str,
        /// The panic's message.
        why: String,
    },
}

/// A started pilot.
pub struct RunningPilot {
    /// The bound ADS address.
    pub xds_addr: SocketAddr,
    /// The bound monitoring address.
    pub monitoring_addr: SocketAddr,
    /// The bound secure address (ADS and the certificate API over TLS), when there is one.
    pub secure_addr: Option<SocketAddr>,
    /// The bound address of the admission webhook, when there is one.
    pub webhook_addr: Option<SocketAddr>,
    /// What the monitoring port shows.
    pub monitor: Arc<Monitor>,
    server: JoinHandle<Result<(), PilotError>>,
    monitoring: JoinHandle<()>,
}

impl RunningPilot {
    /// Waits until the ADS server stopped (after the shutdown future resolved). A panic of the ADS or the
    /// monitoring server is an error (neither can be restarted in place).
    pub async fn wait(self) -> Result<(), PilotError> {
        let tasks = &self.monitor.tasks;
        let panicked = |task| move |why| PilotError::Panicked { task, why };
        let mut monitoring = self.monitoring;
        let mut server = self.server;
        tokio::select! {
            served = &mut server => {
                sextant_supervise::ended("ads-server", tasks, served).map_err(panicked("ads-server"))?
            }
            ended = &mut monitoring => {
                // The monitoring server ends only with the ADS server, or by panicking.
                sextant_supervise::ended("monitoring-server", tasks, ended)
                    .map_err(panicked("monitoring-server"))?;
                sextant_supervise::ended("ads-server", tasks, server.await)
                    .map_err(panicked("ads-server"))?
            }
        }
    }
}

async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), PilotError> {
    let err = |source| PilotError::Bind { what, addr, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let bound = l.local_addr().map_err(err)?;
    Ok((l, bound))
}

/// The secure port, bound, before it serves.
struct Secure {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    serving: Arc<ServingCertificate>,
    certificates: CertificateService,
}

/// Binds the secure port and makes what it serves with: pilot's certificate, the authenticator of
/// certificate requests (by default the tokens of `config_dir`).
async fn secure(
    options: &SecureOptions,
    config_dir: &std::path::Path,
) -> Result<(Secure, SocketAddr), PilotError> {
    let (listener, addr) = bind(options.addr, "secure xDS").await?;
    let authority = options.authority.clone();
    let serving = tokio::task::spawn_blocking(move || ServingCertificate::issue(authority))
        .await
        .map_err(|e| PilotError::ServingCertificate(e.to_string()))??;
    let tls = serving.server_config()?;
    let authenticator = options.authenticator(config_dir).await;
    let certificates = CertificateService::new(options.authority.clone(), authenticator);
    let secure = Secure {
        listener,
        tls,
        serving,
        certificates,
    };
    Ok((secure, addr))
}

/// Binds the ports, loads the directory once, and serves until `shutdown` resolves.
pub async fn start(
    options: PilotOptions,
    translator: Arc<dyn Translator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningPilot, PilotError> {
    let (xds, xds_addr) = bind(options.xds_addr, "xDS").await?;
    let (monitoring, monitoring_addr) = bind(options.monitoring_addr, "monitoring").await?;
    let (secure, secure_addr) = match &options.secure {
        Some(o) => {
            let (s, addr) = secure(o, &options.config_dir).await?;
            (Some(s), Some(addr))
        }
        None => (None, None),
    };

    let webhook = match &options.webhook {
        Some(o) => Some(webhook::bind(o.clone()).await?),
        None => None,
    };
    let webhook_addr = webhook.as_ref().map(|w| w.addr);

    let tasks = Arc::new(sextant_supervise::TaskHealth::default());
    let kube = match &options.registry {
        RegistryMode::File => None,
        RegistryMode::Kubernetes(o) => Some(pilot_kube::start(o, &tasks).await?),
    };
    // In a cluster: a client for Istio's resources (and the mesh root's publisher below).
    let cluster = match &options.registry {
        RegistryMode::File => None,
        RegistryMode::Kubernetes(o) => {
            let client = pilot_kube::client(o.kubeconfig.as_deref())
                .await
                .map_err(pilot_kube::KubeError::from)?;
            let istio =
                pilot_kube::istio::IstioConfig::start(client.clone(), o.lease.clone(), &tasks);
            Some((client, istio))
        }
    };
    let source = Arc::new(MeshSource::new(translator));
    let mut watch = ConfigWatch::new(options.config_dir.clone(), source.clone());
    if let Some(kube) = &kube {
        watch = watch.with_registry(kube.clone());
    }
    if let Some((_, istio)) = &cluster {
        watch = watch.with_istio(istio.clone());
    }
    let watch = Arc::new(watch);
    {
        let watch = watch.clone();
        // The first load happens before anything is served, so the first proxies get the configuration.
        let _ = tokio::task::spawn_blocking(move || watch.load(true)).await;
    }
    // Each holds nothing a panic can leave half-done (they read, translate and publish whole meshes), so
    // each is restarted after one.
    let (poll, debounce) = (options.poll, options.debounce);
    let mut loops = vec![
        supervise("config-watcher", &tasks, &watch, move |w| {
            w.run(poll, debounce)
        }),
        supervise("registry-follower", &tasks, &watch, ConfigWatch::follow),
        supervise("istio-follower", &tasks, &watch, move |w| {
            w.follow_istio(debounce)
        }),
        supervise("certificate-renewal", &tasks, &watch, ConfigWatch::renew),
    ];
    if let Some(s) = &secure {
        let serving = s.serving.clone();
        loops.push(sextant_supervise::restarting(
            "serving-certificate",
            tasks.clone(),
            move || serving.clone().renew(),
        ));
    }

    // In a cluster, with the mesh CA: its root in every namespace, for injected sidecars (istiod does too).
    let roots = pilot_kube::roots::RootMetrics::default();
    if let (Some((client, _)), Some(s)) = (&cluster, &options.secure) {
        let (client, root, metrics) = (
            client.clone(),
            s.authority.root_pem().to_string(),
            roots.clone(),
        );
        loops.push(sextant_supervise::restarting(
            "root-cert-publisher",
            tasks.clone(),
            move || pilot_kube::roots::publish(client.clone(), root.clone(), metrics.clone()),
        ));
    }

    if let Some(w) = webhook {
        let serving = w.serving();
        loops.push(sextant_supervise::restarting(
            "webhook-certificate",
            tasks.clone(),
            move || serving.clone().renew(),
        ));
        // The webhook holds no state between reviews; a panic ends one connection's task only.
        loops.push(tokio::spawn(w.serve()));
    }

    let ads = AdsServer::new(source.clone(), options.max_streams);
    let connections = ads.connections();
    let mut registry = Registry::default();
    connections.metrics.register(&mut registry);
    registry.register(
        "pilot_config_reloads",
        "Loads of the networking configuration, by result (success; partial: some resources left out, the \
         rest served; failure: the directory could not be read, the previous mesh kept)",
        watch.reloads.clone(),
    );
    registry.register(
        "pilot_config_rejected",
        "Networking resources the last load left out (1 each; at most 1000 series, the rest under _other)",
        watch.rejected.clone(),
    );
    registry.register(
        "pilot_config_unread_documents",
        "Documents of Istio API groups and kinds pilot does not read, by group and kind (_other beyond the \
         known ones)",
        watch.unread.clone(),
    );
    registry.register(
        "pilot_inconsistent_snapshots",
        "Translations that produced an inconsistent snapshot (the proxy kept its previous one)",
        source.inconsistent.clone(),
    );
    registry.register(
        "pilot_view_cache_resets",
        "Times the per-view snapshot cache was full and started over",
        source.cache_resets.clone(),
    );
    registry.register(
        "pilot_views_pruned",
        "Cached views dropped because no proxy of theirs asked for two generations",
        source.views_pruned.clone(),
    );
    registry.register(
        "pilot_translation_panics",
        "Translations that panicked (the view kept its previous snapshot)",
        source.translation_panics.clone(),
    );
    registry.register(
        "pilot_task_panics",
        "Panics of pilot's long-lived tasks, by task (each restarted, or left down after repeated panics)",
        tasks.panics(),
    );
    if let Some(kube) = &kube {
        kube.metrics.register(&mut registry);
        roots.register(&mut registry);
    }
    if let Some((_, istio)) = &cluster {
        istio.register_metrics(&mut registry);
    }
    sextant_otel::stats::register(registry.sub_registry_with_prefix("pilot"));
    if let Some(s) = &secure {
        registry.register(
            "pilot_ca_csr",
            "Certificate requests on the secure port, by result (signed; unauthenticated: no token or an \
             unknown one; unavailable: the token could not be checked (TokenReview failed); denied: a CSR \
             for another identity than the token's; invalid: not a valid CSR; failed: signing failed)",
            s.certificates.outcomes(),
        );
    }
    let monitor = Arc::new(Monitor {
        connections,
        source,
        watch,
        kube,
        istio: cluster.map(|(_, istio)| istio),
        tasks,
        registry,
    });

    let otlp_metrics = match options.otlp.as_ref().filter(|o| o.metrics) {
        Some(o) => {
            let monitor = monitor.clone();
            Some(sextant_otel::metrics::start(o, move || monitor.encode())?)
        }
        None => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(ADS_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let shutdown = tokio_shared(shutdown);
    let router = admin::router(monitor.clone());
    let monitoring = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(monitoring, router)
                .with_graceful_shutdown(async move { shutdown.wait().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "monitoring server failed");
            }
        })
    };
    let ads = ads.into_service();
    let secure_serve = secure.map(|s| {
        grpc_server()
            .add_service(health_service.clone())
            .add_service(ads.clone())
            .add_service(IstioCertificateServiceServer::new(s.certificates))
            .serve_with_incoming_shutdown(
                secure::accept(s.listener, s.tls),
                shutdown.clone().wait(),
            )
    });
    let server = tokio::spawn(async move {
        let plain = grpc_server()
            .add_service(health_service)
            .add_service(ads)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(xds).with_nodelay(Some(true)),
                shutdown.clone().wait(),
            );
        let serve = async move {
            match secure_serve {
                Some(secure) => tokio::try_join!(plain, secure).map(|_| ()),
                None => plain.await,
            }
        };
        // A graceful shutdown waits for open streams, and ADS streams end only when their proxies leave:
        // after the grace period, the proxies are cut off (they reconnect to another pilot).
        let grace = async {
            shutdown.wait().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::info!(grace = ?SHUTDOWN_GRACE, "ADS streams still open after the grace period; closing them");
        };
        tokio::select! {
            served = serve => served?,
            () = grace => {}
        }
        for l in loops {
            l.abort();
        }
        drop(otlp_metrics);
        Ok(())
    });
    tracing::info!(%xds_addr, %monitoring_addr, secure_addr = ?secure_addr, "pilot serving");
    Ok(RunningPilot {
        xds_addr,
        monitoring_addr,
        secure_addr,
        webhook_addr,
        monitor,
        server,
        monitoring,
    })
}

/// A gRPC server as both ports run it. Envoy's EDS requests name every cluster (hundreds of KiB at scale):
/// windows larger than HTTP/2's 64 KiB default let a request arrive in one go.
fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(16 << 20))
}

/// Runs `run(watch)` as the supervised, restarting task `name`.
fn supervise<F, Fut>(
    name: &'static str,
    tasks: &Arc<sextant_supervise::TaskHealth>,
    watch: &Arc<ConfigWatch>,
    run: F,
) -> JoinHandle<()>
where
    F: Fn(Arc<ConfigWatch>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let watch = watch.clone();
    sextant_supervise::restarting(name, tasks.clone(), move || run(watch.clone()))
}

/// How long a shutdown waits for connected proxies to leave before closing their streams.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A shutdown signal several servers can wait on.
#[derive(Clone)]
struct Shared(tokio::sync::watch::Receiver<bool>);

impl Shared {
    async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

fn tokio_shared(f: impl Future<Output = ()> + Send + 'static) -> Shared {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        f.await;
        let _ = tx.send(true);
    });
    Shared(rx)
}
