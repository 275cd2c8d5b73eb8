//! Route configurations: virtual hosts, routes, and what each route does.

use std::collections::BTreeSet;
use std::time::Duration;

use prost::Name;
use regex::Regex;
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::route::v3 as pb;
use sextant_proto::envoy::extensions::filters::http::{cors::v3 as cors, fault::v3 as fault};
use sextant_proto::envoy::r#type::v3::FractionalPercent;
use sextant_proto::google::protobuf::Any;

use crate::error::{Partial, at, within};
use crate::matcher::{StringMatcher, full_regex, string_matcher};
use crate::{decode_payload, duration};

/// Per-route config key of the fault filter.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// Per-route config key of the CORS filter.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
/// Parts per million: the unit of every fraction here.
pub const MILLION: u32 = 1_000_000;

/// A route configuration (RDS resource).
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Its name (a port number for sidecars, `http.8080` for gateways).
    pub name: String,
    /// Its virtual hosts, in order.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A virtual host: the domains it serves and its routes, first match wins.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// Its name.
    pub name: String,
    /// Domains (`host`, `host:port`, `*.suffix`, `prefix.*`, `*`), lower case.
    pub domains: Vec<String>,
    /// Routes in order.
    pub routes: Vec<Route>,
    /// Plain-text requests are redirected to https (`require_tls: ALL`).
    pub require_tls: bool,
    /// Send `x-envoy-attempt-count` upstream.
    pub attempt_count_header: bool,
}

/// A route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name (for stats and logs).
    pub name: String,
    /// Which requests it takes.
    pub matcher: RouteMatch,
    /// What it does with them.
    pub action: Action,
    /// Fault injection (applied when the listener runs the fault filter).
    pub fault: Option<Fault>,
    /// CORS policy (applied when the listener runs the CORS filter).
    pub cors: Option<Cors>,
    /// Header changes on the request and the response.
    pub headers: HeaderOps,
}

/// Which requests a route takes: all of path, headers and query parameters must match.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The path (without the query).
    pub path: PathMatch,
    /// Whether the path comparison is case-sensitive (regexes carry their own flags).
    pub case_sensitive: bool,
    /// Header conditions (pseudo-headers `:method`, `:authority`, `:scheme`, `:path` included).
    pub headers: Vec<HeaderMatch>,
    /// Query parameter conditions.
    pub query: Vec<QueryMatch>,
}

/// How the path is compared.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Starts with.
    Prefix(String),
    /// Equal to.
    Exact(String),
    /// The whole path matches.
    Regex(Regex),
}

/// A header condition.
#[derive(Debug, Clone)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// The comparison.
    pub value: ValueMatch,
    /// The condition holds when the comparison fails.
    pub invert: bool,
}

/// A query parameter condition.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// Parameter name.
    pub name: String,
    /// The comparison.
    pub value: ValueMatch,
}

/// A value comparison.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// The value is present (any value).
    Present,
    /// The value is present and matches.
    String(StringMatcher),
}

/// What a route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to a cluster.
    Forward(Forward),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly.
    Direct(Direct),
}

/// Forwarding to clusters.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The cluster(s).
    pub clusters: Clusters,
    /// Replace the matched path prefix with this.
    pub prefix_rewrite: Option<String>,
    /// Replace the host with this.
    pub host_rewrite: Option<String>,
    /// Whole-request timeout (None: none).
    pub timeout: Option<Duration>,
    /// Retries.
    pub retry: Option<RetryPolicy>,
    /// Copies of the request sent elsewhere, their responses ignored.
    pub mirrors: Vec<Mirror>,
    /// How a request hashes, for consistent-hash load balancing.
    pub hash: Vec<HashPolicy>,
    /// The route's set-filter-state values (`typed_per_filter_config`), applied after the connection
    /// manager's when it runs the filter.
    pub filter_state: Option<Box<crate::filter_state::SetFilterState>>,
}

