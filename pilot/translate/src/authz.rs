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
use sextant_proto::envoy::config::listener::v3::filter;
use sextant_proto::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use sextant_proto::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use sextant_proto::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use sextant_proto::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use sextant_proto::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy;
use sextant_proto::envoy::r#type::matcher::v3::{PathMatcher, path_matcher};
use sextant_proto::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use sextant_proto::google::protobuf::{Any, UInt32Value};

use crate::ProxyInfo;
use crate::filters::tcp_forward;
use crate::names::{BLACK_HOLE, HTTP_RBAC_FILTER, RBAC_FILTER};

/// What a workload's inbound chains enforce.
#[derive(Clone, Debug, Default)]
pub struct InboundSecurity {
    /// Its ports' mTLS modes.
    pub mtls: InboundMtls,
    /// Network RBAC filters to run before a TCP chain's terminal filter (DENY, then ALLOW).
    pub filters: Vec<Filter>,
    /// HTTP RBAC filters to run first in an HTTP chain's connection manager (DENY, then ALLOW).
    pub http_filters: Vec<HttpFilter>,
}

/// The inbound security of `proxy`'s workload.
pub fn inbound_security(mesh: &MeshConfig, proxy: &ProxyInfo) -> InboundSecurity {
    let security = &mesh.security;
    let applicable: Vec<_> = security
        .authorization_for(&proxy.namespace, &proxy.labels)
        .collect();
    let mut filters = Vec::new();
    let mut http_filters = Vec::new();
    for action in [AuthorizationAction::Deny, AuthorizationAction::Allow] {
        let policies: Vec<_> = applicable.iter().filter(|p| p.action == action).collect();
        if policies.is_empty() {
            continue;
        }
        let envoy_action = match action {
            AuthorizationAction::Deny => rbac::Action::Deny,
            _ => rbac::Action::Allow,
        };
        for http in [false, true] {
            let mut rules = BTreeMap::new();
            for p in &policies {
                for (i, rule) in p.rules.iter().enumerate() {
                    if let Some(policy) = rule_policy(rule, action, http) {
                        let name = format!("ns[{}]-policy[{}]-rule[{i}]", p.namespace, p.name);
                        rules.insert(name, policy);
                    }
                }
            }
            if action == AuthorizationAction::Deny && rules.is_empty() {
                continue;
            }
            let rules = rbac_rules(envoy_action, &rules);
            if http {
                http_filters.push(http_rbac_filter(&rules));
            } else {
                let prefix = match action {
                    AuthorizationAction::Deny => "tcp.deny.",
                    _ => "tcp.allow.",
                };
                filters.push(network_rbac_filter(prefix, &rules));
            }
        }
    }
    InboundSecurity {
        mtls: security.mtls_for(&proxy.namespace, &proxy.labels),
        filters,
        http_filters,
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
/// goes; any other gets the RBAC filters first — HTTP RBAC inside its connection manager when it is an HTTP
/// chain, network RBAC before its terminal filter otherwise.
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
    let hcm = c.filters.last_mut().filter(|f| f.name == build::HCM_FILTER);
    let Some(filter) = hcm else {
        c.filters.splice(0..0, security.filters.iter().cloned());
        return Some(c);
    };
    if security.http_filters.is_empty() {
        return Some(c);
    }
    if let Some(filter::ConfigType::TypedConfig(any)) = &mut filter.config_type
        && let Ok(mut manager) = HttpConnectionManager::decode(any.value.as_slice())
    {
        (manager.http_filters).splice(0..0, security.http_filters.iter().cloned());
        any.value = manager.encode_to_vec();
        return Some(c);
    }
    // A connection manager pilot built but cannot read back: refuse rather than serve it unchecked.
    c.filters = vec![tcp_forward(
        BLACK_HOLE,
        tcp_proxy::ClusterSpecifier::Cluster(BLACK_HOLE.to_string()),
    )];
    Some(c)
}

/// The encoded `config.rbac.v3.RBAC` of `action` over `policies`. Its policies are a protobuf map, which
/// prost encodes in hash order; the bytes are written here with the policies in name order instead, so the
/// same rules always encode the same (a resource that changes its bytes on every translation would be
/// pushed again every time).
fn rbac_rules(action: rbac::Action, policies: &BTreeMap<String, Policy>) -> Vec<u8> {
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
    rules
}

/// `message` (encoded) with `rules` appended as its field 1, where both RBAC filters keep their rules.
fn with_rules(mut message: Vec<u8>, rules: &[u8]) -> Vec<u8> {
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut message);
    prost::encoding::encode_varint(rules.len() as u64, &mut message);
    message.extend_from_slice(rules);
    message
}

