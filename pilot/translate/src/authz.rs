//! Inbound security of a workload's proxy: PeerAuthentication's mTLS mode and AuthorizationPolicy, applied
//! to its inbound filter chains (`virtualInbound`'s, and a Sidecar's bound ingress listeners).
//!
//! mTLS, per port: STRICT turns a port's plain-text chain into a refusal (a TCP proxy to
//! `BlackHoleCluster`), DISABLE removes its mesh-mTLS chain, PERMISSIVE keeps both; ports whose mode
//! differs from the workload's get chains of their own, by destination port.
//!
//! Authorization is enforced as Envoy's network RBAC filters before the chain's terminal filter: one with
//! the applicable DENY policies' rules (when there are any), then one with the ALLOW policies' rules (when
//! any ALLOW policy applies — with no rules, it allows nothing). The chains are TCP, so Istio's rule for
//! TCP traffic holds: an ALLOW rule naming an HTTP-only field (request principals, hosts, methods, paths,
//! `request.*` conditions) never matches, and a DENY rule's HTTP-only fields are dropped, so it denies
//! more rather than less. Principals are the peer certificate's SPIFFE ID (`spiffe://` + the principal);
//! a plain-text connection has none. AUDIT policies enforce nothing.

use std::collections::BTreeMap;

use pilot_config::MeshConfig;
use pilot_config::security::InboundMtls;
use pilot_config::types::{AuthorizationAction, MtlsMode, Rule, Source};
use pilot_xds::build;
use prost::{Message, Name};
use sextant_proto::envoy::config::core::v3::CidrRange;
use sextant_proto::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use sextant_proto::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use sextant_proto::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use sextant_proto::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use sextant_proto::google::protobuf::{Any, UInt32Value};

use crate::ProxyInfo;
use crate::cluster::BLACK_HOLE;
use crate::listener::tcp_forward;

/// The name Envoy knows the network RBAC filter by.
pub const RBAC_FILTER: &str = "envoy.filters.network.rbac";

/// What a workload's inbound chains enforce.
#[derive(Clone, Debug, Default)]
pub struct InboundSecurity {
    /// Its ports' mTLS modes.
    pub mtls: InboundMtls,
    /// RBAC filters to run before each chain's terminal filter (DENY, then ALLOW).
    pub filters: Vec<Filter>,
}

/// The inbound security of `proxy`'s workload.
pub fn inbound_security(mesh: &MeshConfig, proxy: &ProxyInfo) -> InboundSecurity {
    let security = &mesh.security;
    let applicable: Vec<_> = security
        .authorization_for(&proxy.namespace, &proxy.labels)
        .collect();
    let mut filters = Vec::new();
    for action in [AuthorizationAction::Deny, AuthorizationAction::Allow] {
        let policies: Vec<_> = applicable.iter().filter(|p| p.action == action).collect();
        if policies.is_empty() {
            continue;
        }
        let mut rules = BTreeMap::new();
        for p in &policies {
            for (i, rule) in p.rules.iter().enumerate() {
                if let Some(policy) = rule_policy(rule, action) {
                    let name = format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name);
                    rules.insert(name, policy);
                }
            }
        }
        if action == AuthorizationAction::Deny && rules.is_empty() {
            continue;
        }
        let envoy_action = match action {
            AuthorizationAction::Deny => rbac::Action::Deny,
            _ => rbac::Action::Allow,
        };
        let prefix = match action {
            AuthorizationAction::Deny => "tcp.deny.",
            _ => "tcp.allow.",
        };
        filters.push(rbac_filter(prefix, envoy_action, &rules));
    }
    InboundSecurity {
        mtls: security.mtls_for(&proxy.namespace, &proxy.labels),
        filters,
    }
}

