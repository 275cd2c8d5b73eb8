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