/// One cluster or a weighted choice.
#[derive(Debug, Clone)]
pub enum Clusters {
    /// One cluster.
    One(String),
    /// A weighted choice.
    Weighted(Vec<ClusterWeight>),
}

/// One of weighted clusters.
#[derive(Debug, Clone)]
pub struct ClusterWeight {
    /// The cluster.
    pub name: String,
    /// Its weight.
    pub weight: u32,
    /// Header changes when it is chosen.
    pub headers: HeaderOps,
}

/// What failures are retried, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The conditions.
    pub on: RetryOn,
    /// Status codes retried under `retriable-status-codes`.
    pub status_codes: BTreeSet<u16>,
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Timeout of each attempt.
    pub per_try_timeout: Option<Duration>,
    /// Prefer hosts not tried yet (`previous_hosts` predicate).
    pub other_hosts: bool,
    /// How many times host selection may retry to find such a host.
    pub host_selection_attempts: u32,
    /// Backoff between attempts: base and maximum (Envoy defaults 25 ms and 10× base).
    pub backoff: (Duration, Duration),
}

/// Retry conditions (`retry_on` tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOn {
    /// `5xx`: any 5xx response, or no response.
    pub server_error: bool,
    /// `gateway-error`: 502, 503, 504.
    pub gateway_error: bool,
    /// `reset`: the upstream reset or timed out before a response.
    pub reset: bool,
    /// `reset-before-request`: reset before the request was sent.
    pub reset_before_request: bool,
    /// `connect-failure`.
    pub connect_failure: bool,
    /// `refused-stream`: HTTP/2 REFUSED_STREAM.
    pub refused_stream: bool,
    /// `retriable-4xx`: 409.
    pub retriable_4xx: bool,
    /// `retriable-status-codes`: those listed.
    pub status_codes: bool,
    /// `envoy-ratelimited`: a response with `x-envoy-ratelimited`.
    pub rate_limited: bool,
    /// gRPC statuses retried (`cancelled` 1, `deadline-exceeded` 4, `resource-exhausted` 8, `internal` 13,
    /// `unavailable` 14).
    pub grpc: BTreeSet<u32>,
}

/// A mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Where copies go.
    pub cluster: String,
    /// Share of requests copied, in parts per million.
    pub per_million: u32,
}

/// One hash input.
#[derive(Debug, Clone)]
pub struct HashPolicy {
    /// What is hashed.
    pub input: HashInput,
    /// Stop at this input if it yields a value.
    pub terminal: bool,
}

/// What a request hashes by.
#[derive(Debug, Clone)]
pub enum HashInput {
    /// A header's value.
    Header(String),
    /// A cookie (generated with `path` and `ttl` when absent and a ttl is given).
    Cookie {
        /// Cookie name.
        name: String,
        /// Cookie path.
        path: String,
        /// Lifetime of a generated cookie.
        ttl: Option<Duration>,
    },
    /// The client's address.
    SourceIp,
    /// A query parameter.
    Query(String),
}

/// A redirect answer.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// New scheme.
    pub scheme: Option<String>,
    /// New host.
    pub host: Option<String>,
    /// New port.
    pub port: Option<u16>,
    /// New path.
    pub path: Option<RedirectPath>,
    /// Status: 301, 302, 303, 307 or 308.
    pub status: u16,
    /// Drop the query.
    pub strip_query: bool,
}

/// How a redirect changes the path.
#[derive(Debug, Clone)]
pub enum RedirectPath {
    /// Replace the whole path.
    Path(String),
    /// Replace the matched prefix.
    Prefix(String),
}

/// A direct answer.
#[derive(Debug, Clone)]
pub struct Direct {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// Fault injection.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Delay, and the share of requests delayed (per million).
    pub delay: Option<(Duration, u32)>,
    /// Abort status, and the share of requests aborted (per million).
    pub abort: Option<(u16, u32)>,
}

