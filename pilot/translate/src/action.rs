//! One VirtualService HTTP route as Envoy routes: its matches, and what the route does (forward with
//! weights, rewrite, redirect, time out, retry, inject faults, mirror, edit headers, answer CORS).

use std::collections::HashMap;

use pilot_config::types::{
    CorsPolicy as IstioCors, Fault, HeaderOperations, Headers, HttpRetry, Percent, StringMatch,
};
use pilot_config::{HttpRouteModel, Matcher, RequestMatch};
use sextant_proto::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use sextant_proto::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, header_matcher,
    query_parameter_matcher, redirect_action, retry_policy, route_match,
};
use sextant_proto::envoy::config::route::v3::{RouteMatch, route_action::RequestMirrorPolicy};
use sextant_proto::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use sextant_proto::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use sextant_proto::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use sextant_proto::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use sextant_proto::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use sextant_proto::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use sextant_proto::google::protobuf::{Any, BoolValue, UInt32Value};

use crate::names::{CORS_FILTER, FAULT_FILTER};
use crate::policy::duration;

/// What Istio retries when a route says nothing about retries.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// How many retries Istio allows when a route says nothing about retries.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// The Envoy match of one compiled Istio match.
pub fn route_match(m: &RequestMatch) -> RouteMatch {
    use route_match::PathSpecifier as P;
    let path = match &m.uri {
        None | Some(Matcher::Present) => P::Prefix("/".into()),
        Some(Matcher::Exact(s)) => P::Path(s.clone()),
        Some(Matcher::Prefix(s)) => P::Prefix(s.clone()),
        Some(Matcher::Regex(r)) => P::SafeRegex(regex(r.as_str(), m.ignore_uri_case)),
    };
    let mut headers = Vec::new();
    for (name, pseudo) in [
        (&m.method, ":method"),
        (&m.authority, ":authority"),
        (&m.scheme, ":scheme"),
    ] {
        if let Some(mt) = name {
            headers.push(header(pseudo, mt, false));
        }
    }
    headers.extend(m.headers.iter().map(|(n, mt)| header(n, mt, false)));
    headers.extend(m.without_headers.iter().map(|(n, mt)| header(n, mt, true)));
    RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m.ignore_uri_case.then_some(BoolValue { value: false }),
        headers,
        query_parameters: m
            .query_params
            .iter()
            .map(|(name, mt)| QueryParameterMatcher {
                name: name.clone(),
                query_parameter_match_specifier: Some(match string(mt) {
                    Some(s) => {
                        query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(s)
                    }
                    None => {
                        query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
                    }
                }),
            })
            .collect(),
        ..Default::default()
    }
}

fn regex(pattern: &str, ignore_case: bool) -> RegexMatcher {
    RegexMatcher {
        regex: if ignore_case {
            format!("(?i){pattern}")
        } else {
            pattern.to_string()
        },
        ..Default::default()
    }
}

fn string(m: &Matcher) -> Option<StringMatcher> {
    use string_matcher::MatchPattern as M;
    let pattern = match m {
        Matcher::Present => return None,
        Matcher::Exact(s) => M::Exact(s.clone()),
        Matcher::Prefix(s) => M::Prefix(s.clone()),
        Matcher::Regex(r) => M::SafeRegex(regex(r.as_str(), false)),
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn header(name: &str, m: &Matcher, invert: bool) -> HeaderMatcher {
    use header_matcher::HeaderMatchSpecifier as H;
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(match string(m) {
            Some(s) => H::StringMatch(s),
            None => H::PresentMatch(true),
        }),
        invert_match: invert,
        ..Default::default()
    }
}

/// The retry policy of a route: Istio's default when unset, none when `attempts` is 0. Numeric codes in
/// `retryOn` become retriable status codes.
pub fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let (attempts, per_try, retry_on) = match retries {
        None => (DEFAULT_RETRY_ATTEMPTS, None, None),
        Some(r) if r.attempts == 0 => return None,
        Some(r) => (r.attempts, r.per_try_timeout, r.retry_on.as_deref()),
    };
    let mut on: Vec<String> = Vec::new();
    let mut codes: Vec<u32> = Vec::new();
    for part in retry_on.unwrap_or(DEFAULT_RETRY_ON).split(',') {
        let part = part.trim();
        match part.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) if !part.is_empty() => on.push(part.to_string()),
            Err(_) => {}
        }
    }
    if retry_on.is_none() {
        codes.push(503);
    }
    if !codes.is_empty() && !on.iter().any(|p| p == "retriable-status-codes") {
        on.push("retriable-status-codes".into());
    }
    Some(RetryPolicy {
        retry_on: on.join(","),
        num_retries: Some(UInt32Value { value: attempts }),
        per_try_timeout: per_try.map(|d| duration(d.get())),
        retriable_status_codes: codes,
        // Prefer another endpoint for the retry, giving up after a few picks when there is none.
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                pilot_xds::build::any(&PreviousHostsPredicate::default()),
            )),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    })
}

