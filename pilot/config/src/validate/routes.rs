//! VirtualServices: hosts, gateways, HTTP, TCP and TLS routes, resolved against the DestinationRules.

use std::collections::BTreeMap;

use sextant_resources::{ConfigError, Resource};

use super::matches::{E, headers, string_match, subnet_problem};
use super::{Errs, LeftOut};
use crate::export::ExportTo;
use crate::load::NetworkingSet;
use crate::model::{
    DestinationRule, HttpRouteModel, MESH_GATEWAY, RequestMatch, RouteTarget, TcpRouteModel,
    TlsRouteModel, VirtualService,
};
use crate::types::{
    Destination, GatewaySpec, HttpMatch, HttpRoute, StringMatch, TcpRoute, TlsRoute,
};

/// Conditions Envoy retries on (`retryOn`), besides HTTP status codes.
const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Validates VirtualServices against the DestinationRules and Gateways that passed; those with errors are
/// left out. References to resources left out degrade (see [`super::validate_each`]).
pub(super) fn virtual_services(
    set: &NetworkingSet,
    rules: &BTreeMap<String, DestinationRule>,
    gateways: &[Resource<GatewaySpec>],
    left_out: &LeftOut,
    errors: &mut Vec<ConfigError>,
) -> Vec<VirtualService> {
    let gateway_keys: Vec<String> = gateways.iter().map(Resource::key).collect();
    let mut out = Vec::new();
    for r in &set.virtual_services {
        let before = errors.len();
        let mut e = Errs::new(r, "VirtualService", errors);
        let v = Vs {
            ns: &r.namespace,
            rules,
            gateway_keys: &gateway_keys,
            left_out,
        };
        let spec = &r.spec;
        e.export_to(&spec.export_to);
        if spec.hosts.is_empty() {
            e.push("spec.hosts", "a VirtualService needs at least one host");
        }
        let mut seen = BTreeMap::new();
        let mut hosts = Vec::new();
        for (i, h) in spec.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            e.host(&field, h);
            let host = crate::host::resolve(h, &r.namespace);
            e.unique(&mut seen, &field, "host", &host);
            hosts.push(host);
        }
        let mut gateways = v.gateways(&mut e, "spec.gateways", &spec.gateways);
        if gateways.is_empty() {
            gateways.push(MESH_GATEWAY.to_string());
        }
        if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
            e.push("spec", "a VirtualService needs http, tcp or tls routes");
        }
        let mut names = BTreeMap::new();
        let http = (spec.http.iter().enumerate())
            .map(|(i, route)| {
                let field = format!("spec.http[{i}]");
                if let Some(name) = &route.name {
                    e.unique(&mut names, &format!("{field}.name"), "route name", name);
                }
                v.http_route(&mut e, &field, route)
            })
            .collect();
        let tcp = (spec.tcp.iter().enumerate())
            .map(|(i, route)| v.tcp_route(&mut e, &format!("spec.tcp[{i}]"), route))
            .collect();
        let tls = (spec.tls.iter().enumerate())
            .map(|(i, route)| v.tls_route(&mut e, &format!("spec.tls[{i}]"), route, &spec.hosts))
            .collect();
        if e.errors.len() > before {
            continue;
        }
        out.push(VirtualService {
            resource: r.clone(),
            hosts,
            gateways,
            http,
            tcp,
            tls,
            export_to: ExportTo::resolve(&spec.export_to, &r.namespace),
        });
    }
    out
}

/// What a VirtualService's routes are checked against.
struct Vs<'a> {
    ns: &'a str,
    rules: &'a BTreeMap<String, DestinationRule>,
    gateway_keys: &'a [String],
    left_out: &'a LeftOut,
}

