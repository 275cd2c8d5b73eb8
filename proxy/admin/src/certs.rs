//! Envoy's `/certs`: per TLS context in use, its CA certificates and its certificate chain, with serial
//! numbers, SANs and validity, from the SDS secrets and inline material held.

use std::collections::BTreeSet;

use proxy_config::secret::SecretValue;
use proxy_config::tls::{Certificate, Source, TlsContext};
use proxy_state::Snapshot;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// The `/certs` document of `snapshot`.
pub(crate) fn certs(snapshot: &Snapshot) -> serde_json::Value {
    let contexts: Vec<&TlsContext> = snapshot
        .clusters
        .values()
        .filter_map(|c| c.config().tls.as_ref().map(|t| &t.context))
        .chain(
            snapshot
                .listeners
                .values()
                .flat_map(|l| l.filter_chains.iter().chain(l.default_chain.as_ref()))
                .filter_map(|c| c.tls.as_ref().map(|t| &t.context)),
        )
        .collect();
    // One entry per distinct (certificate, roots) pair, as contexts sharing them show the same.
    let mut seen = BTreeSet::new();
    let mut certificates = Vec::new();
    for ctx in contexts {
        let chain = match &ctx.certificate {
            Some(Certificate::Sds(name)) => secret_pem(snapshot, name, false),
            Some(Certificate::Pair {
                chain: Source::Inline(pem),
                ..
            }) => Some(pem.clone()),
            Some(Certificate::Pair {
                chain: Source::Sds(name),
                ..
            }) => secret_pem(snapshot, name, false),
            _ => None,
        };
        let roots = match ctx.validation.as_ref().map(|v| &v.roots) {
            Some(Source::Sds(name)) => secret_pem(snapshot, name, true),
            Some(Source::Inline(pem)) => Some(pem.clone()),
            _ => None,
        };
        if !seen.insert((chain.clone(), roots.clone())) {
            continue;
        }
        certificates.push(serde_json::json!({
            "ca_cert": roots.as_deref().map(describe).unwrap_or_default(),
            "cert_chain": chain.as_deref().map(describe).unwrap_or_default(),
        }));
    }
    serde_json::json!({ "certificates": certificates })
}

fn secret_pem(snapshot: &Snapshot, name: &str, roots: bool) -> Option<Vec<u8>> {
    match (&snapshot.secrets.get(name)?.value, roots) {
        (SecretValue::Certificate { chain, .. }, false) => Some(chain.clone()),
        (SecretValue::Roots(pem), true) => Some(pem.clone()),
        _ => None,
    }
}

/// Each certificate of a PEM bundle as Envoy describes it.
fn describe(pem: &[u8]) -> Vec<serde_json::Value> {
    Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .filter_map(|p| {
            let cert = p.parse_x509().ok()?;
            let serial = cert.tbs_certificate.raw_serial();
            // As Envoy prints serials: lowercase hex without the sign byte.
            let serial: String = serial
                .iter()
                .skip_while(|b| **b == 0)
                .map(|b| format!("{b:02x}"))
                .collect();
            let sans: Vec<serde_json::Value> = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::URI(u) => Some(serde_json::json!({"uri": u})),
                            GeneralName::DNSName(d) => Some(serde_json::json!({"dns": d})),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let not_after = cert.validity().not_after.timestamp();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            Some(serde_json::json!({
                "serial_number": serial,
                "subject_alt_names": sans,
                "days_until_expiration": ((not_after - now) / 86_400).max(0).to_string(),
                "valid_from": cert.validity().not_before.to_rfc2822().unwrap_or_default(),
                "expiration_time": cert.validity().not_after.to_rfc2822().unwrap_or_default(),
            }))
        })
        .collect()
}