/// A CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins.
    pub origins: Vec<StringMatcher>,
    /// `access-control-allow-methods`.
    pub methods: String,
    /// `access-control-allow-headers`.
    pub headers: String,
    /// `access-control-expose-headers`.
    pub expose: String,
    /// `access-control-max-age`.
    pub max_age: String,
    /// `access-control-allow-credentials: true`.
    pub credentials: bool,
}

/// Header changes.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    /// Added to the request.
    pub request_add: Vec<HeaderAdd>,
    /// Removed from the request.
    pub request_remove: Vec<String>,
    /// Added to the response.
    pub response_add: Vec<HeaderAdd>,
    /// Removed from the response.
    pub response_remove: Vec<String>,
}

/// A header added.
#[derive(Debug, Clone)]
pub struct HeaderAdd {
    /// Lower-case name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Replace an existing value (else append another).
    pub overwrite: bool,
}

/// Decodes and validates a RouteConfiguration resource.
pub fn decode(any: &Any) -> Result<RouteConfig, crate::Error> {
    crate::resource::<pb::RouteConfiguration, _>(
        "RouteConfiguration",
        any,
        |r| r.name.clone(),
        route_config,
    )
}

fn route_config(r: &pb::RouteConfiguration) -> Partial<RouteConfig> {
    let virtual_hosts = r
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(i, v)| within(&format!("virtual_hosts[{i}]"), virtual_host(v)))
        .collect::<Partial<_>>()?;
    Ok(RouteConfig {
        name: r.name.clone(),
        virtual_hosts,
    })
}

fn virtual_host(v: &pb::VirtualHost) -> Partial<VirtualHost> {
    let require_tls = match pb::virtual_host::TlsRequirementType::try_from(v.require_tls) {
        Ok(pb::virtual_host::TlsRequirementType::None) => false,
        Ok(pb::virtual_host::TlsRequirementType::All) => true,
        _ => {
            return at(
                "require_tls",
                format!("require_tls {} is not implemented", v.require_tls),
            );
        }
    };
    if v.domains.is_empty() {
        return at("domains", "a virtual host needs at least one domain");
    }
    let routes = v
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| within(&format!("routes[{i}]"), route(r)))
        .collect::<Partial<_>>()?;
    Ok(VirtualHost {
        name: v.name.clone(),
        domains: v.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        routes,
        require_tls,
        attempt_count_header: v.include_request_attempt_count,
    })
}

