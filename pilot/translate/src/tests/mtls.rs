//! Mesh mTLS: Istio's all-mTLS bookinfo sample, the SDS secrets, and `virtualInbound` ending mesh mTLS.

use sextant_proto::envoy::config::core::v3::{DataSource, data_source, transport_socket};
use sextant_proto::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, Secret, UpstreamTlsContext, common_tls_context, secret,
};
use sextant_proto::envoy::r#type::matcher::v3::string_matcher;

use super::*;
use crate::WorkloadCertificate;
use crate::tls::{ROOT_SECRET, WORKLOAD_SECRET};

const CERT: WorkloadCertificate<'static> = WorkloadCertificate {
    chain_pem: "-----BEGIN CERTIFICATE-----\nleaf\n",
    key_pem: "-----BEGIN PRIVATE KEY-----\nkey\n",
    root_pem: "-----BEGIN CERTIFICATE-----\nroot\n",
};

fn all_mtls() -> MeshConfig {
    let files = ["services.yaml", "destination-rule-all-mtls.yaml"]
        .iter()
        .map(|f| {
            let path = fixtures().join(f);
            (
                path.clone(),
                std::fs::read_to_string(&path).expect("fixture"),
            )
        })
        .collect();
    mesh_of(files)
}

fn with_certificate(mesh: &MeshConfig, p: &ProxyInfo) -> Snapshot {
    let mtls = MeshTls {
        trust_domain: "example.org",
        certificate: Some(CERT),
    };
    let s = translate(mesh, &registry(mesh), p, &mtls);
    s.consistent().expect("consistent");
    s
}

fn upstream_tls(c: &Cluster) -> UpstreamTlsContext {
    let socket = c.transport_socket.as_ref().expect("TLS transport socket");
    match &socket.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => {
            UpstreamTlsContext::decode(any.value.as_slice()).expect("UpstreamTlsContext")
        }
        other => panic!("{other:?}"),
    }
}

/// The SDS names and SANs of a mesh TLS context.
fn sds_and_sans(common: &CommonTlsContext) -> (Vec<String>, String, Vec<String>) {
    let certs = common
        .tls_certificate_sds_secret_configs
        .iter()
        .map(|s| {
            assert!(s.sds_config.is_some(), "a source is named");
            s.name.clone()
        })
        .collect();
    let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
        &common.validation_context_type
    else {
        panic!("combined validation context: {common:?}");
    };
    let root = v
        .validation_context_sds_secret_config
        .as_ref()
        .expect("root");
    let sans = v
        .default_validation_context
        .as_ref()
        .map(|d| {
            d.match_typed_subject_alt_names
                .iter()
                .map(
                    |m| match &m.matcher.as_ref().expect("matcher").match_pattern {
                        Some(string_matcher::MatchPattern::Exact(s)) => s.clone(),
                        other => panic!("{other:?}"),
                    },
                )
                .collect()
        })
        .unwrap_or_default();
    (certs, root.name.clone(), sans)
}