/// Applies `security` to `virtualInbound`: per-port chains for ports whose mode differs, then each chain's
/// mode and the RBAC filters.
pub fn secure_capture(l: &mut Listener, security: &InboundSecurity) {
    let mtls_default = (l.filter_chains.iter())
        .find(|c| is_mtls(c) && port_of(c).is_none())
        .cloned();
    let plain_default = l.default_filter_chain.clone();
    for port in security.mtls.ports.keys() {
        if l.filter_chains.iter().any(|c| port_of(c) == Some(*port)) {
            continue;
        }
        let by_port = |c: &FilterChain, suffix: &str| {
            let mut c = c.clone();
            c.name = format!("{}_{port}{suffix}", l.name);
            let m = c
                .filter_chain_match
                .get_or_insert_with(FilterChainMatch::default);
            m.destination_port = Some(UInt32Value {
                value: u32::from(*port),
            });
            c
        };
        let mut added: Vec<FilterChain> =
            mtls_default.iter().map(|c| by_port(c, "-mtls")).collect();
        added.extend(plain_default.iter().map(|c| by_port(c, "")));
        l.filter_chains.splice(0..0, added);
    }
    let chains = std::mem::take(&mut l.filter_chains);
    l.filter_chains = chains
        .into_iter()
        .filter_map(|c| {
            let mode = port_of(&c).map_or(security.mtls.mode, |p| mode_of(security, p));
            secure_chain(c, mode, security)
        })
        .collect();
    let default_mode = security.mtls.mode;
    l.default_filter_chain = l
        .default_filter_chain
        .take()
        .and_then(|c| secure_chain(c, default_mode, security));
}

/// Applies `security` to a bound inbound listener for workload `port`.
pub fn secure_bound(l: &mut Listener, port: u16, security: &InboundSecurity) {
    let mode = mode_of(security, port);
    let chains = std::mem::take(&mut l.filter_chains);
    l.filter_chains = (chains.into_iter())
        .filter_map(|c| secure_chain(c, mode, security))
        .collect();
    l.default_filter_chain = l
        .default_filter_chain
        .take()
        .and_then(|c| secure_chain(c, mode, security));
}

fn mode_of(security: &InboundSecurity, port: u16) -> MtlsMode {
    *security
        .mtls
        .ports
        .get(&port)
        .unwrap_or(&security.mtls.mode)
}

fn port_of(c: &FilterChain) -> Option<u16> {
    let p = c.filter_chain_match.as_ref()?.destination_port?;
    u16::try_from(p.value).ok()
}

fn is_mtls(c: &FilterChain) -> bool {
    c.filter_chain_match
        .as_ref()
        .is_some_and(|m| m.transport_protocol == "tls")
}

/// A chain under `mode`: a plain chain under STRICT refuses its connections, an mTLS chain under DISABLE
/// goes; any other gets the RBAC filters first.
fn secure_chain(
    mut c: FilterChain,
    mode: MtlsMode,
    security: &InboundSecurity,
) -> Option<FilterChain> {
    let mtls = is_mtls(&c);
    if mtls && mode == MtlsMode::Disable {
        return None;
    }
    if !mtls && mode == MtlsMode::Strict {
        c.filters = vec![tcp_forward(
            BLACK_HOLE,
            tcp_proxy::ClusterSpecifier::Cluster(BLACK_HOLE.to_string()),
        )];
        return Some(c);
    }
    c.filters.splice(0..0, security.filters.iter().cloned());
    Some(c)
}

/// A network RBAC filter. Its policies are a protobuf map, which prost encodes in hash order; the bytes
/// are written here with the policies in name order instead, so the same rules always encode the same
/// (a resource that changes its bytes on every translation would be pushed again every time).
fn rbac_filter(
    stat_prefix: &str,
    action: rbac::Action,
    policies: &BTreeMap<String, Policy>,
) -> Filter {
    let mut rules = Rbac {
        action: action as i32,
        ..Default::default()
    }
    .encode_to_vec();
    for (name, policy) in policies {
        // One map entry per message: concatenated messages merge, their maps adding up.
        let one = Rbac {
            policies: std::iter::once((name.clone(), policy.clone())).collect(),
            ..Default::default()
        };
        one.encode(&mut rules).expect("a Vec grows as needed");
    }
    let mut value = NetworkRbac {
        stat_prefix: stat_prefix.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 1 (`rules`), length-delimited.
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut value);
    prost::encoding::encode_varint(rules.len() as u64, &mut value);
    value.extend_from_slice(&rules);
    build::network_filter(
        RBAC_FILTER,
        Any {
            type_url: NetworkRbac::type_url(),
            value,
        },
    )
}