fn route(r: &pb::Route) -> Partial<Route> {
    let matcher = within("match", route_match(r.r#match.as_ref()))?;
    let mut action = match &r.action {
        Some(pb::route::Action::Route(a)) => Action::Forward(within("route", forward(a))?),
        Some(pb::route::Action::Redirect(a)) => Action::Redirect(within("redirect", redirect(a))?),
        Some(pb::route::Action::DirectResponse(a)) => {
            Action::Direct(within("direct_response", direct(a))?)
        }
        Some(_) => return at("action", "this route action is not implemented"),
        None => return at("action", "a route needs an action"),
    };
    let mut fault = None;
    let mut cors = None;
    let mut filter_state = None;
    for (name, config) in &r.typed_per_filter_config {
        let path = format!("typed_per_filter_config[{name:?}]");
        match name.as_str() {
            FAULT_FILTER => fault = Some(within(&path, fault_config(config))?),
            CORS_FILTER => cors = Some(within(&path, cors_policy(config))?),
            crate::filter_state::SET_FILTER_STATE => {
                filter_state = Some(within(
                    &path,
                    crate::filter_state::set_filter_state(config),
                )?)
            }
            other => {
                return at(
                    path,
                    format!("per-route config for {other:?} is not implemented"),
                );
            }
        }
    }
    // What the set-filter-state filter puts in the filter state is read only when forwarding.
    if let (Action::Forward(f), Some(values)) = (&mut action, filter_state) {
        f.filter_state = Some(Box::new(values));
    }
    let headers = header_ops(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
    )?;
    Ok(Route {
        name: r.name.clone(),
        matcher,
        action,
        fault,
        cors,
        headers,
    })
}

fn route_match(m: Option<&pb::RouteMatch>) -> Partial<RouteMatch> {
    let Some(m) = m else {
        return at("", "a route needs a match");
    };
    let path = match &m.path_specifier {
        Some(pb::route_match::PathSpecifier::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(pb::route_match::PathSpecifier::Path(p)) => PathMatch::Exact(p.clone()),
        Some(pb::route_match::PathSpecifier::SafeRegex(r)) => {
            PathMatch::Regex(within("safe_regex", full_regex(&r.regex))?)
        }
        Some(_) => return at("path_specifier", "this path match is not implemented"),
        None => return at("path_specifier", "a route match needs a path"),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let value = within(&format!("headers[{i}]"), header_value(h))?;
            Ok(HeaderMatch {
                name: h.name.to_ascii_lowercase(),
                value,
                invert: h.invert_match,
            })
        })
        .collect::<Partial<_>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| {
            use pb::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
            let value = match &q.query_parameter_match_specifier {
                Some(Q::PresentMatch(true)) => ValueMatch::Present,
                Some(Q::StringMatch(s)) => ValueMatch::String(within(
                    &format!("query_parameters[{i}].string_match"),
                    string_matcher(s),
                )?),
                _ => {
                    return at(
                        format!("query_parameters[{i}]"),
                        "a query parameter match needs a condition",
                    );
                }
            };
            Ok(QueryMatch {
                name: q.name.clone(),
                value,
            })
        })
        .collect::<Partial<_>>()?;
    Ok(RouteMatch {
        path,
        case_sensitive: m.case_sensitive.as_ref().is_none_or(|b| b.value),
        headers,
        query,
    })
}

pub(crate) fn header_value(h: &pb::HeaderMatcher) -> Partial<ValueMatch> {
    use pb::header_matcher::HeaderMatchSpecifier as H;
    match &h.header_match_specifier {
        Some(H::PresentMatch(true)) => Ok(ValueMatch::Present),
        Some(H::StringMatch(s)) => Ok(ValueMatch::String(within(
            "string_match",
            string_matcher(s),
        )?)),
        _ => at(
            "",
            "a header match needs string_match or present_match: true",
        ),
    }
}

fn forward(a: &pb::RouteAction) -> Partial<Forward> {
    use pb::route_action::ClusterSpecifier as C;
    let clusters = match &a.cluster_specifier {
        Some(C::Cluster(c)) => Clusters::One(c.clone()),
        Some(C::WeightedClusters(w)) => {
            let mut list = Vec::with_capacity(w.clusters.len());
            for (i, c) in w.clusters.iter().enumerate() {
                let weight = c.weight.as_ref().map_or(0, |w| w.value);
                let headers = within(
                    &format!("weighted_clusters.clusters[{i}]"),
                    header_ops(
                        &c.request_headers_to_add,
                        &c.request_headers_to_remove,
                        &c.response_headers_to_add,
                        &c.response_headers_to_remove,
                    ),
                )?;
                list.push(ClusterWeight {
                    name: c.name.clone(),
                    weight,
                    headers,
                });
            }
            let total: u64 = list.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 {
                return at("weighted_clusters", "the weights add up to zero");
            }
            Clusters::Weighted(list)
        }
        _ => {
            return at(
                "cluster_specifier",
                "only cluster and weighted_clusters are implemented",
            );
        }
    };
    let host_rewrite = match &a.host_rewrite_specifier {
        Some(pb::route_action::HostRewriteSpecifier::HostRewriteLiteral(h)) => Some(h.clone()),
        Some(_) => {
            return at(
                "host_rewrite_specifier",
                "only host_rewrite_literal is implemented",
            );
        }
        None => None,
    };
    let timeout = match &a.timeout {
        Some(d) => Some(within("timeout", duration(d))?).filter(|d| !d.is_zero()),
        // Envoy's default route timeout.
        None => Some(Duration::from_secs(15)),
    };
    let retry = match &a.retry_policy {
        Some(r) => Some(within("retry_policy", retry_policy(r))?),
        None => None,
    };
    let mirrors = a
        .request_mirror_policies
        .iter()
        .map(|m| Mirror {
            cluster: m.cluster.clone(),
            per_million: m
                .runtime_fraction
                .as_ref()
                .and_then(|f| f.default_value.as_ref())
                .map_or(MILLION, per_million),
        })
        .collect();
    let hash = a
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| within(&format!("hash_policy[{i}]"), hash_policy(h)))
        .collect::<Partial<_>>()?;
    Ok(Forward {
        clusters,
        prefix_rewrite: Some(a.prefix_rewrite.clone()).filter(|p| !p.is_empty()),
        host_rewrite,
        timeout,
        retry,
        mirrors,
        hash,
        filter_state: None,
    })
}

