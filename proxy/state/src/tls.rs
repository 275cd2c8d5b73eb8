//! The TLS configurations a snapshot's clusters and filter chains need, built from their contexts and the
//! secrets held: all built before any is installed, so a refused update changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use proxy_balance::Cluster;
use proxy_stats::{Scope, Stats};
use proxy_tls::ServerTls;
use proxy_tls::rustls::ClientConfig;
use proxy_tls::{Unready, client_config, server_config};

use crate::Snapshot;

/// Per listener, per filter chain (the default chain last), the server configuration of chains that
/// terminate TLS: `None` for a plain chain or one whose secrets have not come.
pub type DownstreamTls = HashMap<String, Vec<Option<ServerTls>>>;

/// The client configurations to install, per cluster that originates TLS.
pub(crate) type UpstreamTls = Vec<(Arc<Cluster>, Option<Arc<ClientConfig>>)>;

/// Builds every TLS configuration `next` needs; an unusable certificate, key or root refuses the update.
pub(crate) fn build(
    next: &Snapshot,
    stats: &Stats,
) -> Result<(UpstreamTls, DownstreamTls), String> {
    let mut upstream = Vec::new();
    for cluster in next.clusters.values() {
        if let Some(tls) = &cluster.config().tls {
            let built = client_config(
                tls,
                &next.secrets,
                cluster.stats().ssl_fail_verify_san.clone(),
            );
            upstream.push((
                cluster.clone(),
                ready(
                    built,
                    &format!("Cluster {:?}: transport_socket", cluster.config().name),
                )?,
            ));
        }
    }
    let mut downstream = HashMap::new();
    for (name, listener) in &next.listeners {
        let scope = Scope::Listener(listener.stat_name());
        let chains = listener
            .filter_chains
            .iter()
            .chain(listener.default_chain.as_ref());
        let mut configs = Vec::new();
        for (i, chain) in chains.enumerate() {
            configs.push(match &chain.tls {
                None => None,
                Some(tls) => {
                    let built = server_config(
                        tls,
                        &next.secrets,
                        stats.counter(&scope, "ssl.fail_verify_san"),
                    );
                    ready(
                        built,
                        &format!("Listener {name:?}: filter chain {i}: transport_socket"),
                    )?
                }
            });
        }
        downstream.insert(name.clone(), configs);
    }
    Ok((upstream, downstream))
}

/// A configuration built, or `None` while a secret has not come; an error for unusable material.
fn ready<T>(built: Result<T, Unready>, what: &str) -> Result<Option<T>, String> {
    match built {
        Ok(c) => Ok(Some(c)),
        Err(Unready::Waiting(name)) => {
            tracing::debug!(what, secret = %name, "TLS waits for an SDS secret");
            Ok(None)
        }
        Err(Unready::Invalid(why)) => Err(format!("{what}: {why}")),
    }
}
