//! A DestinationRule's traffic policy for one cluster: the rule's policy, overridden by its port-level
//! settings, then by the subset's policy and the subset's port-level settings (each section replaces the
//! one below it as a whole, as Istio merges them), applied to an Envoy cluster. The `tls` section becomes the
//! cluster's transport socket ([`crate::tls`]).

use pilot_config::DestinationRule;
use pilot_config::types::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHash, LoadBalancerSettings,
    OutlierDetection, SimpleLb, TrafficPolicy,
};
use sextant_proto::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, circuit_breakers, cluster,
};
use sextant_proto::envoy::config::core::v3::HttpProtocolOptions as CommonHttpOptions;
use sextant_proto::envoy::config::route::v3::route_action::{HashPolicy, hash_policy};
use sextant_proto::envoy::r#type::v3::Percent;
use sextant_proto::google::protobuf::{Duration, UInt32Value, UInt64Value};

/// Istio's connect timeout when the rule sets none.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// The sections of a traffic policy that apply to one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effective {
    /// Load balancing.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing endpoints.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS towards the service.
    pub tls: Option<ClientTlsSettings>,
}

impl Effective {
    /// The policy for `port` of the rule's host, and of `subset` when given.
    pub fn of(rule: Option<&DestinationRule>, subset: Option<&str>, port: u16) -> Effective {
        let mut out = Effective::default();
        let Some(rule) = rule else {
            return out;
        };
        out.overlay(rule.resource.spec.traffic_policy.as_ref(), port);
        if let Some(s) = subset.and_then(|s| rule.subset(s)) {
            out.overlay(s.traffic_policy.as_ref(), port);
        }
        out
    }

    fn overlay(&mut self, policy: Option<&TrafficPolicy>, port: u16) {
        let Some(p) = policy else { return };
        replace(&mut self.load_balancer, &p.load_balancer);
        replace(&mut self.connection_pool, &p.connection_pool);
        replace(&mut self.outlier_detection, &p.outlier_detection);
        replace(&mut self.tls, &p.tls);
        let by_port = p
            .port_level_settings
            .iter()
            .find(|s| s.port.as_ref().is_some_and(|n| n.number == u32::from(port)));
        if let Some(s) = by_port {
            replace(&mut self.load_balancer, &s.load_balancer);
            replace(&mut self.connection_pool, &s.connection_pool);
            replace(&mut self.outlier_detection, &s.outlier_detection);
            replace(&mut self.tls, &s.tls);
        }
    }

    /// Whether the endpoints are the callers' original destinations (`simple: PASSTHROUGH`).
    pub fn passthrough(&self) -> bool {
        self.load_balancer
            .as_ref()
            .is_some_and(|lb| lb.simple == Some(SimpleLb::Passthrough))
    }

    /// The consistent-hash settings, when the policy asks for them.
    pub fn consistent_hash(&self) -> Option<&ConsistentHash> {
        self.load_balancer.as_ref()?.consistent_hash.as_ref()
    }