fn retry_policy(r: &pb::RetryPolicy) -> Partial<RetryPolicy> {
    let mut on = RetryOn::default();
    for token in r
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match token {
            "5xx" => on.server_error = true,
            "gateway-error" => on.gateway_error = true,
            "reset" => on.reset = true,
            "reset-before-request" => on.reset_before_request = true,
            "connect-failure" => on.connect_failure = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "retriable-status-codes" => on.status_codes = true,
            "envoy-ratelimited" => on.rate_limited = true,
            // No HTTP/3 upstreams, and no retriable_headers are accepted: these conditions never arise.
            "http3-post-connect-failure" | "retriable-headers" => {}
            "cancelled" => _ = on.grpc.insert(1),
            "deadline-exceeded" => _ = on.grpc.insert(4),
            "resource-exhausted" => _ = on.grpc.insert(8),
            "internal" => _ = on.grpc.insert(13),
            "unavailable" => _ = on.grpc.insert(14),
            other => {
                return at(
                    "retry_on",
                    format!("retry condition {other:?} is not implemented"),
                );
            }
        }
    }
    let status_codes = r
        .retriable_status_codes
        .iter()
        .map(|&c| {
            u16::try_from(c)
                .ok()
                .filter(|c| (100..600).contains(c))
                .map_or_else(
                    || {
                        at(
                            "retriable_status_codes",
                            format!("{c} is not an HTTP status"),
                        )
                    },
                    Ok,
                )
        })
        .collect::<Partial<_>>()?;
    let mut other_hosts = false;
    for (i, p) in r.retry_host_predicate.iter().enumerate() {
        use sextant_proto::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
        let is_previous_hosts = matches!(&p.config_type,
            Some(pb::retry_policy::retry_host_predicate::ConfigType::TypedConfig(c)) if c.type_url.ends_with(&format!("/{}", PreviousHostsPredicate::full_name())));
        if p.name != "envoy.retry_host_predicates.previous_hosts" || !is_previous_hosts {
            return at(
                format!("retry_host_predicate[{i}]"),
                format!("retry host predicate {:?} is not implemented", p.name),
            );
        }
        other_hosts = true;
    }
    let base = match r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.base_interval.as_ref())
    {
        Some(d) => within("retry_back_off.base_interval", duration(d))?,
        None => Duration::from_millis(25),
    };
    let max = match r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.max_interval.as_ref())
    {
        Some(d) => within("retry_back_off.max_interval", duration(d))?,
        None => base * 10,
    };
    if base.is_zero() || max < base {
        return at(
            "retry_back_off",
            "base_interval must be above zero and max_interval at least base_interval",
        );
    }
    Ok(RetryPolicy {
        on,
        status_codes,
        num_retries: r.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: match &r.per_try_timeout {
            Some(d) => Some(within("per_try_timeout", duration(d))?).filter(|d| !d.is_zero()),
            None => None,
        },
        other_hosts,
        host_selection_attempts: u32::try_from(r.host_selection_retry_max_attempts.max(1))
            .unwrap_or(u32::MAX),
        backoff: (base, max),
    })
}

