//! `sextant pilot`: wires pilot-server to pilot-translate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pilot_ca::Authority;
use pilot_config::{MeshConfig, RegistrySnapshot};
use pilot_translate::{HubService, MeshTls, Options, ProxyInfo, WorkloadCertificate};
use pilot_xds::Snapshot;

/// Flags of `sextant pilot`.
#[derive(clap::Args)]
pub struct PilotArgs {
    /// Export this process's own traces and metrics over OTLP.
    #[command(flatten)]
    pub otlp: crate::otel::OtlpArgs,
    /// Directory (searched recursively) or file of Istio networking resources (VirtualService,
    /// DestinationRule, ServiceEntry, WorkloadEntry, Gateway); watched and hot-reloaded.
    #[arg(long, env = "SEXTANT_CONFIG_DIR")]
    config_dir: PathBuf,
    /// ADS (xDS over gRPC) listen address.
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_addr: SocketAddr,
    /// The secure port's listen address (istiod's 15012): ADS and Istio's certificate API over TLS, with
    /// pilot's certificate from the mesh CA (names `istiod.istio-system.svc`, …). Only with --ca-dir (its
    /// root-cert.pem is what proxies check pilot against). Default: --xds-addr's IP and port + 2
    /// (127.0.0.1:15012; port 0 when --xds-addr's port is 0).
    #[arg(long, value_name = "ADDR")]
    secure_xds_addr: Option<SocketAddr>,
    /// Monitoring HTTP listen address (/metrics, /ready, /debug/syncz, /debug/config_dump, /debug/config).
    #[arg(long, default_value = "127.0.0.1:15014")]
    monitoring_addr: SocketAddr,
    /// How long the files must stay unchanged (no file-system event) before a change is pushed to the proxies.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    debounce: Duration,
    /// How often to look for configuration changes.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Open ADS streams at most.
    #[arg(long, default_value_t = 20_000)]
    max_streams: usize,
    /// Where services come from: `file` (the directory's ServiceEntries) or `kubernetes` (also the
    /// cluster's Services, EndpointSlices and Pods, and Istio's networking and security resources, watched
    /// through the API server; each of those gets a status saying whether pilot serves it).
    #[arg(long, value_enum, default_value_t = Registry::File)]
    registry: Registry,
    /// With `--registry kubernetes`: the kubeconfig to use (default: in-cluster, else $KUBECONFIG or
    /// ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// With `--registry kubernetes`: the namespace of the Lease whose holder writes the status of Istio's
    /// resources (`sextant-pilot-status`; default `$POD_NAMESPACE`, else `default`).
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// With `--registry kubernetes`: the cluster's DNS domain (hosts are NAME.NAMESPACE.svc.DOMAIN).
    #[arg(long, default_value = pilot_kube::DEFAULT_CLUSTER_DOMAIN)]
    cluster_domain: String,
    /// With `--registry kubernetes` and `--ca-dir`: the audience certificate requests' service-account
    /// tokens must be for, checked by the API server's TokenReview (repeat for several; Istio's agent asks
    /// for its projected token with `istio-ca`).
    #[arg(long, value_name = "AUDIENCE", default_value = pilot_kube::review::DEFAULT_AUDIENCE)]
    token_audience: Vec<String>,
    /// The trust domain of the mesh's identities (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT).
    #[arg(long, default_value = pilot_ca::DEFAULT_TRUST_DOMAIN)]
    trust_domain: String,
    /// The mesh CA's directory, Istio's plugged-in CA layout (ca-cert.pem, ca-key.pem, optional
    /// root-cert.pem and cert-chain.pem); an empty directory gets a self-signed root that restarts keep
    /// (written as ca-cert.pem, ca-key.pem and root-cert.pem). Without it, a self-signed root is made at each
    /// start, and there is no secure port.
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// How long workload certificates are valid; each is renewed and pushed at half its lifetime.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    workload_cert_ttl: Duration,
    /// The hub's service port, HOST:PORT (e.g. sextant-hub.sextant-system.svc.cluster.local:9091), as
    /// Istio's mixerCheckServer/mixerReportServer: sidecars get its cluster (HTTP/2) and call it, the
    /// Sextant proxy through its hub filter, Envoy through ext_authz and a gRPC access log. It must be a
    /// service port of the registry (a ServiceEntry or a Kubernetes Service); until it is, nothing calls
    /// the hub.
    #[arg(long, value_name = "HOST:PORT")]
    hub_service: Option<HubService>,
    /// The validating admission webhook's listen address (istiod's 15017): `POST /validate` judges Istio's
    /// and Sextant's kinds as `sextant validate` does, over HTTPS with a certificate of the mesh CA (its
    /// root-cert.pem is the webhook configuration's caBundle). Only with --ca-dir.
    #[arg(long, value_name = "ADDR", requires = "ca_dir")]
    webhook_addr: Option<SocketAddr>,
    /// The names the webhook's certificate carries: the webhook Service's (comma-separated).
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "sextant-pilot.sextant-system.svc"
    )]
    webhook_dns_names: Vec<String>,
    /// With --webhook-addr: also serve the sidecar injector (`POST /inject`, istiod's), which adds to each Pod
    /// it is asked about a `sextant proxy-init` init container and a `sextant proxy` container of this image
    /// (whose entrypoint is the sextant binary); `sextant kube inject` shows what it adds.
    #[arg(long, value_name = "IMAGE", requires = "webhook_addr")]
    inject_image: Option<String>,
    /// The injected containers' imagePullPolicy (Kubernetes' default when not given).
    #[arg(long, value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    inject_pull_policy: Option<String>,
    /// Where injected sidecars reach pilot's secure port (xDS and certificates). Default:
    /// https://FIRST-WEBHOOK-DNS-NAME:PORT, PORT the secure port's (15012 when it is chosen at random).
    #[arg(long, value_name = "URL")]
    inject_xds_address: Option<String>,
}

