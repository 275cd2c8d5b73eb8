//! DNS clusters: their names resolved now and every refresh interval, the addresses becoming the cluster's
//! hosts (all of them for STRICT_DNS, the first for LOGICAL_DNS). A failed resolution keeps the hosts of the
//! last good one, as Envoy does. A name with IPv4 addresses uses those only (Envoy's `V4_PREFERRED`; its
//! default `AUTO` prefers IPv6, which sends `localhost` to `::1` where most local services do not listen).

use std::net::SocketAddr;
use std::sync::Weak;

use proxy_config::cluster::Discovery;
use proxy_config::endpoint::{Endpoint, Locality};

use crate::Cluster;

/// Resolves `cluster`'s names until the cluster is dropped (a configuration no longer has it).
pub async fn follow(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let Discovery::Dns {
            targets,
            logical,
            refresh,
        } = c.config().discovery.clone()
        else {
            return;
        };
        let mut addresses: Vec<SocketAddr> = Vec::new();
        let mut failed = false;
        for (host, port) in targets.iter().take(if logical { 1 } else { usize::MAX }) {
            match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(found) => {
                    let found: Vec<SocketAddr> = found.collect();
                    let v4 = found.iter().any(SocketAddr::is_ipv4);
                    for a in found.into_iter().filter(|a| a.is_ipv4() || !v4) {
                        if !addresses.contains(&a) {
                            addresses.push(a);
                        }
                    }
                }
                Err(e) => {
                    failed = true;
                    c.stats().update_failure.inc();
                    tracing::debug!(cluster = %c.config().name, %host, error = %e, "DNS resolution failed");
                }
            }
        }
        if logical {
            addresses.truncate(1);
        }
        if !(failed && addresses.is_empty()) {
            let endpoints = addresses
                .into_iter()
                .map(|address| Endpoint {
                    address,
                    weight: 1,
                    healthy: true,
                })
                .collect();
            c.set_endpoints(&[Locality {
                name: Default::default(),
                weight: 1,
                endpoints,
            }]);
        }
        drop(c);
        tokio::time::sleep(refresh).await;
    }
}
