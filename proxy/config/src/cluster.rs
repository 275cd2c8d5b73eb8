//! Clusters: where a route or TCP proxy sends traffic, and how the hosts are chosen and protected.

use std::net::SocketAddr;
use std::time::Duration;

use prost::Name;
use sextant_proto::envoy::config::cluster::v3 as pb;
use sextant_proto::envoy::extensions::upstreams::http::v3 as upstream_http;
use sextant_proto::google::protobuf::Any;

use crate::endpoint::{self, Locality};
use crate::error::{Partial, at, within};
use crate::{decode_payload, duration};

/// The key of upstream HTTP protocol options in `typed_extension_protocol_options`.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Its name (`outbound|9080||reviews.default.svc.cluster.local`, `PassthroughCluster`, …).
    pub name: String,
    /// Where its hosts come from.
    pub discovery: Discovery,
    /// How long a connection may take to establish.
    pub connect_timeout: Duration,
    /// How a host is chosen.
    pub lb: LbPolicy,
    /// Limits on the cluster's connections and requests.
    pub limits: Limits,
    /// The protocol spoken to its hosts for HTTP.
    pub protocol: Protocol,
    /// Upstream connection lifetimes.
    pub http: HttpOptions,
    /// Ejection of failing hosts.
    pub outlier: Option<Outlier>,
    /// Below this percentage of healthy hosts, all hosts take traffic (Envoy's default: 50).
    pub panic_threshold: f64,
    /// TLS originated to the hosts.
    pub tls: Option<crate::tls::UpstreamTls>,
    /// The source address of its connections (`upstream_bind_config`; any port): Istio's 127.0.0.6 on
    /// `InboundPassthroughCluster`, which istio-init's rules let through instead of capturing again.
    pub bind: Option<std::net::IpAddr>,
}

/// Outlier detection: hosts failing in a row are ejected for a growing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlier {
    /// Consecutive 5xx (or connection failures) that eject a host, and the percent chance it is enforced.
    pub consecutive_5xx: (u32, u32),
    /// Consecutive 502/503/504 (or connection failures) that eject a host, and the percent chance it is enforced.
    pub consecutive_gateway: (u32, u32),
    /// How often ejections are reviewed.
    pub interval: Duration,
    /// A host's ejection lasts this times the number of times it was ejected...
    pub base_ejection_time: Duration,
    /// ...up to this.
    pub max_ejection_time: Duration,
    /// At most this percent of hosts are ejected at once (at least one host always may be).
    pub max_ejection_percent: u32,
}

/// Where a cluster's hosts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Listed in the cluster (STATIC).
    Static(Vec<Locality>),
    /// From EDS, under this name.
    Eds(String),
    /// The original destination of the downstream connection (ORIGINAL_DST).
    OriginalDst,
    /// Host names resolved by DNS every `refresh`: every address of each (STRICT_DNS), or the first address
    /// of the first name (LOGICAL_DNS).
    Dns {
        /// The names and ports.
        targets: Vec<(String, u16)>,
        /// LOGICAL_DNS.
        logical: bool,
        /// How often names are resolved again (Envoy's default `dns_refresh_rate`: 5 s).
        refresh: Duration,
    },
}

/// How a host is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// The less loaded of `choices` random hosts (power of two choices by default).
    LeastRequest {
        /// Hosts compared per pick.
        choices: u32,
    },
    /// Uniformly at random (weighted).
    Random,
    /// The original destination (only with ORIGINAL_DST).
    ClusterProvided,
    /// Consistent hashing on a ring of at least `min` and at most `max` entries.
    RingHash {
        /// Smallest ring.
        min: u64,
        /// Largest ring.
        max: u64,
    },
    /// Maglev consistent hashing with a table of `size` entries (a prime).
    Maglev {
        /// Table size.
        size: u64,
    },
}

/// Circuit-breaker thresholds (Envoy's defaults when unset: 1024, 1024, 1024, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections to the cluster.
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// The HTTP version spoken upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (Envoy's default).
    Http1,
    /// HTTP/2 (prior knowledge on plain text).
    Http2,
}