/// One rule as an RBAC policy for TCP traffic; `None` when it can never match (an ALLOW rule naming an
/// HTTP-only field).
fn rule_policy(rule: &Rule, action: AuthorizationAction) -> Option<Policy> {
    let http_only = rule_is_http_only(rule);
    if http_only && action == AuthorizationAction::Allow {
        return None;
    }
    let mut principals = Vec::new();
    if !rule.from.is_empty() {
        principals.push(or_ids(
            rule.from.iter().map(|f| source(&f.source)).collect(),
        ));
    }
    let mut permissions = Vec::new();
    if !rule.to.is_empty() {
        let ops = rule.to.iter().map(|t| {
            let o = &t.operation;
            let mut all = Vec::new();
            if !o.ports.is_empty() {
                all.push(or_rules(o.ports.iter().filter_map(|p| port(p)).collect()));
            }
            if !o.not_ports.is_empty() {
                all.push(not_rule(or_rules(
                    o.not_ports.iter().filter_map(|p| port(p)).collect(),
                )));
            }
            and_rules(all)
        });
        permissions.push(or_rules(ops.collect()));
    }
    for c in &rule.when {
        let (ids, rules) = condition(&c.key, &c.values);
        let (not_ids, not_rules) = condition(&c.key, &c.not_values);
        if !c.values.is_empty() {
            principals.extend(ids.map(or_ids));
            permissions.extend(rules.map(or_rules));
        }
        if !c.not_values.is_empty() {
            principals.extend(not_ids.map(|v| not_id(or_ids(v))));
            permissions.extend(not_rules.map(|v| not_rule(or_rules(v))));
        }
    }
    Some(Policy {
        permissions: vec![and_rules(permissions)],
        principals: vec![and_ids(principals)],
        ..Default::default()
    })
}

fn rule_is_http_only(rule: &Rule) -> bool {
    let from = rule.from.iter().any(|f| {
        !f.source.request_principals.is_empty() || !f.source.not_request_principals.is_empty()
    });
    let to = rule.to.iter().any(|t| {
        let o = &t.operation;
        [
            &o.hosts,
            &o.not_hosts,
            &o.methods,
            &o.not_methods,
            &o.paths,
            &o.not_paths,
        ]
        .iter()
        .any(|l| !l.is_empty())
    });
    let when = rule
        .when
        .iter()
        .any(|c| c.key.starts_with("request.") || c.key.starts_with("experimental."));
    from || to || when
}

/// The principal parts of a `when` condition (`Some` for keys about the peer) and the permission parts
/// (`Some` for keys about the destination); HTTP-only keys are neither.
fn condition(key: &str, values: &[String]) -> (Option<Vec<Principal>>, Option<Vec<Permission>>) {
    match key {
        "source.ip" => (
            Some(values.iter().filter_map(|v| ip(v, false)).collect()),
            None,
        ),
        "remote.ip" => (
            Some(values.iter().filter_map(|v| ip(v, true)).collect()),
            None,
        ),
        "source.namespace" => (Some(values.iter().map(|v| namespace(v)).collect()), None),
        "source.principal" => (Some(values.iter().map(|v| peer(v)).collect()), None),
        "destination.ip" => (
            None,
            Some(
                (values.iter())
                    .filter_map(|v| cidr(v))
                    .map(|c| permission(permission::Rule::DestinationIp(c)))
                    .collect(),
            ),
        ),
        "destination.port" => (None, Some(values.iter().filter_map(|v| port(v)).collect())),
        "connection.sni" => (
            None,
            Some(
                (values.iter())
                    .map(|v| permission(permission::Rule::RequestedServerName(wildcard(v, ""))))
                    .collect(),
            ),
        ),
        _ => (None, None),
    }
}