fn hash_policy(h: &pb::route_action::HashPolicy) -> Partial<HashPolicy> {
    use pb::route_action::hash_policy::PolicySpecifier as P;
    let input = match &h.policy_specifier {
        Some(P::Header(h)) => HashInput::Header(h.header_name.to_ascii_lowercase()),
        Some(P::Cookie(c)) => HashInput::Cookie {
            name: c.name.clone(),
            path: c.path.clone(),
            ttl: match &c.ttl {
                Some(d) => Some(within("cookie.ttl", duration(d))?),
                None => None,
            },
        },
        Some(P::ConnectionProperties(p)) if p.source_ip => HashInput::SourceIp,
        Some(P::QueryParameter(q)) => HashInput::Query(q.name.clone()),
        _ => return at("policy_specifier", "this hash policy is not implemented"),
    };
    Ok(HashPolicy {
        input,
        terminal: h.terminal,
    })
}

fn redirect(a: &pb::RedirectAction) -> Partial<Redirect> {
    use pb::redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as R, SchemeRewriteSpecifier as S,
    };
    let scheme = match &a.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let path = match &a.path_rewrite_specifier {
        Some(P::PathRedirect(p)) => Some(RedirectPath::Path(p.clone())),
        Some(P::PrefixRewrite(p)) => Some(RedirectPath::Prefix(p.clone())),
        Some(_) => return at("path_rewrite_specifier", "regex_rewrite is not implemented"),
        None => None,
    };
    let status = match R::try_from(a.response_code) {
        Ok(R::MovedPermanently) => 301,
        Ok(R::Found) => 302,
        Ok(R::SeeOther) => 303,
        Ok(R::TemporaryRedirect) => 307,
        Ok(R::PermanentRedirect) => 308,
        Err(_) => {
            return at(
                "response_code",
                format!("unknown redirect code {}", a.response_code),
            );
        }
    };
    Ok(Redirect {
        scheme,
        host: Some(a.host_redirect.clone()).filter(|h| !h.is_empty()),
        port: match a.port_redirect {
            0 => None,
            p => Some(
                u16::try_from(p)
                    .or_else(|_| at("port_redirect", format!("port {p} is out of range")))?,
            ),
        },
        path,
        status,
        strip_query: a.strip_query,
    })
}

fn direct(a: &pb::DirectResponseAction) -> Partial<Direct> {
    let status = u16::try_from(a.status)
        .ok()
        .filter(|s| (200..600).contains(s));
    let Some(status) = status else {
        return at("status", format!("{} is not a response status", a.status));
    };
    let body = match a.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        Some(core::data_source::Specifier::InlineString(s)) => s.clone().into_bytes(),
        Some(core::data_source::Specifier::InlineBytes(b)) => b.clone(),
        Some(_) => return at("body", "only inline bodies are implemented"),
        None => Vec::new(),
    };
    Ok(Direct { status, body })
}

fn fault_config(any: &Any) -> Partial<Fault> {
    if !any
        .type_url
        .ends_with(&format!("/{}", fault::HttpFault::full_name()))
    {
        return at("", format!("expected HTTPFault, not {}", any.type_url));
    }
    let f: fault::HttpFault = decode_payload(any)?;
    use sextant_proto::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
    let delay = match &f.delay {
        Some(d) => match &d.fault_delay_secifier {
            Some(FaultDelaySecifier::FixedDelay(fixed)) => Some((
                within("delay.fixed_delay", duration(fixed))?,
                d.percentage.as_ref().map_or(0, per_million),
            )),
            _ => return at("delay", "only fixed_delay is implemented"),
        },
        None => None,
    };
    let abort = match &f.abort {
        Some(a) => match a.error_type {
            Some(fault::fault_abort::ErrorType::HttpStatus(s)) => {
                let status = u16::try_from(s).ok().filter(|s| (200..600).contains(s));
                let Some(status) = status else {
                    return at("abort.http_status", format!("{s} is not a response status"));
                };
                Some((status, a.percentage.as_ref().map_or(0, per_million)))
            }
            _ => return at("abort", "only http_status aborts are implemented"),
        },
        None => None,
    };
    Ok(Fault { delay, abort })
}