#[test]
fn istio_mutual_clusters_use_the_mesh_certificates_and_check_spiffe_ids() {
    let mesh = all_mtls();
    let s = with_certificate(&mesh, &proxy(Interception::Redirect));

    // The proxy's certificate and the root, as SDS secrets.
    let own: Secret = get(&s, types::SECRET, WORKLOAD_SECRET);
    let Some(secret::Type::TlsCertificate(cert)) = own.r#type else {
        panic!("{own:?}")
    };
    let inline = |d: Option<DataSource>| match d.and_then(|d| d.specifier) {
        Some(data_source::Specifier::InlineBytes(b)) => String::from_utf8(b).expect("utf-8"),
        other => panic!("{other:?}"),
    };
    assert_eq!(inline(cert.certificate_chain), CERT.chain_pem);
    assert_eq!(inline(cert.private_key), CERT.key_pem);
    let root: Secret = get(&s, types::SECRET, ROOT_SECRET);
    let Some(secret::Type::ValidationContext(root)) = root.r#type else {
        panic!("{root:?}")
    };
    assert_eq!(inline(root.trusted_ca), CERT.root_pem);

    // Every service's clusters, each subset's too, use them, with Istio's SNI.
    let ratings = "outbound|9080|v1|ratings.default.svc.cluster.local";
    let tls = upstream_tls(&get(&s, types::CLUSTER, ratings));
    assert_eq!(
        tls.sni,
        "outbound_.9080_.v1_.ratings.default.svc.cluster.local"
    );
    let common = tls.common_tls_context.expect("common");
    assert_eq!(common.alpn_protocols, ["istio-peer-exchange", "istio"]);
    // The server must be one of the service's workloads (the ratings WorkloadEntry's account).
    assert_eq!(
        sds_and_sans(&common),
        (
            vec![WORKLOAD_SECRET.to_string()],
            ROOT_SECRET.to_string(),
            vec!["spiffe://example.org/ns/default/sa/bookinfo-ratings".to_string()]
        )
    );
    for c in [
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
        "outbound|9080|v1|productpage.default.svc.cluster.local",
    ] {
        let tls = upstream_tls(&get(&s, types::CLUSTER, c));
        assert_eq!(tls.sni, c.replace('|', "_."));
        // No service account known for reviews: the root alone is checked.
        let (certs, root, sans) = sds_and_sans(&tls.common_tls_context.expect("common"));
        assert_eq!(
            (certs.len(), root.as_str(), sans.len()),
            (1, ROOT_SECRET, 0)
        );
    }
}

#[test]
fn written_subject_alt_names_and_sni_replace_the_derived_ones() {
    let mesh = yaml(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: db, namespace: data}\nspec:\n  hosts: [db.data.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 5432, name: tcp}]\n  subjectAltNames: [spiffe://example.org/ns/data/sa/postgres]\n  endpoints:\n  - {address: 10.0.0.7, serviceAccount: db-replica, labels: {role: primary}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: data}\nspec:\n  host: db.data.svc.cluster.local\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n  subsets:\n  - name: pinned\n    labels: {role: primary}\n    trafficPolicy:\n      tls: {mode: ISTIO_MUTUAL, sni: db.internal, subjectAltNames: [spiffe://example.org/ns/data/sa/pinned]}\n",
    );
    let s = with_certificate(&mesh, &proxy(Interception::Redirect));
    let plain = upstream_tls(&get(
        &s,
        types::CLUSTER,
        "outbound|5432||db.data.svc.cluster.local",
    ));
    // The ServiceEntry's names, then the endpoints' accounts in the service's namespace.
    assert_eq!(
        sds_and_sans(&plain.common_tls_context.expect("common")).2,
        [
            "spiffe://example.org/ns/data/sa/postgres",
            "spiffe://example.org/ns/data/sa/db-replica"
        ]
    );
    let pinned = upstream_tls(&get(
        &s,
        types::CLUSTER,
        "outbound|5432|pinned|db.data.svc.cluster.local",
    ));
    assert_eq!(pinned.sni, "db.internal");
    assert_eq!(
        sds_and_sans(&pinned.common_tls_context.expect("common")).2,
        ["spiffe://example.org/ns/data/sa/pinned"]
    );
}

