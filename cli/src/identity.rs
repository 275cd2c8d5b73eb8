//! The flags of a workload identity kept in the pod, shared by `sextant proxy` and `sextant agent`: the
//! mesh root, TLS to pilot, the token proving the identity, and the certificate asked for.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Failure, fail};

/// Flags of the workload's own key and certificate.
#[derive(clap::Args)]
pub struct IdentityArgs {
    /// The mesh's trust root (PEM): pilot's certificate is checked against it on an `https://` xDS or CA
    /// address, and it becomes the workload's `ROOTCA` when it keeps its own key.
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
