//! `sextant check`: a native Check client, for people and for tests (its JSON matches
//! tests/python/check_client.py's, field for field).

use std::collections::BTreeMap;

use anyhow::Context;
use sextant_proto::mixer::{
    self, attribute_match::Condition, header_operation, mixer_client::MixerClient,
};

/// TLS to a hub serving it (`sextant hub --tls-cert-file`).
#[derive(clap::Args, Debug, Default)]
pub struct TlsArgs {
    /// Call the hub over TLS, trusting this CA (PEM; the mesh root).
    #[arg(long = "ca-file", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present, for a hub requiring one (with --key-file).
    #[arg(long = "cert-file", value_name = "FILE", requires_all = ["ca_file", "key_file"])]
    cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "key-file", value_name = "FILE", requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
    /// The name the hub's certificate must carry (default: the host of --hub).
    #[arg(long = "server-name", value_name = "NAME", requires = "ca_file")]
    server_name: Option<String>,
}

/// A client TLS configuration made from [`TlsArgs`], and the server name to expect (when set).
pub struct Tls {
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl TlsArgs {
    /// The TLS configuration, or `None` for plain text; an error names the file at fault.
    pub fn config(&self) -> anyhow::Result<Option<Tls>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let Some(ca) = &self.ca_file else {
            return Ok(None);
        };
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_slice_iter(&read(ca)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: not PEM certificates", ca.display()))?;
        if roots.add_parsable_certificates(certs).0 == 0 {
            anyhow::bail!("{}: no CA certificate in it", ca.display());
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("{}: not PEM certificates", cert.display()))?;
                let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                    .with_context(|| format!("{}: no PEM private key", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("the client certificate and key")?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(Tls {
            config: std::sync::Arc::new(config),
            server_name: self.server_name.clone(),
        }))
    }
}

/// A channel to `url` (`http://HOST:PORT`), over TLS when `tls` is given.
async fn connect(url: &str, tls: Option<&Tls>) -> anyhow::Result<tonic::transport::Channel> {
    let Some(tls) = tls else {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
            .with_context(|| format!("{url:?} is not a hub address"))?
            .connect_timeout(std::time::Duration::from_secs(2));
        return Ok(endpoint.connect().await?);
    };
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a hub address"))?;
    let name = tls
        .server_name
        .clone()
        .or_else(|| uri.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_default();
    let pilot_tls = proxy_xds::PilotTls {
        config: tls.config.clone(),
        server_name: rustls::pki_types::ServerName::try_from(name.clone())
            .with_context(|| format!("{name:?} is not a server name"))?,
    };
    let https = url.replacen("http://", "https://", 1);
    let connect = proxy_xds::connect::channel(&https, None, Some(&pilot_tls));
    Ok(
        tokio::time::timeout(std::time::Duration::from_secs(2), connect)
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))??,
    )
}

/// A client of `hub`: one address, or several separated by commas (a fleet of hubs): the call goes to the
/// first that accepts a connection, starting from one picked by this process's id, so calls spread over the
/// fleet and a hub that is gone is passed over.
async fn client(
    hub: &str,
    tls: Option<&Tls>,
) -> anyhow::Result<MixerClient<tonic::transport::Channel>> {
    let urls: Vec<String> = hub
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            if h.starts_with("http") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        })
        .collect();
    if urls.is_empty() {
        anyhow::bail!("--hub names no address");
    }
    let first = std::process::id() as usize % urls.len();
    let mut failures = Vec::new();
    for url in urls.iter().cycle().skip(first).take(urls.len()) {
        match connect(url, tls).await {
            Ok(channel) => return Ok(MixerClient::new(channel)),
            Err(e) => failures.push(format!("{url}: {e:#}")),
        }
    }
    anyhow::bail!("cannot connect to the hub ({})", failures.join("; "))
}

/// Calls Check on `hub` (one address, or a fleet's addresses separated by commas) and returns the decision
/// as JSON.
pub async fn run(
    hub: &str,
    tls: Option<&Tls>,
    bag: &sextant_attributes::Bag,
    compressed: bool,
    quotas: &[(String, i64)],
) -> anyhow::Result<serde_json::Value> {
    let mut client = client(hub, tls).await?;
    let mut req = mixer::CheckRequest {
        quotas: quotas
            .iter()
            .map(|(n, a)| {
                (
                    n.clone(),
                    mixer::QuotaParams {
                        amount: *a,
                        best_effort: false,
                    },
                )
            })
            .collect(),
        ..Default::default()
    };
    if compressed {
        req.compressed = Some(sextant_attributes::to_compressed(bag));
    } else {
        req.attributes = Some(sextant_attributes::to_plain(bag));
    }
    let resp = client
        .check(req)
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(to_json(&resp))
}

/// The JSON summary of a response.
pub fn to_json(resp: &mixer::CheckResponse) -> serde_json::Value {
    let pre = resp.precondition.clone().unwrap_or_default();
    let status = pre.status.unwrap_or_default();
    let ms = |d: Option<&sextant_proto::google::protobuf::Duration>| {
        d.map_or(0, |d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000)
    };
    let mut referenced: Vec<[String; 3]> = pre
        .referenced_attributes
        .unwrap_or_default()
        .attribute_matches
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.map_key.clone(),
                Condition::try_from(m.condition)
                    .unwrap_or_default()
                    .as_str_name()
                    .to_string(),
            ]
        })
        .collect();
    referenced.sort();
    let header_operations: Vec<[String; 4]> = pre
        .header_operations
        .iter()
        .map(|h| {
            [
                header_operation::Target::try_from(h.target)
                    .unwrap_or_default()
                    .as_str_name()
                    .to_string(),
                h.name.clone(),
                h.value.clone(),
                header_operation::Operation::try_from(h.operation)
                    .unwrap_or_default()
                    .as_str_name()
                    .to_string(),
            ]
        })
        .collect();
    let quotas: BTreeMap<_, _> = resp
        .quotas
        .iter()
        .map(|(n, q)| {
            (
                n.clone(),
                serde_json::json!({"granted": q.granted_amount, "error": q.error}),
            )
        })
        .collect();
    serde_json::json!({
        "code": status.code,
        "message": status.message,
        "valid_duration_ms": ms(pre.valid_duration.as_ref()),
        "valid_use_count": pre.valid_use_count,
        "referenced": referenced,
        "config_revision": pre.config_revision,
        "direct_response": pre.direct_response.map(|d| serde_json::json!({"http_status": d.http_status, "body": d.body})),
        "header_operations": header_operations,
        "quotas": quotas,
    })
}