impl Vs<'_> {
    fn gateways(&self, e: &mut E<'_>, field: &str, list: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, g) in list.iter().enumerate() {
            if g == MESH_GATEWAY {
                out.push(g.clone());
                continue;
            }
            let key = if g.contains('/') {
                g.clone()
            } else {
                format!("{}/{g}", self.ns)
            };
            // A gateway left out is no error here: the route applies to nothing there, as in Istio.
            if !self.gateway_keys.contains(&key) && !self.left_out.gateway(&key) {
                e.push(
                    &format!("{field}[{i}]"),
                    format!(
                        "unknown gateway {key}; gateways defined: {}",
                        list_or_none(self.gateway_keys)
                    ),
                );
            }
            out.push(key);
        }
        out
    }

    fn http_route(&self, e: &mut E<'_>, field: &str, route: &HttpRoute) -> HttpRouteModel {
        let matches = (route.matches.iter().enumerate())
            .map(|(i, m)| self.request_match(e, &format!("{field}.match[{i}]"), m))
            .collect();
        match (route.route.is_empty(), &route.redirect) {
            (true, None) => e.push(field, "a route needs route (destinations) or redirect"),
            (false, Some(_)) => e.push(
                &format!("{field}.redirect"),
                "set route or redirect, not both",
            ),
            _ => {}
        }
        let dests: Vec<(&Destination, Option<u32>)> = route
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        let destinations = self.targets(e, &format!("{field}.route"), &dests);
        for (i, d) in route.route.iter().enumerate() {
            if let Some(h) = &d.headers {
                headers(e, &format!("{field}.route[{i}].headers"), h);
            }
        }
        if let Some(h) = &route.headers {
            headers(e, &format!("{field}.headers"), h);
        }
        if let Some(redirect) = &route.redirect {
            if let Some(p) = redirect.port {
                e.port(&format!("{field}.redirect.port"), p);
            }
            if let Some(code) = redirect.redirect_code
                && !(300..=399).contains(&code)
            {
                e.push(
                    &format!("{field}.redirect.redirectCode"),
                    format!("{code} is not a redirect status (300-399)"),
                );
            }
        }
        if let Some(retries) = &route.retries
            && let Some(on) = &retries.retry_on
        {
            for cond in on.split(',').map(str::trim) {
                let status = cond.parse::<u32>().is_ok_and(|c| (100..=599).contains(&c));
                if !status && !RETRY_ON.contains(&cond) {
                    e.push(
                        &format!("{field}.retries.retryOn"),
                        format!(
                            "unknown retry condition {cond:?}; use an HTTP status or one of {}",
                            RETRY_ON.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(fault) = &route.fault {
            let f = format!("{field}.fault");
            if fault.delay.is_none() && fault.abort.is_none() {
                e.push(&f, "a fault needs delay or abort");
            }
            if let Some(p) = fault.delay.as_ref().and_then(|d| d.percentage) {
                e.percent(&format!("{f}.delay.percentage.value"), p.value);
            }
            if let Some(abort) = &fault.abort {
                if let Some(p) = abort.percentage {
                    e.percent(&format!("{f}.abort.percentage.value"), p.value);
                }
                if !(200..=599).contains(&abort.http_status) {
                    e.push(
                        &format!("{f}.abort.httpStatus"),
                        format!(
                            "{} is not an HTTP status between 200 and 599",
                            abort.http_status
                        ),
                    );
                }
            }
        }
        let mirror = route.mirror.as_ref().and_then(|m| {
            self.targets(e, &format!("{field}.mirror"), &[(m, None)])
                .pop()
        });
        if let Some(p) = route.mirror_percentage {
            e.percent(&format!("{field}.mirrorPercentage.value"), p.value);
        }
        if let Some(cors) = &route.cors_policy {
            for (i, o) in cors.allow_origins.iter().enumerate() {
                string_match(
                    e,
                    &format!("{field}.corsPolicy.allowOrigins[{i}]"),
                    o,
                    false,
                    false,
                );
            }
        }
        HttpRouteModel {
            spec: route.clone(),
            matches,
            destinations,
            mirror,
        }
    }

    fn request_match(&self, e: &mut E<'_>, field: &str, m: &HttpMatch) -> RequestMatch {
        let mut one = |name: &str, sm: &Option<StringMatch>, icase: bool| {
            sm.as_ref()
                .and_then(|sm| string_match(e, &format!("{field}.{name}"), sm, false, icase))
        };
        let uri = one("uri", &m.uri, m.ignore_uri_case);
        let scheme = one("scheme", &m.scheme, false);
        let method = one("method", &m.method, false);
        let authority = one("authority", &m.authority, false);
        let mut map = |name: &str, map: &BTreeMap<String, StringMatch>, lower: bool| {
            let mut out = Vec::new();
            for (k, sm) in map {
                let f = format!("{field}.{name}.{k}");
                if lower && (k.is_empty() || k.bytes().any(|b| b.is_ascii_uppercase())) {
                    e.push(
                        &f,
                        format!("header name {k:?} must be non-empty lower case"),
                    );
                }
                if let Some(matcher) = string_match(e, &f, sm, true, false) {
                    out.push((k.clone(), matcher));
                }
            }
            out
        };
        let headers = map("headers", &m.headers, true);
        let without_headers = map("withoutHeaders", &m.without_headers, true);
        let query_params = map("queryParams", &m.query_params, false);
        let port = m.port.and_then(|p| e.port(&format!("{field}.port"), p));
        let gateways = self.gateways(e, &format!("{field}.gateways"), &m.gateways);
        RequestMatch {
            uri,
            scheme,
            method,
            authority,
            headers,
            without_headers,
            query_params,
            port,
            source_labels: m.source_labels.clone(),
            gateways,
            ignore_uri_case: m.ignore_uri_case,
        }
    }

    fn tcp_route(&self, e: &mut E<'_>, field: &str, route: &TcpRoute) -> TcpRouteModel {
        for (i, m) in route.matches.iter().enumerate() {
            let f = format!("{field}.match[{i}]");
            if let Some(p) = m.port {
                e.port(&format!("{f}.port"), p);
            }
            for (j, s) in m.destination_subnets.iter().enumerate() {
                if let Some(problem) = subnet_problem(s) {
                    e.push(&format!("{f}.destinationSubnets[{j}]"), problem);
                }
            }
            self.gateways(e, &format!("{f}.gateways"), &m.gateways);
        }
        if route.route.is_empty() {
            e.push(&format!("{field}.route"), "a TCP route needs destinations");
        }
        let dests: Vec<(&Destination, Option<u32>)> = route
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        TcpRouteModel {
            matches: route.matches.clone(),
            destinations: self.targets(e, &format!("{field}.route"), &dests),
        }
    }

    /// A TLS passthrough route: each match names SNI hosts within the VirtualService's `hosts` (as written).
    fn tls_route(
        &self,
        e: &mut E<'_>,
        field: &str,
        route: &TlsRoute,
        hosts: &[String],
    ) -> TlsRouteModel {
        if route.matches.is_empty() {
            e.push(
                &format!("{field}.match"),
                "a TLS route needs a match with sniHosts",
            );
        }
        let mut matches = route.matches.clone();
        for (i, m) in matches.iter_mut().enumerate() {
            let f = format!("{field}.match[{i}]");
            if m.sni_hosts.is_empty() {
                e.push(&format!("{f}.sniHosts"), "a TLS match needs sniHosts");
            }
            for (j, sni) in m.sni_hosts.iter_mut().enumerate() {
                *sni = sni.to_ascii_lowercase();
                if !hosts
                    .iter()
                    .any(|h| crate::host::matches(&h.to_ascii_lowercase(), sni))
                {
                    e.push(
                        &format!("{f}.sniHosts[{j}]"),
                        format!(
                            "{sni} is not one of the VirtualService's hosts ({})",
                            hosts.join(", ")
                        ),
                    );
                }
            }
            if let Some(p) = m.port {
                e.port(&format!("{f}.port"), p);
            }
            self.gateways(e, &format!("{f}.gateways"), &m.gateways);
        }
        if route.route.is_empty() {
            e.push(&format!("{field}.route"), "a TLS route needs destinations");
        }
        let dests: Vec<(&Destination, Option<u32>)> = route
            .route
            .iter()
            .map(|d| (&d.destination, d.weight))
            .collect();
        TlsRouteModel {
            matches,
            destinations: self.targets(e, &format!("{field}.route"), &dests),
        }
    }

    /// Resolves destinations; their weights must sum to 100 when there are several or any is written.
    fn targets(
        &self,
        e: &mut E<'_>,
        field: &str,
        dests: &[(&Destination, Option<u32>)],
    ) -> Vec<RouteTarget> {
        let single = field.ends_with(".mirror");
        let mut out = Vec::new();
        for (i, (d, weight)) in dests.iter().enumerate() {
            let f = if single {
                field.to_string()
            } else {
                format!("{field}[{i}].destination")
            };
            e.host(&format!("{f}.host"), &d.host);
            if d.host.contains('*') {
                e.push(
                    &format!("{f}.host"),
                    format!(
                        "{:?}: a destination names one service, not a wildcard",
                        d.host
                    ),
                );
            }
            let host = crate::host::resolve(&d.host, self.ns);
            let port = d
                .port
                .as_ref()
                .and_then(|p| e.port(&format!("{f}.port.number"), p.number));
            let mut labels = Default::default();
            if let Some(subset) = &d.subset {
                match self.rules.get(&host) {
                    // Its rule was left out: the route goes to a cluster that does not exist (503).
                    None if self.left_out.rule_of(&host) => {}
                    None => e.push(
                        &format!("{f}.subset"),
                        format!("unknown subset {subset:?}: no DestinationRule defines subsets of host {host}"),
                    ),
                    Some(rule) => match rule.subset(subset) {
                        Some(s) => labels = s.labels.clone(),
                        None => e.push(
                            &format!("{f}.subset"),
                            format!(
                                "unknown subset {subset:?} of host {host}; DestinationRule {} defines {}",
                                rule.resource.key(),
                                list_or_none(&subset_names(rule))
                            ),
                        ),
                    },
                }
            }
            out.push(RouteTarget {
                host,
                subset: d.subset.clone(),
                labels,
                port,
                weight: weight.unwrap_or(0),
            });
        }
        if out.len() == 1 && dests[0].1.is_none() {
            out[0].weight = 100;
        } else if !out.is_empty() {
            let sum: u64 = out.iter().map(|t| u64::from(t.weight)).sum();
            if sum != 100 {
                let parts: Vec<String> = out
                    .iter()
                    .map(|t| format!("{}: {}", t.subset.as_deref().unwrap_or(&t.host), t.weight))
                    .collect();
                e.push(
                    field,
                    format!("route weights sum to {sum}, not 100 ({})", parts.join(", ")),
                );
            }
        }
        out
    }
}

fn list_or_none(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// The names of a DestinationRule's subsets, in order.
fn subset_names(rule: &DestinationRule) -> Vec<String> {
    let mut names: Vec<String> = rule.subsets().map(|s| s.name.clone()).collect();
    names.sort();
    names
}