/// A network RBAC filter over encoded `rules`.
fn network_rbac_filter(stat_prefix: &str, rules: &[u8]) -> Filter {
    let value = NetworkRbac {
        stat_prefix: stat_prefix.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    build::network_filter(
        RBAC_FILTER,
        Any {
            type_url: NetworkRbac::type_url(),
            value: with_rules(value, rules),
        },
    )
}

/// An HTTP RBAC filter over encoded `rules`.
fn http_rbac_filter(rules: &[u8]) -> HttpFilter {
    build::http_filter(
        HTTP_RBAC_FILTER,
        Any {
            type_url: HttpRbac::type_url(),
            value: with_rules(Vec::new(), rules),
        },
    )
}

/// One rule as an RBAC policy, for HTTP requests (`http`) or for TCP connections; `None` when it can never
/// match (for TCP, an ALLOW rule naming an HTTP-only field).
fn rule_policy(rule: &Rule, action: AuthorizationAction, http: bool) -> Option<Policy> {
    if !http && rule_is_http_only(rule) && action == AuthorizationAction::Allow {
        return None;
    }
    let mut principals = Vec::new();
    if !rule.from.is_empty() {
        principals.push(or_ids(
            rule.from.iter().map(|f| source(&f.source, http)).collect(),
        ));
    }
    let mut permissions = Vec::new();
    if !rule.to.is_empty() {
        let ops = rule.to.iter().map(|t| {
            let o = &t.operation;
            let mut all = Vec::new();
            let mut add = |list: &[String], not: bool, f: &dyn Fn(&str) -> Option<Permission>| {
                if list.is_empty() {
                    return;
                }
                let any = or_rules(list.iter().filter_map(|v| f(v)).collect());
                all.push(if not { not_rule(any) } else { any });
            };
            add(&o.ports, false, &port);
            add(&o.not_ports, true, &port);
            if http {
                add(&o.hosts, false, &|v| Some(authority(v)));
                add(&o.not_hosts, true, &|v| Some(authority(v)));
                add(&o.methods, false, &|v| Some(header(":method", v, false)));
                add(&o.not_methods, true, &|v| Some(header(":method", v, false)));
                add(&o.paths, false, &|v| Some(url_path(v)));
                add(&o.not_paths, true, &|v| Some(url_path(v)));
            }
            and_rules(all)
        });
        permissions.push(or_rules(ops.collect()));
    }
    for c in &rule.when {
        let (ids, rules) = condition(&c.key, &c.values, http, false);
        let (not_ids, not_rules) = condition(&c.key, &c.not_values, http, true);
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

/// The principal parts of a `when` condition (`Some` for keys about the peer or, for `http`, the request's
/// headers) and the permission parts (`Some` for keys about the destination). For TCP, HTTP-only keys are
/// neither. For HTTP, `request.auth.*` and `experimental.*` name what no filter here provides (no JWT is
/// checked): such values never match, so their `values` match nothing and their `notValues` (`negated`)
/// everything.
fn condition(
    key: &str,
    values: &[String],
    http: bool,
    negated: bool,
) -> (Option<Vec<Principal>>, Option<Vec<Permission>>) {
    if http
        && let Some(name) = key
            .strip_prefix("request.headers[")
            .and_then(|k| k.strip_suffix(']'))
    {
        let name = name.to_ascii_lowercase();
        let ids = values.iter().map(|v| principal_header(&name, v)).collect();
        return (Some(ids), None);
    }
    if http && (key.starts_with("request.") || key.starts_with("experimental.")) {
        return if negated {
            (None, None)
        } else {
            (Some(vec![never_id()]), None)
        };
    }
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

/// A `source`: every field written must match. For HTTP, request principals (from a JWT, which no filter
/// here checks) are never present: `requestPrincipals` match nothing, `notRequestPrincipals` everything.
fn source(s: &Source, http: bool) -> Principal {
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
    if http && !s.request_principals.is_empty() {
        all.push(never_id());
    }
    and_ids(all)
}

/// A principal nothing matches.
fn never_id() -> Principal {
    not_id(principal_of(principal::Identifier::Any(true)))
}

/// A request header (`name`, lower case) matching Istio's `value` (exact, `*`, `prefix*`, `*suffix`).
fn principal_header(name: &str, value: &str) -> Principal {
    principal_of(principal::Identifier::Header(header_matcher(
        name, value, false,
    )))
}

/// The permission that the request's host is Istio's `value` (case-insensitively), with or without a port,
/// as Istio matches `hosts`.
fn authority(value: &str) -> Permission {
    let with_port = if value.ends_with('*') {
        None
    } else {
        Some(header_prefix(":authority", &format!("{value}:")))
    };
    or_rules(
        std::iter::once(header(":authority", value, true))
            .chain(with_port)
            .collect(),
    )
}

/// The permission that request header `name` starts with `prefix`, case-insensitively.
fn header_prefix(name: &str, prefix: &str) -> Permission {
    let m = StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Prefix(prefix.to_string())),
        ignore_case: true,
    };
    permission(permission::Rule::Header(HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }))
}

/// The permission that request header `name` matches `value`; `ignore_case` for host names.
fn header(name: &str, value: &str, ignore_case: bool) -> Permission {
    permission(permission::Rule::Header(header_matcher(
        name,
        value,
        ignore_case,
    )))
}

fn header_matcher(name: &str, value: &str, ignore_case: bool) -> HeaderMatcher {
    let mut m = wildcard(value, "");
    m.ignore_case = ignore_case;
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }
}

/// The permission that the request's path (without its query) matches Istio's `value`.
fn url_path(value: &str) -> Permission {
    permission(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(wildcard(value, ""))),
    }))
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