/// The service registry modes of `--registry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Registry {
    /// ServiceEntries and WorkloadEntries of the configuration directory.
    File,
    /// Kubernetes Services, EndpointSlices and Pods, plus the directory's ServiceEntries.
    Kubernetes,
}

impl PilotArgs {
    /// The secure port's address: `--secure-xds-addr`, else next to the xDS port as istiod's (15010 →
    /// 15012), port 0 when the xDS port is 0; `None` without `--ca-dir`.
    pub fn secure_addr(&self) -> Result<Option<SocketAddr>, crate::Failure> {
        match (&self.ca_dir, self.secure_xds_addr) {
            (Some(_), Some(addr)) => Ok(Some(addr)),
            (Some(_), None) => {
                let port = match self.xds_addr.port() {
                    0 => 0,
                    p => p.checked_add(2).ok_or_else(|| {
                        crate::fail(
                            format!("no port after --xds-addr {}", self.xds_addr),
                            "give --secure-xds-addr",
                        )
                    })?,
                };
                Ok(Some(SocketAddr::new(self.xds_addr.ip(), port)))
            }
            (None, Some(addr)) => Err(crate::fail(
                format!(
                    "--secure-xds-addr {addr}: the secure port needs the mesh CA's directory, whose root-cert.pem proxies check pilot against"
                ),
                "give --ca-dir DIR (an empty directory gets a root)",
            )),
            (None, None) => Ok(None),
        }
    }

    /// How certificate requests on the secure port are authenticated: in Kubernetes mode, the token files
    /// (when `<config-dir>/tokens` exists), then the API server's TokenReview; `None` (the token files
    /// alone) in file mode or without a secure port.
    pub async fn authenticator(
        &self,
    ) -> Result<Option<Arc<dyn pilot_server::secure::Authenticator>>, crate::Failure> {
        use pilot_server::secure::{Authenticator, FirstOf, TokenReviewAuthenticator, TokenStore};
        if self.registry != Registry::Kubernetes || self.secure_addr()?.is_none() {
            return Ok(None);
        }
        let client = pilot_kube::client(self.kubeconfig.as_deref())
            .await
            .map_err(|e| crate::fail(e, "check --kubeconfig (or $KUBECONFIG)"))?;
        let reviewer = pilot_kube::TokenReviewer::new(
            client,
            self.token_audience.clone(),
            pilot_kube::review::REVIEW_TIMEOUT,
        );
        let review: Arc<dyn Authenticator> = Arc::new(TokenReviewAuthenticator::new(reviewer));
        // The files first: they are local and cheap, and an operator's bootstrap token is never sent to
        // the API server (whose audit log may record TokenReview bodies).
        let dir = self.config_dir.join(pilot_server::TOKENS_DIR);
        Ok(Some(if dir.is_dir() {
            Arc::new(FirstOf::new(vec![Arc::new(TokenStore::new(dir)), review]))
        } else {
            review
        }))
    }