/// A percentage in millionths, as the fault filter and mirrors take it; all when absent.
pub fn fraction(p: Option<Percent>) -> FractionalPercent {
    let value = p.map_or(100.0, |p| p.value.clamp(0.0, 100.0));
    FractionalPercent {
        // value ≤ 100, so value × 10 000 ≤ 1 000 000 fits in u32.
        numerator: (value * 10_000.0).round() as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

/// The per-route configuration of the fault filter.
pub fn fault(f: &Fault) -> HttpFault {
    HttpFault {
        delay: f.delay.as_ref().map(|d| FaultDelay {
            percentage: Some(fraction(d.percentage)),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(
                d.fixed_delay.get(),
            ))),
        }),
        abort: f.abort.as_ref().map(|a| FaultAbort {
            percentage: Some(fraction(a.percentage)),
            error_type: Some(fault_abort::ErrorType::HttpStatus(a.http_status)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The typed per-filter configuration of a route: its fault and, when `cors` is allowed, its CORS policy.
pub fn per_filter_config(route: &HttpRouteModel, cors: bool) -> HashMap<String, Any> {
    let mut out = HashMap::new();
    if let Some(f) = &route.spec.fault {
        out.insert(FAULT_FILTER.to_string(), pilot_xds::build::any(&fault(f)));
    }
    if let Some(c) = route.spec.cors_policy.as_ref().filter(|_| cors) {
        out.insert(
            CORS_FILTER.to_string(),
            pilot_xds::build::any(&self::cors(c)),
        );
    }
    out
}

/// The mirror policy of a route.
pub fn mirror(cluster: String, percent: Option<Percent>) -> RequestMirrorPolicy {
    RequestMirrorPolicy {
        cluster,
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(fraction(percent)),
            runtime_key: String::new(),
        }),
        ..Default::default()
    }
}

/// The redirect a route answers with.
pub fn redirect(r: &pilot_config::types::HttpRedirect) -> RedirectAction {
    use redirect_action::RedirectResponseCode as C;
    let code = match r.redirect_code {
        Some(302) => C::Found,
        Some(303) => C::SeeOther,
        Some(307) => C::TemporaryRedirect,
        Some(308) => C::PermanentRedirect,
        _ => C::MovedPermanently,
    };
    RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        port_redirect: r.port.unwrap_or(0),
        response_code: code as i32,
        path_rewrite_specifier: r
            .uri
            .clone()
            .map(redirect_action::PathRewriteSpecifier::PathRedirect),
        scheme_rewrite_specifier: r
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        ..Default::default()
    }
}

/// Header edits, split the way Envoy takes them.
#[derive(Debug, Default)]
pub struct HeaderEdits {
    /// Request headers set or appended.
    pub request_add: Vec<HeaderValueOption>,
    /// Request headers removed.
    pub request_remove: Vec<String>,
    /// Response headers set or appended.
    pub response_add: Vec<HeaderValueOption>,
    /// Response headers removed.
    pub response_remove: Vec<String>,
}

/// Istio's `headers` (request and response; set, add, remove) as Envoy header edits.
pub fn header_edits(h: Option<&Headers>) -> HeaderEdits {
    let (request_add, request_remove) = ops(h.and_then(|h| h.request.as_ref()));
    let (response_add, response_remove) = ops(h.and_then(|h| h.response.as_ref()));
    HeaderEdits {
        request_add,
        request_remove,
        response_add,
        response_remove,
    }
}

fn ops(o: Option<&HeaderOperations>) -> (Vec<HeaderValueOption>, Vec<String>) {
    use header_value_option::HeaderAppendAction as A;
    let Some(o) = o else {
        return (Vec::new(), Vec::new());
    };
    let value = |(k, v): (&String, &String), action: A| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut add: Vec<HeaderValueOption> = o
        .set
        .iter()
        .map(|kv| value(kv, A::OverwriteIfExistsOrAdd))
        .collect();
    add.extend(o.add.iter().map(|kv| value(kv, A::AppendIfExistsOrAdd)));
    (add, o.remove.clone())
}

/// An Istio CORS policy as the CORS filter's per-route configuration.
pub fn cors(c: &IstioCors) -> CorsPolicy {
    CorsPolicy {
        allow_origin_string_match: c.allow_origins.iter().filter_map(origin).collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .map(|d| d.get().as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

fn origin(m: &StringMatch) -> Option<StringMatcher> {
    use string_matcher::MatchPattern as M;
    let pattern = if let Some(e) = &m.exact {
        M::Exact(e.clone())
    } else if let Some(p) = &m.prefix {
        M::Prefix(p.clone())
    } else {
        M::SafeRegex(RegexMatcher {
            regex: m.regex.clone()?,
            ..Default::default()
        })
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}
