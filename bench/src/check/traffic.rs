//! The benchmark traffic: every (service, user) pair once (20 × 64 = 1280 variants), in a fixed shuffled
//! order, mostly allowed `GET /api/...` requests, encoded once up front for each front door (and for OPA).

use std::collections::HashMap;
use std::sync::Arc;

use sextant_attributes::{Bag, Value};
use sextant_proto::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use sextant_proto::envoy::service::auth::v3 as authz;
use sextant_proto::envoy::service::ratelimit::v3::RateLimitRequest;
use sextant_proto::mixer;

use crate::config::{SERVICES, USERS, banned_user, is_staff, user_name};

/// One logical request, independent of the wire form.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Destination service index.
    pub service: usize,
    /// User index.
    pub user: usize,
    /// HTTP method.
    pub method: &'static str,
    /// HTTP path.
    pub path: String,
}

impl Variant {
    /// Whether the benchmark policies deny this request.
    pub fn expect_denied(&self) -> bool {
        self.user == banned_user(self.service)
            || (self.path.starts_with("/admin") && !is_staff(self.user))
    }

    fn host(&self) -> String {
        format!("svc-{}.bench.svc.cluster.local", self.service)
    }

    fn principal(&self) -> String {
        format!(
            "spiffe://cluster.local/ns/bench/sa/client-{}",
            self.user % 8
        )
    }

    fn headers(&self) -> HashMap<String, String> {
        let mut h = HashMap::new();
        h.insert(":authority".to_string(), self.host());
        h.insert(":method".to_string(), self.method.to_string());
        h.insert(":path".to_string(), self.path.clone());
        h.insert("x-user".to_string(), user_name(self.user));
        h.insert("user-agent".to_string(), "sextant-bench/0.1".to_string());
        h.insert("accept".to_string(), "application/json".to_string());
        h.insert(
            "x-request-id".to_string(),
            format!("5f0c7d4e-{:04x}-4b1e-9c2a-{:012x}", self.service, self.user),
        );
        h
    }

    /// The attribute bag a native client (a proxy speaking the Mixer API) would send.
    pub fn bag(&self) -> anyhow::Result<Bag> {
        let mut bag = Bag::new();
        let s = |v: String| Value::String(v);
        bag.set_by_name(
            "destination.service.name",
            s(format!("svc-{}", self.service)),
        )?;
        bag.set_by_name("destination.service.namespace", s("bench".to_string()))?;
        bag.set_by_name("source.principal", s(self.principal()))?;
        bag.set_by_name("request.headers", Value::StringMap(self.headers()))?;
        bag.set_by_name("request.method", s(self.method.to_string()))?;
        bag.set_by_name("request.path", s(self.path.clone()))?;
        bag.set_by_name("request.host", s(self.host()))?;
        bag.set_by_name("request.scheme", s("http".to_string()))?;
        bag.set_by_name("request.protocol", s("http".to_string()))?;
        Ok(bag)
    }

    /// The Envoy ext_authz request for the same call.
    pub fn authz(&self) -> authz::CheckRequest {
        use authz::attribute_context::{HttpRequest, Peer, Request};
        let http = HttpRequest {
            method: self.method.to_string(),
            path: self.path.clone(),
            host: self.host(),
            scheme: "http".to_string(),
            protocol: "HTTP/1.1".to_string(),
            headers: self.headers(),
            ..Default::default()
        };
        let mut context_extensions = HashMap::new();
        context_extensions.insert(
            "destination.service.name".to_string(),
            format!("svc-{}", self.service),
        );
        authz::CheckRequest {
            attributes: Some(authz::AttributeContext {
                source: Some(Peer {
                    principal: self.principal(),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(http),
                    ..Default::default()
                }),
                context_extensions,
                ..Default::default()
            }),
        }
    }
}

/// The domain of the rate-limit service requests ([`rls_requests`]).
pub const RLS_DOMAIN: &str = "bench";