    /// The server options; the secure port when `authority` is given, its certificate requests
    /// authenticated by `authenticator` (`None`: the token files).
    /// What the sidecar injector adds, with `--inject-image`.
    fn injector(&self) -> Result<Option<pilot_inject::Options>, crate::Failure> {
        let Some(image) = &self.inject_image else {
            return Ok(None);
        };
        let xds = match &self.inject_xds_address {
            Some(a) => a.clone(),
            None => {
                let host = self.webhook_dns_names.first().cloned().unwrap_or_default();
                let port = self
                    .secure_addr()?
                    .map(|a| a.port())
                    .filter(|p| *p != 0)
                    .unwrap_or(15012);
                format!("https://{host}:{port}")
            }
        };
        if !xds.starts_with("https://") {
            return Err(crate::fail(
                format!("--inject-xds-address {xds}: sidecars reach pilot over TLS"),
                "give an https:// address of pilot's secure port",
            ));
        }
        let mut options = pilot_inject::Options::new(image, &xds);
        options.pull_policy = self.inject_pull_policy.clone();
        options.trust_domain = self.trust_domain.clone();
        if let Some(audience) = self.token_audience.first() {
            options.token_audience = audience.clone();
        }
        Ok(Some(options))
    }

    pub fn options(
        &self,
        authority: Option<&Arc<Authority>>,
        authenticator: Option<Arc<dyn pilot_server::secure::Authenticator>>,
    ) -> Result<pilot_server::PilotOptions, crate::Failure> {
        let secure = match (self.secure_addr()?, authority) {
            (Some(addr), Some(authority)) => Some(pilot_server::SecureOptions {
                addr,
                authority: authority.clone(),
                authenticator,
            }),
            _ => None,
        };
        let webhook = match (self.webhook_addr, authority) {
            (Some(addr), Some(authority)) => Some(pilot_server::webhook::WebhookOptions {
                addr,
                dns_names: self.webhook_dns_names.clone(),
                authority: authority.clone(),
                admissions: vec![Arc::new(crate::admission::HubValidation)],
                injector: self.injector()?.map(Arc::new),
            }),
            _ => None,
        };
        Ok(pilot_server::PilotOptions {
            otlp: self.otlp.options("sextant-pilot")?,
            config_dir: self.config_dir.clone(),
            xds_addr: self.xds_addr,
            monitoring_addr: self.monitoring_addr,
            poll: self.poll_interval,
            debounce: self.debounce,
            max_streams: self.max_streams,
            registry: match self.registry {
                Registry::File => pilot_server::RegistryMode::File,
                Registry::Kubernetes => {
                    // The Pod's name where there is one, made unique per process.
                    let host = std::env::var("POD_NAME")
                        .or_else(|_| std::env::var("HOSTNAME"))
                        .unwrap_or_else(|_| "pilot".to_string());
                    pilot_server::RegistryMode::Kubernetes(pilot_kube::KubeOptions {
                        kubeconfig: self.kubeconfig.clone(),
                        cluster_domain: self.cluster_domain.clone(),
                        debounce: self.debounce,
                        lease: pilot_kube::LeaseOptions {
                            namespace: self
                                .lease_namespace
                                .clone()
                                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                                .unwrap_or_else(|| "default".to_string()),
                            name: pilot_kube::STATUS_LEASE.to_string(),
                            identity: format!("{host}-{}", std::process::id()),
                        },
                    })
                }
            },
            secure,
            webhook,
        })
    }
}