#[test]
fn virtual_inbound_ends_mesh_mtls_and_lets_plain_text_through() {
    let mesh = all_mtls();
    let s = with_certificate(&mesh, &proxy(Interception::Redirect));
    let l: Listener = get(&s, types::LISTENER, "virtualInbound");
    let filters: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector"
        ]
    );
    assert!(l.continue_on_listener_filters_timeout);
    let [mtls] = l.filter_chains.as_slice() else {
        panic!("{:?}", l.filter_chains)
    };
    let m = mtls.filter_chain_match.as_ref().expect("match");
    assert_eq!(m.transport_protocol, "tls");
    assert!(m.application_protocols.iter().any(|a| a == "istio"));
    let Some(transport_socket::ConfigType::TypedConfig(any)) = mtls
        .transport_socket
        .as_ref()
        .and_then(|t| t.config_type.clone())
    else {
        panic!("no TLS on the mTLS chain")
    };
    let down = DownstreamTlsContext::decode(any.value.as_slice()).expect("DownstreamTlsContext");
    assert_eq!(down.require_client_certificate.map(|b| b.value), Some(true));
    let (certs, root, _) = sds_and_sans(&down.common_tls_context.expect("common"));
    assert_eq!(
        (certs, root),
        (vec![WORKLOAD_SECRET.to_string()], ROOT_SECRET.to_string())
    );
    // Both chains forward to the workload; plain text takes the default one.
    let default = l.default_filter_chain.as_ref().expect("plain chain");
    assert_eq!(default.filters, mtls.filters);
    assert!(default.transport_socket.is_none());

    // Without a certificate, nothing is terminated and no secret is served.
    let plain = snap(&mesh, &proxy(Interception::Redirect));
    let l: Listener = get(&plain, types::LISTENER, "virtualInbound");
    assert!(l.filter_chains.is_empty() && l.listener_filters.len() == 1);
    assert!(names(&plain, types::SECRET).is_empty());
}