/// Upstream connection lifetimes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpOptions {
    /// Close a connection idle this long (Envoy's default: one hour).
    pub idle_timeout: Option<Duration>,
    /// Requests per connection before it is closed.
    pub max_requests_per_connection: Option<u32>,
    /// Close a connection this long after it opened.
    pub max_connection_duration: Option<Duration>,
}

/// Decodes and validates a Cluster resource.
pub fn decode(any: &Any) -> Result<Cluster, crate::Error> {
    crate::resource::<pb::Cluster, _>("Cluster", any, |c| c.name.clone(), cluster)
}

fn cluster(c: &pb::Cluster) -> Partial<Cluster> {
    use pb::cluster::{ClusterDiscoveryType as T, DiscoveryType as D, LbPolicy as L};
    let kind = match &c.cluster_discovery_type {
        Some(T::Type(t)) => {
            D::try_from(*t).or_else(|_| at("type", format!("unknown discovery type {t}")))?
        }
        None => D::Static,
        Some(T::ClusterType(_)) => {
            return at("cluster_type", "custom cluster types are not implemented");
        }
    };
    let discovery = match kind {
        D::Static => {
            let Some(assignment) = &c.load_assignment else {
                // BlackHoleCluster: a static cluster with no hosts.
                return finish(c, Discovery::Static(Vec::new()));
            };
            Discovery::Static(within("load_assignment", endpoint::localities(assignment))?)
        }
        D::Eds => {
            let name = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .unwrap_or_default();
            Discovery::Eds(if name.is_empty() {
                c.name.clone()
            } else {
                name
            })
        }
        D::OriginalDst => Discovery::OriginalDst,
        D::StrictDns | D::LogicalDns => {
            let Some(assignment) = &c.load_assignment else {
                return at(
                    "load_assignment",
                    "a DNS cluster needs the names to resolve",
                );
            };
            let targets = within("load_assignment", endpoint::dns_targets(assignment))?;
            if targets.is_empty() {
                return at("load_assignment", "a DNS cluster needs at least one name");
            }
            Discovery::Dns {
                targets,
                logical: kind == D::LogicalDns,
                refresh: Duration::from_secs(5),
            }
        }
    };
    if c.load_assignment.is_some()
        && !matches!(discovery, Discovery::Static(_) | Discovery::Dns { .. })
    {
        return at(
            "load_assignment",
            "only STATIC and DNS clusters take an inline load_assignment",
        );
    }
    let lb = match L::try_from(c.lb_policy) {
        Ok(L::RoundRobin) => LbPolicy::RoundRobin,
        Ok(L::LeastRequest) => LbPolicy::LeastRequest { choices: 2 },
        Ok(L::Random) => LbPolicy::Random,
        Ok(L::ClusterProvided) => LbPolicy::ClusterProvided,
        _ => {
            return at(
                "lb_policy",
                format!("lb_policy {} is not implemented yet", c.lb_policy),
            );
        }
    };
    let lb = match (&c.lb_config, lb) {
        (None, lb) => lb,
        (Some(pb::cluster::LbConfig::LeastRequestLbConfig(l)), LbPolicy::LeastRequest { .. }) => {
            let choices = l.choice_count.as_ref().map_or(2, |c| c.value);
            if choices < 2 {
                return at("least_request_lb_config.choice_count", "must be at least 2");
            }
            LbPolicy::LeastRequest { choices }
        }
        (Some(pb::cluster::LbConfig::RingHashLbConfig(r)), LbPolicy::RingHash { min, max }) => {
            if r.hash_function != 0 {
                return at(
                    "ring_hash_lb_config.hash_function",
                    "only XX_HASH is implemented",
                );
            }
            let min = r.minimum_ring_size.as_ref().map_or(min, |v| v.value);
            let max = r.maximum_ring_size.as_ref().map_or(max, |v| v.value);
            if min == 0 || min > max || max > 8 * 1024 * 1024 {
                return at(
                    "ring_hash_lb_config",
                    "ring sizes must satisfy 0 < minimum <= maximum <= 8M",
                );
            }
            LbPolicy::RingHash { min, max }
        }
        (Some(pb::cluster::LbConfig::MaglevLbConfig(m)), LbPolicy::Maglev { size }) => {
            let size = m.table_size.as_ref().map_or(size, |v| v.value);
            if !is_prime(size) || size > 5_000_011 {
                return at(
                    "maglev_lb_config.table_size",
                    format!("{size} must be a prime up to 5000011"),
                );
            }
            LbPolicy::Maglev { size }
        }
        _ => return at("lb_config", "this lb_config does not go with the lb_policy"),
    };
    if (lb == LbPolicy::ClusterProvided) != matches!(discovery, Discovery::OriginalDst) {
        return at(
            "lb_policy",
            "CLUSTER_PROVIDED goes with ORIGINAL_DST clusters, and only with them",
        );
    }
    let mut cluster = finish(c, discovery)?;
    cluster.lb = lb;
    Ok(cluster)
}