/// Istio-shaped translation of a proxy view ([`ProxyInfo::view`], or [`ProxyInfo::view_with_hub`] with a
/// hub); each identity gets its certificate from the mesh CA, unless its proxies keep their own key
/// ([`ProxyInfo::local_certificate`]: no key is made for them).
pub struct IstioTranslator {
    ca: Arc<Authority>,
    hub: Option<HubService>,
    /// Whether the hub's service was missing from the registry last published (warned about once until it
    /// is found).
    hub_missing: AtomicBool,
}

impl IstioTranslator {
    /// Translation issuing workload certificates from `ca`, sidecars calling the hub at `hub`.
    pub fn new(ca: Arc<Authority>, hub: Option<HubService>) -> Self {
        IstioTranslator {
            ca,
            hub,
            hub_missing: AtomicBool::new(false),
        }
    }

    /// Says once when the hub's service port goes missing from the registry, and when it is found again.
    fn note_hub(&self, hub: &HubService, services: &RegistrySnapshot) {
        let missing = hub.resolve(services).is_none();
        if self.hub_missing.swap(missing, Ordering::Relaxed) == missing {
            return;
        }
        if missing {
            tracing::warn!(hub_service = %hub, "--hub-service names no service port of the registry (a ServiceEntry or Kubernetes Service); sidecars get no hub filters until it does");
        } else {
            tracing::info!(hub_service = %hub, "hub service found; sidecars call the hub");
        }
    }
}

impl pilot_server::Translator for IstioTranslator {
    fn view(&self, proxy: &ProxyInfo) -> ProxyInfo {
        if self.hub.is_some() {
            proxy.view_with_hub()
        } else {
            proxy.view()
        }
    }

    fn translate(
        &self,
        mesh: &MeshConfig,
        services: &RegistrySnapshot,
        proxy: &ProxyInfo,
    ) -> Snapshot {
        let trust_domain = self.ca.trust_domain();
        // A proxy keeping its own key is never made one: no private key leaves pilot for it.
        let issued = proxy.sent_certificates().then(|| {
            self.ca
                .certificate(&proxy.identity(trust_domain))
                .inspect_err(|e| tracing::error!(namespace = %proxy.namespace, service_account = %proxy.service_account, error = %e, "no workload certificate; the proxies' mesh mTLS will not connect"))
                .ok()
        });
        let certificate = issued.flatten();
        let mtls = MeshTls {
            trust_domain,
            certificate: certificate.as_ref().map(|c| WorkloadCertificate {
                chain_pem: &c.chain_pem,
                key_pem: &c.key_pem,
                root_pem: self.ca.root_pem(),
            }),
        };
        let options = Options {
            mtls,
            hub: self.hub.as_ref(),
        };
        pilot_translate::translate_with(mesh, services, proxy, &options)
    }

    fn published(&self, _mesh: &MeshConfig, services: &RegistrySnapshot) {
        if let Some(hub) = &self.hub {
            self.note_hub(hub, services);
        }
    }

    fn renewal_after(&self, after: std::time::SystemTime) -> Option<std::time::SystemTime> {
        self.ca.next_refresh_after(after)
    }
}