/// Envoy rate-limit service requests for the same calls (one per variant): domain [`RLS_DOMAIN`], one
/// descriptor `[user]` and one `[user, service]`, as an Envoy route with two rate-limit actions sends them.
pub fn rls_requests() -> Arc<[RateLimitRequest]> {
    let entry = |key: &str, value: String| Entry {
        key: key.to_string(),
        value,
    };
    variants()
        .iter()
        .map(|v| RateLimitRequest {
            domain: RLS_DOMAIN.to_string(),
            descriptors: vec![
                RateLimitDescriptor {
                    entries: vec![entry("user", user_name(v.user))],
                    ..Default::default()
                },
                RateLimitDescriptor {
                    entries: vec![
                        entry("user", user_name(v.user)),
                        entry("service", format!("svc-{}", v.service)),
                    ],
                    ..Default::default()
                },
            ],
            hits_addend: 1,
        })
        .collect()
}

/// Every (service, user) pair once, shuffled deterministically; 80% GET, 15% POST, 5% DELETE; 90% `/api/v1/..`,
/// 7% `/web/..`, 3% `/admin/..`.
pub fn variants() -> Vec<Variant> {
    let mut out: Vec<Variant> = (0..SERVICES * USERS)
        .map(|k| {
            let service = k % SERVICES;
            let user = k / SERVICES;
            let method = match k % 20 {
                0..=15 => "GET",
                16..=18 => "POST",
                _ => "DELETE",
            };
            let path = match (k * 7) % 100 {
                0..=89 => format!("/api/v1/svc-{service}/items/{}", k % 97),
                90..=96 => format!("/web/page/{}", k % 13),
                _ => "/admin/settings".to_string(),
            };
            Variant {
                service,
                user,
                method,
                path,
            }
        })
        .collect();
    // Fisher-Yates with a fixed 64-bit LCG: the same order every run, spread over services and users.
    let mut x: u64 = 0x5eed_5eed_5eed_5eed;
    for i in (1..out.len()).rev() {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from((x >> 33) % (i as u64 + 1)).unwrap_or(0);
        out.swap(i, j);
    }
    out
}

/// The three pre-encoded request pools, one entry per variant.
pub struct Pools {
    /// Native Check, plain attributes.
    pub plain: Arc<[mixer::CheckRequest]>,
    /// Native Check, compressed attributes.
    pub compressed: Arc<[mixer::CheckRequest]>,
    /// Envoy ext_authz Check.
    pub authz: Arc<[authz::CheckRequest]>,
    /// OPA's decision requests for the same ext_authz Checks ([`crate::rego::input`]).
    pub opa: Arc<[hyper::body::Bytes]>,
    /// Fraction of variants the policies deny.
    pub expected_deny: f64,
}

impl Pools {
    /// Builds the pools from [`variants`].
    pub fn build() -> anyhow::Result<Self> {
        let vs = variants();
        let mut plain = Vec::with_capacity(vs.len());
        let mut compressed = Vec::with_capacity(vs.len());
        for v in &vs {
            let bag = v.bag()?;
            plain.push(mixer::CheckRequest {
                attributes: Some(sextant_attributes::to_plain(&bag)),
                ..Default::default()
            });
            compressed.push(mixer::CheckRequest {
                compressed: Some(sextant_attributes::to_compressed(&bag)),
                ..Default::default()
            });
        }
        let authz: Vec<_> = vs.iter().map(Variant::authz).collect();
        let opa: Vec<_> = authz.iter().map(crate::rego::input).collect();
        let denied = vs.iter().filter(|v| v.expect_denied()).count();
        Ok(Pools {
            plain: plain.into(),
            compressed: compressed.into(),
            authz: authz.into(),
            opa: opa.into(),
            expected_deny: denied as f64 / vs.len() as f64,
        })
    }
}

/// Mean encoded size in bytes of a pool's messages.
pub fn mean_encoded_len<M: prost::Message>(pool: &[M]) -> usize {
    if pool.is_empty() {
        return 0;
    }
    pool.iter().map(M::encoded_len).sum::<usize>() / pool.len()
}
