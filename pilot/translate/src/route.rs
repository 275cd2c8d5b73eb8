//! Route configurations: one per HTTP port, named by its number, with a virtual host per service on that
//! port (Istio's domains) whose routes come from the VirtualServices covering the host, in order, or a
//! default route to the service's cluster.

use std::collections::BTreeSet;

use pilot_config::types::OutboundMode;
use pilot_config::{HttpRouteModel, MeshConfig, RegistrySnapshot, RouteTarget, Service};
use sextant_proto::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, route, route_action, route_match, weighted_cluster,
};
use sextant_proto::google::protobuf::{BoolValue, Duration, UInt32Value};

use crate::action::{self, HeaderEdits};
use crate::policy::Effective;
use crate::scope::Scope;
use crate::{Interception, ProxyInfo, ProxyKind, cluster_name, route_name};

/// The Kubernetes service domain Istio shortens host names within.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// What a route configuration is for.
#[derive(Clone, Copy, Debug)]
pub struct RouteContext<'a> {
    /// The validated networking config.
    pub mesh: &'a MeshConfig,
    /// The registry.
    pub registry: &'a RegistrySnapshot,
    /// The proxy asking.
    pub proxy: &'a ProxyInfo,
    /// The gateway the routes are for: [`pilot_config::MESH_GATEWAY`] for sidecars, `namespace/name` for a router.
    pub gateway: &'a str,
}

/// The route configuration of HTTP `port`, for the `services` serving HTTP on it, with the
/// VirtualServices of `scope`.
pub fn route_configuration(
    cx: RouteContext<'_>,
    scope: &Scope<'_>,
    port: u16,
    services: &[&Service],
) -> RouteConfiguration {
    let mut seen = BTreeSet::new();
    let mut virtual_hosts: Vec<VirtualHost> = services
        .iter()
        .map(|s| {
            let domains = domains(&s.hostname, &cx.proxy.namespace, port)
                .into_iter()
                // Envoy refuses a configuration that lists a domain twice.
                .filter(|d| seen.insert(d.clone()))
                .collect();
            VirtualHost {
                name: format!("{}:{port}", s.hostname),
                domains,
                routes: routes(cx, scope, s, port),
                include_request_attempt_count: true,
                ..Default::default()
            }
        })
        .filter(|vh| !vh.domains.is_empty())
        .collect();
    let sidecar = cx.proxy.kind != ProxyKind::ProxylessGrpc;
    if sidecar && cx.proxy.interception == Interception::Redirect && seen.insert("*".into()) {
        virtual_hosts.push(unknown_hosts(scope.outbound));
    }
    RouteConfiguration {
        name: route_name(port),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// The names a service answers to on `port`, as Istio lists them: the full host, and for cluster-local
/// hosts `NAME.NS.svc` and `NAME.NS` (and `NAME` from the same namespace), each also with `:PORT`.
pub fn domains(host: &str, proxy_namespace: &str, port: u16) -> Vec<String> {
    let mut names = vec![host.to_string()];
    if let Some((name, ns)) = host
        .strip_suffix(CLUSTER_DOMAIN)
        .and_then(|h| h.strip_suffix('.'))
        .and_then(|h| h.split_once('.'))
        .filter(|(name, ns)| !name.is_empty() && !ns.is_empty() && !ns.contains('.'))
    {
        if ns == proxy_namespace {
            names.push(name.to_string());
        }
        names.push(format!("{name}.{ns}.svc"));
        names.push(format!("{name}.{ns}"));
    }
    names
        .into_iter()
        .flat_map(|n| [format!("{n}:{port}"), n])
        .collect()
}

/// The virtual host for hosts the mesh does not know: Istio's `allow_any` (on where the caller sent them)
/// or, under `REGISTRY_ONLY`, `block_all` (answered 502).
fn unknown_hosts(mode: OutboundMode) -> VirtualHost {
    let route = match mode {
        OutboundMode::AllowAny => {
            forward(catch_all(), "allow_any", crate::names::PASSTHROUGH.into())
        }
        OutboundMode::RegistryOnly => Route {
            name: "block_all".into(),
            r#match: Some(catch_all()),
            action: Some(route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                ..Default::default()
            })),
            ..Default::default()
        },
    };
    let name = match mode {
        OutboundMode::AllowAny => "allow_any",
        OutboundMode::RegistryOnly => "block_all",
    };
    VirtualHost {
        name: name.into(),
        domains: vec!["*".into()],
        routes: vec![route],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// The routes of `service` on `port` for this proxy.
fn routes(cx: RouteContext<'_>, scope: &Scope<'_>, service: &Service, port: u16) -> Vec<Route> {
    let vss = scope.virtual_services_for(&service.hostname);
    let http: Vec<&HttpRouteModel> = vss.iter().flat_map(|vs| vs.http.iter()).collect();
    if http.is_empty() {
        let cluster = cluster_name(port, None, &service.hostname);
        let mut route = forward(catch_all(), "default", cluster);
        let rule = cx
            .mesh
            .destination_rule(&service.hostname, &cx.proxy.namespace);
        let hash = Effective::of(rule, None, port)
            .consistent_hash()
            .and_then(crate::policy::hash_policy);
        if let (Some(route::Action::Route(a)), Some(h)) = (&mut route.action, hash) {
            a.hash_policy.push(h);
        }
        return vec![route];
    }
    http.into_iter()
        .flat_map(|r| http_route(cx, r, port, true))
        .collect()
}

pub(crate) fn catch_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    }
}

