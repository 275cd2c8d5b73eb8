//! `sextant check`: a native Check client, for people and for tests (its JSON matches
//! tests/python/check_client.py's, field for field).

use std::collections::BTreeMap;

use anyhow::Context;
use sextant_proto::mixer::{
    self, attribute_match::Condition, header_operation, mixer_client::MixerClient,
};

/// A client of `hub`: one address, or several separated by commas (a fleet of hubs): the call goes to the
/// first that accepts a connection, starting from one picked by this process's id, so calls spread over the
/// fleet and a hub that is gone is passed over.
async fn client(hub: &str) -> anyhow::Result<MixerClient<tonic::transport::Channel>> {
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
        let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
            .with_context(|| format!("{url:?} is not a hub address"))?
            .connect_timeout(std::time::Duration::from_secs(2));
        match endpoint.connect().await {
            Ok(channel) => return Ok(MixerClient::new(channel)),
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    anyhow::bail!("cannot connect to the hub ({})", failures.join("; "))
}

/// Calls Check on `hub` (one address, or a fleet's addresses separated by commas) and returns the decision
/// as JSON.
pub async fn run(
    hub: &str,
    bag: &sextant_attributes::Bag,
    compressed: bool,
    quotas: &[(String, i64)],
) -> anyhow::Result<serde_json::Value> {
    let mut client = client(hub).await?;
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