fn cors_policy(any: &Any) -> Partial<Cors> {
    if !any
        .type_url
        .ends_with(&format!("/{}", cors::CorsPolicy::full_name()))
    {
        return at("", format!("expected CorsPolicy, not {}", any.type_url));
    }
    let c: cors::CorsPolicy = decode_payload(any)?;
    let origins = c
        .allow_origin_string_match
        .iter()
        .enumerate()
        .map(|(i, m)| {
            within(
                &format!("allow_origin_string_match[{i}]"),
                string_matcher(m),
            )
        })
        .collect::<Partial<_>>()?;
    Ok(Cors {
        origins,
        methods: c.allow_methods.clone(),
        headers: c.allow_headers.clone(),
        expose: c.expose_headers.clone(),
        max_age: c.max_age.clone(),
        credentials: c.allow_credentials.as_ref().is_some_and(|b| b.value),
    })
}

/// A fraction in parts per million, capped at one.
pub(crate) fn per_million(f: &FractionalPercent) -> u32 {
    use sextant_proto::envoy::r#type::v3::fractional_percent::DenominatorType as D;
    let scale = match D::try_from(f.denominator) {
        Ok(D::TenThousand) => 100,
        Ok(D::Million) => 1,
        _ => 10_000,
    };
    f.numerator.saturating_mul(scale).min(MILLION)
}

fn header_ops(
    request_add: &[core::HeaderValueOption],
    request_remove: &[String],
    response_add: &[core::HeaderValueOption],
    response_remove: &[String],
) -> Partial<HeaderOps> {
    let adds = |list: &[core::HeaderValueOption], field: &str| {
        list.iter()
            .enumerate()
            .map(|(i, o)| {
                let path = format!("{field}[{i}]");
                let Some(h) = &o.header else {
                    return at(path, "a header to add needs a header");
                };
                if http_name_invalid(&h.key) {
                    return at(
                        format!("{path}.header.key"),
                        format!("{:?} is not a valid header name", h.key),
                    );
                }
                let overwrite = match core::header_value_option::HeaderAppendAction::try_from(
                    o.append_action,
                ) {
                    Ok(core::header_value_option::HeaderAppendAction::AppendIfExistsOrAdd) => false,
                    Ok(core::header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd) => {
                        true
                    }
                    _ => {
                        return at(
                            format!("{path}.append_action"),
                            format!("append_action {} is not implemented", o.append_action),
                        );
                    }
                };
                Ok(HeaderAdd {
                    name: h.key.to_ascii_lowercase(),
                    value: h.value.clone(),
                    overwrite,
                })
            })
            .collect::<Partial<Vec<_>>>()
    };
    Ok(HeaderOps {
        request_add: adds(request_add, "request_headers_to_add")?,
        request_remove: request_remove
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        response_add: adds(response_add, "response_headers_to_add")?,
        response_remove: response_remove
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    })
}

/// Header names are tokens (RFC 9110), and pseudo-headers cannot be added.
fn http_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl RouteConfig {
    /// The clusters its routes may send to (for checking that they exist).
    pub fn clusters(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        for route in self.virtual_hosts.iter().flat_map(|v| &v.routes) {
            if let Action::Forward(f) = &route.action {
                match &f.clusters {
                    Clusters::One(c) => _ = out.insert(c.as_str()),
                    Clusters::Weighted(list) => out.extend(list.iter().map(|c| c.name.as_str())),
                }
                out.extend(f.mirrors.iter().map(|m| m.cluster.as_str()));
            }
        }
        out
    }
}