    /// Sets load balancing, circuit breakers, timeouts and outlier detection on `c`. `grpc_client` picks
    /// round robin as the default (what proxyless gRPC supports everywhere); Envoys get least request.
    pub fn apply(&self, c: &mut Cluster, grpc_client: bool) {
        use cluster::LbPolicy;
        let default_lb = if grpc_client {
            LbPolicy::RoundRobin
        } else {
            LbPolicy::LeastRequest
        };
        let lb = self.load_balancer.as_ref();
        c.lb_policy = match (lb.and_then(|l| l.simple), self.consistent_hash()) {
            (_, Some(hash)) => {
                c.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                    cluster::RingHashLbConfig {
                        minimum_ring_size: hash.minimum_ring_size.map(|v| UInt64Value { value: v }),
                        ..Default::default()
                    },
                ));
                LbPolicy::RingHash
            }
            (Some(SimpleLb::RoundRobin), _) => LbPolicy::RoundRobin,
            (Some(SimpleLb::Random), _) => LbPolicy::Random,
            (Some(SimpleLb::Passthrough), _) => LbPolicy::ClusterProvided,
            _ => default_lb,
        } as i32;

        let pool = self.connection_pool.as_ref();
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        let connect = tcp
            .and_then(|t| t.connect_timeout)
            .map(|d| d.get())
            .unwrap_or(std::time::Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS));
        c.connect_timeout = Some(duration(connect));
        // Istio lifts Envoy's small default limits (1024) to "unlimited" unless the rule sets them.
        let limit = |v: Option<u32>| {
            Some(UInt32Value {
                value: v.unwrap_or(u32::MAX),
            })
        };
        c.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: limit(tcp.and_then(|t| t.max_connections)),
                max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
                max_requests: limit(http.and_then(|h| h.http2_max_requests)),
                max_retries: limit(http.and_then(|h| h.max_retries)),
                track_remaining: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        if let Some(o) = &self.outlier_detection {
            c.outlier_detection = Some(outlier(o));
            if let Some(min) = o.min_health_percent {
                c.common_lb_config = Some(cluster::CommonLbConfig {
                    healthy_panic_threshold: Some(Percent {
                        value: f64::from(min),
                    }),
                    ..Default::default()
                });
            }
        }
    }

    /// Per-connection HTTP options (idle timeout, requests per connection, connection lifetime), when set.
    pub fn common_http_options(&self) -> Option<CommonHttpOptions> {
        let pool = self.connection_pool.as_ref()?;
        let http = pool.http.as_ref();
        let idle = http.and_then(|h| h.idle_timeout);
        let per_conn = http.and_then(|h| h.max_requests_per_connection);
        let lifetime = pool.tcp.as_ref().and_then(|t| t.max_connection_duration);
        if idle.is_none() && per_conn.is_none() && lifetime.is_none() {
            return None;
        }
        Some(CommonHttpOptions {
            idle_timeout: idle.map(|d| duration(d.get())),
            max_requests_per_connection: per_conn.map(|v| UInt32Value { value: v }),
            max_connection_duration: lifetime.map(|d| duration(d.get())),
            ..Default::default()
        })
    }
}

fn replace<T: Clone>(slot: &mut Option<T>, with: &Option<T>) {
    if with.is_some() {
        slot.clone_from(with);
    }
}

fn outlier(o: &OutlierDetection) -> EnvoyOutlier {
    // A consecutive-error count of 0 switches that detector off; any other count is enforced always.
    let enforcing = |v: Option<u32>| {
        v.map(|n| UInt32Value {
            value: if n > 0 { 100 } else { 0 },
        })
    };
    EnvoyOutlier {
        consecutive_5xx: o.consecutive_5xx_errors.map(|value| UInt32Value { value }),
        enforcing_consecutive_5xx: enforcing(o.consecutive_5xx_errors),
        consecutive_gateway_failure: o
            .consecutive_gateway_errors
            .map(|value| UInt32Value { value }),
        enforcing_consecutive_gateway_failure: enforcing(o.consecutive_gateway_errors),
        interval: o.interval.map(|d| duration(d.get())),
        base_ejection_time: o.base_ejection_time.map(|d| duration(d.get())),
        max_ejection_percent: o.max_ejection_percent.map(|value| UInt32Value { value }),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        ..Default::default()
    }
}

/// The route's hash policy for a consistent-hash rule: a header, a cookie (generated with its ttl), the
/// source IP or a query parameter.
pub fn hash_policy(hash: &ConsistentHash) -> Option<HashPolicy> {
    use hash_policy::PolicySpecifier as P;
    let spec = if let Some(h) = &hash.http_header_name {
        P::Header(hash_policy::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &hash.http_cookie {
        P::Cookie(hash_policy::Cookie {
            name: c.name.clone(),
            path: c.path.clone().unwrap_or_default(),
            ttl: c.ttl.map(|d| duration(d.get())),
            ..Default::default()
        })
    } else if hash.use_source_ip == Some(true) {
        P::ConnectionProperties(hash_policy::ConnectionProperties { source_ip: true })
    } else if let Some(q) = &hash.http_query_parameter_name {
        P::QueryParameter(hash_policy::QueryParameter { name: q.clone() })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(spec),
        ..Default::default()
    })
}

/// A protobuf duration.
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