/// Where a mesh TLS context's two secrets come from: the agent's cluster, or `None` for ADS.
fn secret_sources(common: &CommonTlsContext) -> [Option<String>; 2] {
    use sextant_proto::envoy::config::core::v3::{api_config_source, config_source, grpc_service};
    let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
        &common.validation_context_type
    else {
        panic!("combined validation context: {common:?}");
    };
    let root = v.validation_context_sds_secret_config.as_ref();
    [common.tls_certificate_sds_secret_configs.first(), root].map(|sds| {
        let source = sds.and_then(|s| s.sds_config.clone()).expect("a source");
        match source.config_source_specifier {
            Some(config_source::ConfigSourceSpecifier::Ads(_)) => None,
            Some(config_source::ConfigSourceSpecifier::ApiConfigSource(api)) => {
                assert_eq!(api.api_type, api_config_source::ApiType::Grpc as i32);
                assert_eq!(api.transport_api_version, 2, "V3");
                assert!(api.set_node_on_first_message_only);
                assert_eq!(source.resource_api_version, 2, "V3");
                let [service] = api.grpc_services.as_slice() else {
                    panic!("{api:?}")
                };
                match &service.target_specifier {
                    Some(grpc_service::TargetSpecifier::EnvoyGrpc(g)) => {
                        Some(g.cluster_name.clone())
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    })
}

fn inbound_mtls(s: &Snapshot) -> CommonTlsContext {
    let l: Listener = get(s, types::LISTENER, "virtualInbound");
    let [mtls] = l.filter_chains.as_slice() else {
        panic!("mesh mTLS is terminated: {:?}", l.filter_chains)
    };
    let Some(transport_socket::ConfigType::TypedConfig(any)) = mtls
        .transport_socket
        .as_ref()
        .and_then(|t| t.config_type.clone())
    else {
        panic!("no TLS on the mTLS chain")
    };
    DownstreamTlsContext::decode(any.value.as_slice())
        .expect("DownstreamTlsContext")
        .common_tls_context
        .expect("common")
}

#[test]
fn a_proxy_keeping_its_own_key_gets_no_secret_and_envoy_reads_them_from_its_agent() {
    let mesh = all_mtls();
    let ratings = "outbound|9080|v1|ratings.default.svc.cluster.local";
    for (plane, source) in [
        (crate::DataPlane::Envoy, Some("sds-grpc".to_string())),
        (crate::DataPlane::Sextant, None),
    ] {
        let p = ProxyInfo {
            local_certificate: true,
            data_plane: plane,
            ..proxy(Interception::Redirect)
        };
        // Even handed a certificate, translation sends such a proxy no secret (no key leaves pilot).
        for s in [with_certificate(&mesh, &p), snap(&mesh, &p)] {
            assert!(names(&s, types::SECRET).is_empty(), "{plane:?}");
            let up = upstream_tls(&get(&s, types::CLUSTER, ratings))
                .common_tls_context
                .expect("common");
            assert_eq!(
                sds_and_sans(&up).0,
                [WORKLOAD_SECRET],
                "the clusters still name the secrets"
            );
            assert_eq!(
                secret_sources(&up),
                [source.clone(), source.clone()],
                "{plane:?}"
            );
            // It holds a certificate of its own: virtualInbound ends mesh mTLS with it.
            let down = inbound_mtls(&s);
            assert_eq!(sds_and_sans(&down).1, ROOT_SECRET);
            assert_eq!(secret_sources(&down), [source.clone(), source.clone()]);
        }
    }
    // A proxy pilot sends its certificate reads it over ADS.
    let s = with_certificate(&mesh, &proxy(Interception::Redirect));
    assert_eq!(names(&s, types::SECRET), [ROOT_SECRET, WORKLOAD_SECRET]);
    let up = upstream_tls(&get(&s, types::CLUSTER, ratings));
    assert_eq!(
        secret_sources(&up.common_tls_context.expect("common")),
        [None, None]
    );
}

#[test]
fn the_node_says_whether_the_proxy_keeps_its_own_key() {
    use sextant_proto::envoy::config::core::v3::Node;
    use sextant_proto::google::protobuf::{Struct, Value, value::Kind};
    let node = |value: Option<Kind>| Node {
        id: "sidecar~10.0.0.1~web-1.shop~shop.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: value
                .map(|kind| {
                    (
                        crate::LOCAL_CERT_METADATA.to_string(),
                        Value { kind: Some(kind) },
                    )
                })
                .into_iter()
                .collect(),
        }),
        ..Default::default()
    };
    let local = |value| ProxyInfo::from_node(&node(value)).local_certificate;
    assert!(local(Some(Kind::StringValue("true".into()))));
    assert!(local(Some(Kind::BoolValue(true))));
    assert!(!local(Some(Kind::StringValue("false".into()))));
    assert!(!local(None));
}

/// A filter chain match as (port, transport, application protocols).
type Match = (u32, String, Vec<String>);

/// The filter chain match of `c`.
fn chain_match(c: &sextant_proto::envoy::config::listener::v3::FilterChain) -> Match {
    let m = c.filter_chain_match.clone().unwrap_or_default();
    (
        m.destination_port.map_or(0, |p| p.value),
        m.transport_protocol,
        m.application_protocols,
    )
}

/// The connection manager ending `c`, if it ends in one.
fn chain_hcm(
    c: &sextant_proto::envoy::config::listener::v3::FilterChain,
) -> Option<HttpConnectionManager> {
    let f = c.filters.last()?;
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) if f.name == build_hcm() => {
            HttpConnectionManager::decode(a.value.as_slice()).ok()
        }
        _ => None,
    }
}

fn build_hcm() -> &'static str {
    pilot_xds::build::HCM_FILTER
}

fn rds_of(h: &HttpConnectionManager) -> String {
    match &h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(r)) => r.route_config_name.clone(),
        other => panic!("{other:?}"),
    }
}

const SHOP_WEB: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web, namespace: shop}\nspec:\n  hosts: [web.shop.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 80, name: web}, {number: 90, name: http}, {number: 5432, name: tcp-db}]\n  endpoints: [{address: 10.0.0.7, ports: {web: 8080, http: 9090, tcp-db: 5432}, labels: {app: web}}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: shop}\nspec:\n  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]\n";