/// The parts every kind of cluster has.
fn finish(c: &pb::Cluster, discovery: Discovery) -> Partial<Cluster> {
    let connect_timeout = match &c.connect_timeout {
        Some(d) => within("connect_timeout", duration(d))?,
        None => Duration::from_secs(5),
    };
    if connect_timeout.is_zero() {
        return at("connect_timeout", "must be above zero");
    }
    let limits = match &c.circuit_breakers {
        None => Limits::default(),
        Some(b) => {
            let [t] = b.thresholds.as_slice() else {
                return at(
                    "circuit_breakers.thresholds",
                    "exactly one (DEFAULT priority) threshold is implemented",
                );
            };
            if t.priority != 0 {
                return at(
                    "circuit_breakers.thresholds[0].priority",
                    "only DEFAULT priority is implemented",
                );
            }
            let d = Limits::default();
            let get = |v: &Option<u32>, default: u32| v.unwrap_or(default);
            Limits {
                max_connections: get(
                    &t.max_connections.as_ref().map(|v| v.value),
                    d.max_connections,
                ),
                max_pending_requests: get(
                    &t.max_pending_requests.as_ref().map(|v| v.value),
                    d.max_pending_requests,
                ),
                max_requests: get(&t.max_requests.as_ref().map(|v| v.value), d.max_requests),
                max_retries: get(&t.max_retries.as_ref().map(|v| v.value), d.max_retries),
            }
        }
    };
    let (mut protocol, mut http) = (Protocol::Http1, HttpOptions::default());
    for (key, any) in &c.typed_extension_protocol_options {
        let path = format!("typed_extension_protocol_options[{key:?}]");
        if key != HTTP_PROTOCOL_OPTIONS {
            return at(
                path,
                format!("protocol options {key:?} are not implemented"),
            );
        }
        (protocol, http) = within(&path, http_options(any))?;
    }
    let outlier = match &c.outlier_detection {
        Some(o) => Some(within("outlier_detection", outlier(o))?),
        None => None,
    };
    let panic_threshold = match c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    {
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value,
        Some(p) => {
            return at(
                "common_lb_config.healthy_panic_threshold",
                format!("{} is not a percentage", p.value),
            );
        }
        None => 50.0,
    };
    let tls = match &c.transport_socket {
        Some(t) => Some(within("transport_socket", crate::tls::upstream(t))?),
        None => None,
    };
    let bind = match &c.upstream_bind_config {
        None => None,
        Some(b) => {
            let source = b.source_address.as_ref();
            let Some(address) = source.and_then(|s| s.address.parse().ok()) else {
                return at(
                    "upstream_bind_config.source_address.address",
                    "an IP address is required",
                );
            };
            if source.is_some_and(|s| {
                !matches!(
                    s.port_specifier,
                    None | Some(sextant_proto::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(0))
                )
            }) {
                return at(
                    "upstream_bind_config.source_address.port_value",
                    "only port 0 (any) is supported",
                );
            }
            Some(address)
        }
    };
    Ok(Cluster {
        tls,
        bind,
        name: c.name.clone(),
        discovery,
        connect_timeout,
        lb: LbPolicy::RoundRobin,
        limits,
        protocol,
        http,
        outlier,
        panic_threshold,
    })
}