/// A `source`: every field written must match.
fn source(s: &Source) -> Principal {
    let mut all = Vec::new();
    let mut add = |list: &[String], not: bool, f: &dyn Fn(&str) -> Option<Principal>| {
        if list.is_empty() {
            return;
        }
        let any = or_ids(list.iter().filter_map(|v| f(v)).collect());
        all.push(if not { not_id(any) } else { any });
    };
    add(&s.principals, false, &|v| Some(peer(v)));
    add(&s.not_principals, true, &|v| Some(peer(v)));
    add(&s.namespaces, false, &|v| Some(namespace(v)));
    add(&s.not_namespaces, true, &|v| Some(namespace(v)));
    add(&s.ip_blocks, false, &|v| ip(v, false));
    add(&s.not_ip_blocks, true, &|v| ip(v, false));
    add(&s.remote_ip_blocks, false, &|v| ip(v, true));
    add(&s.not_remote_ip_blocks, true, &|v| ip(v, true));
    and_ids(all)
}

/// A peer identity (`cluster.local/ns/NS/sa/SA`, `*`, `prefix*`, `*suffix`) against the certificate's
/// SPIFFE ID.
fn peer(v: &str) -> Principal {
    let name = if v == "*" {
        regex(".+")
    } else {
        wildcard(v, "spiffe://")
    };
    authenticated(name)
}

/// A namespace (or `*`, `prefix*`, `*suffix`) of the peer's identity.
fn namespace(v: &str) -> Principal {
    let ns = regex::escape(v).replace("\\*", ".*");
    authenticated(regex(&format!(".*/ns/{ns}/.*")))
}

fn authenticated(name: StringMatcher) -> Principal {
    Principal {
        identifier: Some(principal::Identifier::Authenticated(
            principal::Authenticated {
                principal_name: Some(name),
            },
        )),
    }
}

fn ip(v: &str, remote: bool) -> Option<Principal> {
    let c = cidr(v)?;
    Some(Principal {
        identifier: Some(if remote {
            principal::Identifier::RemoteIp(c)
        } else {
            principal::Identifier::DirectRemoteIp(c)
        }),
    })
}

fn cidr(v: &str) -> Option<CidrRange> {
    let (ip, len) = pilot_config::security::parse_cidr(v)?;
    Some(CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value {
            value: u32::from(len),
        }),
    })
}

fn port(v: &str) -> Option<Permission> {
    let p: u16 = v.parse().ok()?;
    Some(permission(permission::Rule::DestinationPort(u32::from(p))))
}

/// Istio's string match: exact, `*` (anything), `prefix*`, `*suffix`; `prefix` is put before the value.
fn wildcard(v: &str, prefix: &str) -> StringMatcher {
    use string_matcher::MatchPattern;
    let pattern = if v == "*" {
        return regex(".*");
    } else if let Some(p) = v.strip_suffix('*') {
        MatchPattern::Prefix(format!("{prefix}{p}"))
    } else if let Some(s) = v.strip_prefix('*') {
        MatchPattern::Suffix(s.to_string())
    } else {
        MatchPattern::Exact(format!("{prefix}{v}"))
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ..Default::default()
    }
}

fn regex(r: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
            regex: r.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn permission(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

/// All of `rules` (any, when there are none).
fn and_rules(rules: Vec<Permission>) -> Permission {
    match rules.len() {
        0 => permission(permission::Rule::Any(true)),
        1 => rules.into_iter().next().expect("one"),
        _ => permission(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn or_rules(rules: Vec<Permission>) -> Permission {
    match rules.len() {
        1 => rules.into_iter().next().expect("one"),
        _ => permission(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn not_rule(rule: Permission) -> Permission {
    permission(permission::Rule::NotRule(Box::new(rule)))
}

fn principal_of(id: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(id),
    }
}

/// All of `ids` (any, when there are none).
fn and_ids(ids: Vec<Principal>) -> Principal {
    match ids.len() {
        0 => principal_of(principal::Identifier::Any(true)),
        1 => ids.into_iter().next().expect("one"),
        _ => principal_of(principal::Identifier::AndIds(principal::Set { ids })),
    }
}

fn or_ids(ids: Vec<Principal>) -> Principal {
    match ids.len() {
        1 => ids.into_iter().next().expect("one"),
        _ => principal_of(principal::Identifier::OrIds(principal::Set { ids })),
    }
}

fn not_id(id: Principal) -> Principal {
    principal_of(principal::Identifier::NotId(Box::new(id)))
}