fn web_proxy() -> ProxyInfo {
    ProxyInfo {
        namespace: "shop".into(),
        interception: Interception::Redirect,
        labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn a_workloads_port_of_undeclared_protocol_is_sniffed_inbound_mesh_mtls_by_alpn() {
    use sextant_proto::envoy::config::listener::v3::listener_filter_chain_match_predicate::Rule;
    let mesh = yaml(SHOP_WEB);
    let s = with_certificate(&mesh, &web_proxy());
    let l: Listener = get(&s, types::LISTENER, "virtualInbound");
    let by_port: Vec<(String, Match)> = (l.filter_chains.iter())
        .filter(|c| chain_match(c).0 == 8080)
        .map(|c| (c.name.clone(), chain_match(c)))
        .collect();
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        by_port,
        [
            (
                "inbound_8080-mtls-http".to_string(),
                (
                    8080,
                    "tls".into(),
                    v(&["istio-http/1.0", "istio-http/1.1", "istio-h2"])
                )
            ),
            (
                "inbound_8080-mtls".to_string(),
                (8080, "tls".into(), v(&["istio-peer-exchange", "istio"]))
            ),
            // No transport: plain text that is not HTTP must still find the port's TCP chain.
            (
                "inbound_8080-http".to_string(),
                (8080, String::new(), v(&["http/1.0", "http/1.1", "h2c"]))
            ),
            (
                "inbound_8080".to_string(),
                (8080, String::new(), Vec::new())
            ),
        ]
    );
    let chain = |name: &str| {
        (l.filter_chains.iter())
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    // HTTP over mesh mTLS and plain HTTP: the connection manager of a declared HTTP port, HTTP RBAC first.
    for name in ["inbound_8080-mtls-http", "inbound_8080-http"] {
        let h = chain_hcm(chain(name)).expect("an HTTP chain");
        assert_eq!(rds_of(&h), "inbound|8080||");
        assert_eq!(h.http_filters[0].name, "envoy.filters.http.rbac", "{name}");
    }
    assert!(chain("inbound_8080-mtls-http").transport_socket.is_some());
    assert!(chain("inbound_8080-http").transport_socket.is_none());
    // Other mesh mTLS and other plain text: TCP to the workload, network RBAC first.
    for name in ["inbound_8080-mtls", "inbound_8080"] {
        let c = chain(name);
        assert!(chain_hcm(c).is_none(), "{name} is TCP");
        let names: Vec<&str> = c.filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "envoy.filters.network.rbac",
                "envoy.filters.network.tcp_proxy"
            ],
            "{name}"
        );
    }
    assert!(chain("inbound_8080-mtls").transport_socket.is_some());
    // The declared HTTP port keeps its two chains; the declared TCP port gets none.
    let ports: std::collections::BTreeSet<u32> = (l.filter_chains.iter())
        .map(|c| chain_match(c).0)
        .filter(|p| *p != 0)
        .collect();
    assert_eq!(ports, [8080, 9090].into());
    // The HTTP inspector reads the sniffed port only; a declared TCP port is read as before, and
    // a server-first protocol goes on (as TCP) when the filters' timeout (Envoy's default) passes.
    let inspectors: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        inspectors,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let disabled = l.listener_filters[2]
        .filter_disabled
        .clone()
        .expect("filter_disabled");
    let Some(Rule::NotMatch(inner)) = disabled.rule else {
        panic!("{disabled:?}")
    };
    assert_eq!(
        inner.rule,
        Some(Rule::DestinationPortRange(
            sextant_proto::envoy::r#type::v3::Int32Range {
                start: 8080,
                end: 8081
            }
        ))
    );
    assert!(l.continue_on_listener_filters_timeout);
    assert_eq!(l.listener_filters_timeout, None, "Envoy's default");
    let rc: RouteConfiguration = get(&s, types::ROUTE, "inbound|8080||");
    assert_eq!(
        weights(action(&rc.virtual_hosts[0].routes[0])),
        [("InboundPassthroughCluster".to_string(), 100)]
    );

    // Without a certificate: plain HTTP and TCP by the inspector, nothing terminated.
    let plain = snap(&mesh, &web_proxy());
    let l: Listener = get(&plain, types::LISTENER, "virtualInbound");
    let names: Vec<&str> = (l.filter_chains.iter())
        .filter(|c| chain_match(c).0 == 8080)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["inbound_8080-http", "inbound_8080"]);
    let inspectors: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        inspectors,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert!(l.continue_on_listener_filters_timeout);
}

