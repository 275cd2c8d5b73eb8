//! The flags of a workload identity kept in the pod, shared by `sextant proxy`, `sextant agent` and
//! `sextant hub`: the mesh root, TLS to pilot, the token proving the identity, and the certificate asked for;
//! and, for the hub, the certificates handed to its gRPC port ([`HubCertificates`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::{Failure, fail};

/// Flags of the workload's own key and certificate.
#[derive(clap::Args)]
pub struct IdentityArgs {
    /// The mesh's trust root (PEM): pilot's certificate is checked against it on an `https://` xDS or CA
    /// address, and it becomes the workload's `ROOTCA` when it keeps its own key (the hub's client CA).
    #[arg(long, env = "SEXTANT_ROOT_CERT")]
    pub root_cert: Option<PathBuf>,
    /// The name pilot's certificate must carry.
    #[arg(long, default_value = "istiod.istio-system.svc")]
    pub pilot_san: String,
    /// Make the workload's private key here and get its certificate from pilot's certificate API with a CSR,
    /// proving the identity with the bearer token in this file (the key never leaves; pilot sends none).
    /// Needs --root-cert.
    #[arg(long, env = "SEXTANT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Pilot's certificate API, `https://HOST:PORT` (default: the xDS address, which must then be TLS).
    #[arg(long, env = "CA_ADDR")]
    pub ca_addr: Option<String>,
    /// The mesh's trust domain (the identity asked for is `spiffe://DOMAIN/ns/NAMESPACE/sa/ACCOUNT`).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// The certificate lifetime asked for (pilot may give less); renewed at half of it.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub cert_lifetime: Duration,
}

impl IdentityArgs {
    /// TLS to pilot from `--root-cert`, with the root's PEM; `None` without it.
    pub fn pilot_tls(&self) -> Result<Option<(proxy_xds::PilotTls, String)>, Failure> {
        let Some(path) = &self.root_cert else {
            return Ok(None);
        };
        let hint = "give --root-cert pilot's root-cert.pem";
        let pem = std::fs::read(path).map_err(|e| {
            fail(
                format!("cannot read the mesh root {}: {e}", path.display()),
                hint,
            )
        })?;
        let tls = proxy_xds::PilotTls::new(&pem, &self.pilot_san)
            .map_err(|e| fail(format!("{}: {e}", path.display()), hint))?;
        Ok(Some((tls, String::from_utf8_lossy(&pem).into_owned())))
    }

    /// How to get the certificate of `namespace`/`account`, when `--token-file` asks for one; the
    /// certificate API is `--ca-addr`, else `xds` (when it is TLS).
    pub fn settings(
        &self,
        tls: Option<(proxy_xds::PilotTls, String)>,
        xds: Option<&str>,
        namespace: &str,
        account: &str,
        mark: Option<u32>,
    ) -> Result<Option<proxy_identity::Settings>, Failure> {
        let Some(token_file) = &self.token_file else {
            return Ok(None);
        };
        let Some((tls, root_pem)) = tls else {
            return Err(fail(
                "--token-file needs the mesh root to check pilot and peers",
                "give --root-cert pilot's root-cert.pem",
            ));
        };
        let ca = self
            .ca_addr
            .clone()
            .or_else(|| xds.map(str::to_string))
            .unwrap_or_default();
        if !ca.starts_with("https://") {
            return Err(fail(
                format!("the certificate API {ca:?} is not TLS"),
                "give --ca-addr https://PILOT:15012 (or an https:// --xds-addr)",
            ));
        }
        Ok(Some(proxy_identity::Settings {
            endpoint: ca,
            tls,
            mark,
            root_pem,
            spiffe_id: format!("spiffe://{}/ns/{namespace}/sa/{account}", self.trust_domain),
            token_file: token_file.clone(),
            lifetime: self.cert_lifetime,
        }))
    }
}

/// The hub's serving certificates from pilot's CA (`sextant hub --token-file`): how to obtain them, and the
/// channel each new one goes to the hub through.
pub struct HubCertificates {
    settings: proxy_identity::Settings,
    publish: watch::Sender<Option<hub_server::ServingCertificate>>,
}

impl HubCertificates {
    /// The certificates of `namespace`/`account` from the flags (`--token-file` given), and the hub's side:
    /// the source of its serving certificate, empty until the first comes.
    pub fn new(
        args: &IdentityArgs,
        namespace: &str,
        account: &str,
    ) -> Result<(HubCertificates, hub_server::CertificateSource), Failure> {
        if args.ca_addr.is_none() {
            return Err(fail(
                "--token-file needs pilot's certificate API",
                "give --ca-addr https://PILOT:15012 (pilot's secure port)",
            ));
        }
        let tls = args.pilot_tls()?;
        let Some(settings) = args.settings(tls, None, namespace, account, None)? else {
            return Err(fail(
                "the hub's certificate from pilot needs --token-file",
                "give --token-file, --root-cert and --ca-addr",
            ));
        };
        let (publish, certificates) = watch::channel(None);
        let from = format!("pilot {} for {}", settings.endpoint, settings.spiffe_id);
        let source = hub_server::CertificateSource::Handed { certificates, from };
        Ok((HubCertificates { settings, publish }, source))
    }

    /// Obtains the first certificate and renews it at half life, under supervision, until the process ends
    /// (in the runtime): each one that makes a serving certificate goes to the hub; one that does not is
    /// logged and asked for again, the previous one serving meanwhile. Failures are logged (`no workload
    /// certificate`, with pilot's answer) and retried with backoff.
    pub fn start(self) {
        let publish = self.publish;
        let sink: proxy_identity::Sink = Arc::new(move |cert: &proxy_identity::Certificate| {
            let serving = hub_server::ServingCertificate::from_pem(
                cert.chain_pem.as_bytes(),
                cert.key_pem.as_bytes(),
            )
            .map_err(|e| e.to_string())?;
            publish.send_replace(Some(serving));
            Ok(())
        });
        let health = Arc::new(sextant_supervise::TaskHealth::default());
        proxy_identity::run(self.settings, sink, &proxy_stats::Stats::new(), health);
    }
}