fn outlier(o: &pb::OutlierDetection) -> Partial<Outlier> {
    let percent =
        |v: &Option<sextant_proto::google::protobuf::UInt32Value>, default: u32, path: &str| {
            let v = v.as_ref().map_or(default, |v| v.value);
            if v > 100 {
                at(path, format!("{v} is not a percentage"))
            } else {
                Ok(v)
            }
        };
    // Success-rate and failure-percentage ejection are not implemented: refused unless turned off, as pilot
    // turns them off.
    if percent(&o.enforcing_success_rate, 100, "enforcing_success_rate")? != 0 {
        return at(
            "enforcing_success_rate",
            "success-rate ejection is not implemented; set it to 0",
        );
    }
    let d = |v: &Option<sextant_proto::google::protobuf::Duration>,
             default: Duration,
             path: &str| match v {
        Some(v) => within(path, duration(v)),
        None => Ok(default),
    };
    let interval = d(&o.interval, Duration::from_secs(10), "interval")?;
    let base_ejection_time = d(
        &o.base_ejection_time,
        Duration::from_secs(30),
        "base_ejection_time",
    )?;
    let max_ejection_time = d(
        &o.max_ejection_time,
        Duration::from_secs(300),
        "max_ejection_time",
    )?;
    if interval.is_zero() || base_ejection_time.is_zero() {
        return at(
            "interval",
            "interval and base_ejection_time must be above zero",
        );
    }
    Ok(Outlier {
        consecutive_5xx: (
            o.consecutive_5xx.as_ref().map_or(5, |v| v.value),
            percent(
                &o.enforcing_consecutive_5xx,
                100,
                "enforcing_consecutive_5xx",
            )?,
        ),
        consecutive_gateway: (
            o.consecutive_gateway_failure
                .as_ref()
                .map_or(5, |v| v.value),
            percent(
                &o.enforcing_consecutive_gateway_failure,
                0,
                "enforcing_consecutive_gateway_failure",
            )?,
        ),
        interval,
        base_ejection_time,
        max_ejection_time: max_ejection_time.max(base_ejection_time),
        max_ejection_percent: percent(&o.max_ejection_percent, 10, "max_ejection_percent")?,
    })
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn http_options(any: &Any) -> Partial<(Protocol, HttpOptions)> {
    use upstream_http::http_protocol_options::{
        UpstreamProtocolOptions as U, explicit_http_config::ProtocolConfig as P,
    };
    if !any.type_url.ends_with(&format!(
        "/{}",
        upstream_http::HttpProtocolOptions::full_name()
    )) {
        return at(
            "",
            format!("expected HttpProtocolOptions, not {}", any.type_url),
        );
    }
    let o: upstream_http::HttpProtocolOptions = decode_payload(any)?;
    let protocol = match &o.upstream_protocol_options {
        Some(U::ExplicitHttpConfig(e)) => match &e.protocol_config {
            Some(P::Http2ProtocolOptions(_)) => Protocol::Http2,
            Some(P::HttpProtocolOptions(_)) | None => Protocol::Http1,
            Some(_) => {
                return at(
                    "explicit_http_config",
                    "HTTP/3 upstreams are not implemented",
                );
            }
        },
        Some(_) => {
            return at(
                "upstream_protocol_options",
                "only explicit_http_config is implemented",
            );
        }
        None => Protocol::Http1,
    };
    let mut http = HttpOptions::default();
    if let Some(common) = &o.common_http_protocol_options {
        if let Some(d) = &common.idle_timeout {
            http.idle_timeout = Some(within(
                "common_http_protocol_options.idle_timeout",
                duration(d),
            )?)
            .filter(|d| !d.is_zero());
        }
        if let Some(d) = &common.max_connection_duration {
            http.max_connection_duration = Some(within(
                "common_http_protocol_options.max_connection_duration",
                duration(d),
            )?)
            .filter(|d| !d.is_zero());
        }
        http.max_requests_per_connection = common
            .max_requests_per_connection
            .as_ref()
            .map(|v| v.value)
            .filter(|v| *v > 0);
    }
    Ok((protocol, http))
}

impl Cluster {
    /// The hosts listed in the cluster itself (STATIC), if any.
    pub fn static_hosts(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let localities: &[Locality] = match &self.discovery {
            Discovery::Static(l) => l,
            _ => &[],
        };
        localities
            .iter()
            .flat_map(|l| l.endpoints.iter().map(|e| e.address))
    }
}