/// A plain forward with Istio's defaults: no timeout, the default retries.
pub(crate) fn forward(m: RouteMatch, name: &str, cluster: String) -> Route {
    Route {
        name: name.to_string(),
        r#match: Some(m),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
            timeout: Some(Duration::default()),
            retry_policy: action::retry_policy(None),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Whether a match applies to this proxy on this port: its port, the caller's labels and namespace, and
/// its gateways (a sidecar is the `mesh` gateway); a match naming no gateways applies where its
/// VirtualService is `bound`.
fn applies(cx: RouteContext<'_>, r: &HttpRouteModel, i: usize, port: u16, bound: bool) -> bool {
    let Some(m) = r.matches.get(i) else {
        return false;
    };
    let source_ns = r
        .spec
        .matches
        .get(i)
        .and_then(|w| w.source_namespace.as_ref());
    m.port.is_none_or(|p| p == port)
        && cx.proxy.labels.matches(&m.source_labels)
        && source_ns.is_none_or(|ns| *ns == cx.proxy.namespace)
        && if m.gateways.is_empty() {
            bound
        } else {
            m.gateways.iter().any(|g| g == cx.gateway)
        }
}

/// One VirtualService HTTP route: an Envoy route per match that applies here, sharing one action. `bound`:
/// whether the route's VirtualService lists `cx.gateway` among its gateways (a route without matches
/// applies only then).
pub(crate) fn http_route(
    cx: RouteContext<'_>,
    r: &HttpRouteModel,
    port: u16,
    bound: bool,
) -> Vec<Route> {
    let matches: Vec<RouteMatch> = if r.matches.is_empty() {
        if bound { vec![catch_all()] } else { Vec::new() }
    } else {
        (0..r.matches.len())
            .filter(|i| applies(cx, r, *i, port, bound))
            .map(|i| action::route_match(&r.matches[i]))
            .collect()
    };
    let mut edits = action::header_edits(r.spec.headers.as_ref());
    let Some(act) = route_action(cx, r, port, &mut edits) else {
        return Vec::new();
    };
    let cors = cx.proxy.kind != ProxyKind::ProxylessGrpc;
    let per_filter = action::per_filter_config(r, cors);
    matches
        .into_iter()
        .map(|m| Route {
            name: r.spec.name.clone().unwrap_or_default(),
            r#match: Some(m),
            action: Some(act.clone()),
            typed_per_filter_config: per_filter.clone(),
            request_headers_to_add: edits.request_add.clone(),
            request_headers_to_remove: edits.request_remove.clone(),
            response_headers_to_add: edits.response_add.clone(),
            response_headers_to_remove: edits.response_remove.clone(),
            ..Default::default()
        })
        .collect()
}

/// The cluster a destination names: its port, else the listener's port when the host serves it, else the
/// host's only port.
pub fn target_cluster(t: &RouteTarget, registry: &RegistrySnapshot, port: u16) -> (String, u16) {
    let p = t.port.unwrap_or_else(|| match registry.service(&t.host) {
        Some(s) if s.port(port).is_none() && s.ports.len() == 1 => s.ports[0].number,
        _ => port,
    });
    (cluster_name(p, t.subset.as_deref(), &t.host), p)
}

fn route_action(
    cx: RouteContext<'_>,
    r: &HttpRouteModel,
    port: u16,
    edits: &mut HeaderEdits,
) -> Option<route::Action> {
    let spec = &r.spec;
    if let Some(redirect) = &spec.redirect {
        return Some(route::Action::Redirect(action::redirect(redirect)));
    }
    let targets: Vec<(String, u16, &RouteTarget)> = r
        .destinations
        .iter()
        .map(|t| {
            let (name, p) = target_cluster(t, cx.registry, port);
            (name, p, t)
        })
        .collect();
    let specifier = match targets.as_slice() {
        [] => return None,
        [(name, _, _)] => {
            let own = spec.route.first().and_then(|d| d.headers.as_ref());
            let more = action::header_edits(own);
            edits.request_add.extend(more.request_add);
            edits.request_remove.extend(more.request_remove);
            edits.response_add.extend(more.response_add);
            edits.response_remove.extend(more.response_remove);
            route_action::ClusterSpecifier::Cluster(name.clone())
        }
        many => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .enumerate()
                .map(|(i, (name, _, t))| {
                    let e =
                        action::header_edits(spec.route.get(i).and_then(|d| d.headers.as_ref()));
                    weighted_cluster::ClusterWeight {
                        name: name.clone(),
                        weight: Some(UInt32Value { value: t.weight }),
                        request_headers_to_add: e.request_add,
                        request_headers_to_remove: e.request_remove,
                        response_headers_to_add: e.response_add,
                        response_headers_to_remove: e.response_remove,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        }),
    };
    // Session affinity holds only when every destination hashes the same way.
    let hashes: Vec<_> = targets
        .iter()
        .map(|(_, p, t)| {
            let rule = cx.mesh.destination_rule(&t.host, &cx.proxy.namespace);
            Effective::of(rule, t.subset.as_deref(), *p)
                .consistent_hash()
                .and_then(crate::policy::hash_policy)
        })
        .collect();
    let hash_policy = match hashes.first() {
        Some(Some(h)) if hashes.iter().all(|x| x.as_ref() == Some(h)) => vec![h.clone()],
        _ => Vec::new(),
    };
    let mirror = r.mirror.as_ref().map(|m| {
        let (name, _) = target_cluster(m, cx.registry, port);
        action::mirror(name, spec.mirror_percentage)
    });
    let rewrite = spec.rewrite.as_ref();
    Some(route::Action::Route(RouteAction {
        cluster_specifier: Some(specifier),
        prefix_rewrite: rewrite.and_then(|w| w.uri.clone()).unwrap_or_default(),
        host_rewrite_specifier: rewrite
            .and_then(|w| w.authority.clone())
            .map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        timeout: Some(
            spec.timeout
                .map(|d| crate::policy::duration(d.get()))
                .unwrap_or_default(),
        ),
        retry_policy: action::retry_policy(spec.retries.as_ref()),
        request_mirror_policies: mirror.into_iter().collect(),
        hash_policy,
        ..Default::default()
    }))
}