#[test]
fn a_sidecar_ingress_port_of_undeclared_protocol_is_sniffed_on_its_own_listener() {
    let mesh = yaml(&format!(
        "{SHOP_WEB}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: web, namespace: shop}}\nspec:\n  ingress:\n  - {{port: {{number: 9080, name: web, protocol: HTTP}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: 127.0.0.1:8080}}\n  - {{port: {{number: 9443, name: db, protocol: TCP}}, captureMode: NONE, bind: 127.0.0.1, defaultEndpoint: 127.0.0.1:8443}}\n"
    ));
    // pilot-config asks a Sidecar's ingress port for its protocol today; translation takes an undeclared one
    // as Istio does.
    let mut mesh = mesh;
    mesh.sidecars[0].ingress[0].protocol = pilot_config::Protocol::Auto;
    let mut web = web_proxy();
    web.interception = Interception::None;
    let s = with_certificate(&mesh, &web);
    let l: Listener = get(&s, types::LISTENER, "inbound_127.0.0.1_9080");
    let chains: Vec<(String, Match)> = (l.filter_chains.iter())
        .map(|c| (c.name.clone(), chain_match(c)))
        .collect();
    assert_eq!(
        chains.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "inbound_9080-mtls-http",
            "inbound_9080-mtls",
            "inbound_9080-http"
        ]
    );
    assert_eq!(chains[2].1.2, ["http/1.0", "http/1.1", "h2c"]);
    for c in &l.filter_chains[..1] {
        assert_eq!(rds_of(&chain_hcm(c).expect("HTTP")), "inbound|9080||");
    }
    assert_eq!(
        rds_of(&chain_hcm(&l.filter_chains[2]).expect("HTTP")),
        "inbound|9080||"
    );
    let default = l.default_filter_chain.as_ref().expect("TCP by default");
    assert!(chain_hcm(default).is_none());
    let inspectors: Vec<&str> = l.listener_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        inspectors,
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    assert!(l.listener_filters[1].filter_disabled.is_none());
    assert!(l.continue_on_listener_filters_timeout);
    let _: RouteConfiguration = get(&s, types::ROUTE, "inbound|9080||");
    // The declared TCP port is as before: mesh mTLS or plain text, no HTTP inspector.
    let tcp: Listener = get(&s, types::LISTENER, "inbound_127.0.0.1_9443");
    let inspectors: Vec<&str> = tcp
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(inspectors, ["envoy.filters.listener.tls_inspector"]);
    assert_eq!(tcp.filter_chains.len(), 1);
}