/// Runs pilot until the shutdown signal.
pub async fn run(args: &PilotArgs) -> Result<(), crate::Failure> {
    let ca = match &args.ca_dir {
        Some(dir) => Authority::from_dir(dir, &args.trust_domain, args.workload_cert_ttl),
        None => Authority::self_signed(&args.trust_domain, args.workload_cert_ttl),
    }
    .map_err(|e| crate::fail(e, "check --ca-dir and --trust-domain"))?;
    let ca = Arc::new(ca);
    let authenticator = args.authenticator().await?;
    let options = args.options(Some(&ca), authenticator)?;
    let pilot = pilot_server::start(
        options,
        Arc::new(IstioTranslator::new(ca, args.hub_service.clone())),
        crate::shutdown_signal(),
    )
    .await
    .map_err(|e| {
        let hint = match e {
            pilot_server::PilotError::Kube(_) => {
                "check --kubeconfig / --cluster-domain (or $KUBECONFIG)"
            }
            pilot_server::PilotError::ServingCertificate(_) => "check the CA of --ca-dir",
            _ => "pick free ports with --xds-addr / --monitoring-addr / --secure-xds-addr",
        };
        crate::fail(e, hint)
    })?;
    // The secure address last, as https://: readers of the first two addresses keep working.
    let secure = pilot
        .secure_addr
        .map(|a| format!(", secure xDS and certificates on https://{a}"))
        .unwrap_or_default();
    let webhook = pilot
        .webhook_addr
        .map(|a| format!(", admission webhook on https://{a}/validate"))
        .unwrap_or_default();
    let injector = match (pilot.webhook_addr, &args.inject_image) {
        (Some(a), Some(_)) => format!(", sidecar injector on https://{a}/inject"),
        _ => String::new(),
    };
    eprintln!(
        "pilot: xDS on {}, monitoring on http://{}/debug/syncz{secure}{webhook}{injector}",
        pilot.xds_addr, pilot.monitoring_addr
    );
    pilot
        .wait()
        .await
        .map_err(|e| crate::fail(e, "see the log above"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: PilotArgs,
    }

    fn secure(flags: &[&str]) -> Result<Option<SocketAddr>, String> {
        let mut argv = vec!["pilot", "--config-dir", "/nowhere"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv)
            .args
            .secure_addr()
            .map_err(|f| f.message)
    }

    #[test]
    fn the_secure_port_is_next_to_the_xds_port_and_needs_the_ca_directory() {
        let addr = |s: &str| Ok(Some(s.parse().expect("address")));
        assert_eq!(secure(&["--ca-dir", "/ca"]), addr("127.0.0.1:15012"));
        assert_eq!(
            secure(&["--ca-dir", "/ca", "--xds-addr", "0.0.0.0:16010"]),
            addr("0.0.0.0:16012")
        );
        assert_eq!(
            secure(&["--ca-dir", "/ca", "--xds-addr", "127.0.0.1:0"]),
            addr("127.0.0.1:0")
        );
        assert_eq!(
            secure(&["--ca-dir", "/ca", "--secure-xds-addr", "10.0.0.1:443"]),
            addr("10.0.0.1:443")
        );
        assert_eq!(secure(&[]), Ok(None), "no CA directory, no secure port");
        let e = secure(&["--secure-xds-addr", "127.0.0.1:15012"]).expect_err("needs --ca-dir");
        assert!(e.contains("needs the mesh CA's directory"), "{e}");
    }

    #[test]
    fn token_audiences_default_to_istio_ca_and_repeat() {
        let audiences = |flags: &[&str]| {
            let mut argv = vec!["pilot", "--config-dir", "/nowhere"];
            argv.extend_from_slice(flags);
            Cli::parse_from(argv).args.token_audience
        };
        assert_eq!(audiences(&[]), ["istio-ca"]);
        assert_eq!(
            audiences(&["--token-audience", "a", "--token-audience", "b"]),
            ["a", "b"]
        );
    }

    #[tokio::test]
    async fn file_mode_and_no_secure_port_authenticate_by_the_token_files_alone() {
        let args = |flags: &[&str]| {
            let mut argv = vec!["pilot", "--config-dir", "/nowhere"];
            argv.extend_from_slice(flags);
            Cli::parse_from(argv).args
        };
        let kube_no_ca = args(&[
            "--registry",
            "kubernetes",
            "--kubeconfig",
            "/nowhere/kubeconfig",
        ]);
        assert!(matches!(kube_no_ca.authenticator().await, Ok(None)));
        let file = args(&["--ca-dir", "/ca"]);
        assert!(matches!(file.authenticator().await, Ok(None)));
        // Kubernetes mode with the secure port needs the client: a bad kubeconfig says so at start.
        let kube = args(&[
            "--registry",
            "kubernetes",
            "--kubeconfig",
            "/nowhere/kubeconfig",
            "--ca-dir",
            "/ca",
        ]);
        let e = kube.authenticator().await.err().map(|f| f.message);
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("/nowhere/kubeconfig")),
            "{e:?}"
        );
    }
}