/// The ALPN list a route's set-filter-state configuration puts in the filter state, if any.
fn alpn_override(r: &Route) -> Option<String> {
    use sextant_proto::envoy::config::core::v3::{data_source, substitution_format_string};
    use sextant_proto::envoy::extensions::filters::common::set_filter_state::v3::filter_state_value;
    use sextant_proto::envoy::extensions::filters::http::set_filter_state::v3::Config;
    let any = r
        .typed_per_filter_config
        .get("envoy.filters.http.set_filter_state")?;
    let config = Config::decode(any.value.as_slice()).expect("set_filter_state Config");
    let [value] = config.on_request_headers.as_slice() else {
        panic!("{config:?}")
    };
    assert_eq!(
        value.key,
        Some(filter_state_value::Key::ObjectKey(
            "envoy.network.application_protocols".into()
        ))
    );
    assert_eq!(
        value.shared_with_upstream,
        filter_state_value::SharedWithUpstream::Once as i32
    );
    let Some(filter_state_value::Value::FormatString(f)) = &value.value else {
        panic!("{value:?}")
    };
    match &f.format {
        Some(substitution_format_string::Format::TextFormatSource(d)) => match &d.specifier {
            Some(data_source::Specifier::InlineString(s)) => Some(s.clone()),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn http_to_mesh_mtls_clusters_announces_istios_http_alpn_and_other_tls_keeps_its_own() {
    let mesh = yaml(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [web.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8000, name: web}]
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8001, name: grpc}]
  endpoints: [{address: 10.0.0.3}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: http}]
  endpoints: [{address: 10.0.0.2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {v: "1"}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext}
spec:
  host: ext.example.com
  trafficPolicy: {tls: {mode: SIMPLE}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /split}}]
    route:
    - {destination: {host: web.default.svc.cluster.local, port: {number: 8000}}, weight: 50}
    - {destination: {host: ext.example.com, port: {number: 8000}}, weight: 50}
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: web.default.svc.cluster.local, subset: v1, port: {number: 8000}}}]
  - route: [{destination: {host: web.default.svc.cluster.local, port: {number: 8000}}}]
"#,
    );
    let p = proxy(Interception::Redirect);
    let s = with_certificate(&mesh, &p);
    let web = vhost(&s, "8000", "web.default.svc.cluster.local");
    let overrides: Vec<Option<String>> = web.routes.iter().map(alpn_override).collect();
    let http11 = Some("istio-http/1.1,istio,http/1.1".to_string());
    assert_eq!(
        overrides,
        [None, http11.clone(), http11],
        "a split with a SIMPLE TLS cluster keeps the clusters' ALPN"
    );
    let ext = vhost(&s, "8000", "ext.example.com");
    assert_eq!(
        alpn_override(&ext.routes[0]),
        None,
        "SIMPLE TLS keeps its own ALPN"
    );
    let grpc = vhost(&s, "8001", "api.default.svc.cluster.local");
    assert_eq!(
        alpn_override(&grpc.routes[0]).as_deref(),
        Some("istio-h2,istio,h2"),
        "an HTTP/2 cluster announces istio-h2"
    );
    // The connection managers routing with them run the filter (empty: it sets nothing itself) before the
    // router.
    {
        let l: Listener = get(&s, types::LISTENER, "0.0.0.0_8001");
        let h = chain_hcm(&l.filter_chains[0]).expect("HTTP");
        let names: Vec<&str> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names[names.len() - 2..],
            [
                "envoy.filters.http.set_filter_state",
                "envoy.filters.http.router"
            ]
        );
        let any = h.http_filters[names.len() - 2].config_type.clone();
        let Some(sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(any)) = any else {
            panic!()
        };
        assert!(
            any.value.is_empty(),
            "the listener's configuration sets nothing"
        );
    }
    // The sniffed port: its HTTP chain too.
    let l: Listener = get(&s, types::LISTENER, "0.0.0.0_8000");
    let h = chain_hcm(&l.filter_chains[0]).expect("the sniffed HTTP chain");
    assert!(
        h.http_filters
            .iter()
            .any(|f| f.name == "envoy.filters.http.set_filter_state")
    );

    // Without mesh mTLS, nothing changes.
    let plain = yaml(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web}\nspec:\n  hosts: [web.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{number: 8000, name: http}]\n  endpoints: [{address: 10.0.0.1}]\n",
    );
    let s = snap(&plain, &p);
    let web = vhost(&s, "8000", "web.default.svc.cluster.local");
    assert!(web.routes.iter().all(|r| alpn_override(r).is_none()));
    let l: Listener = get(&s, types::LISTENER, "0.0.0.0_8000");
    let h = chain_hcm(&l.filter_chains[0]).expect("HTTP");
    assert!(
        h.http_filters
            .iter()
            .all(|f| f.name != "envoy.filters.http.set_filter_state")
    );
}
