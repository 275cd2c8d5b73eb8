//! Resources in the supported subset decode to the proxy's types; anything outside it is refused naming the
//! field and where it is.

mod common;

use common::{any, listener_with, manager};
use prost::{Message, Name};
use proxy_config::{cluster, listener, route};
use sextant_proto::envoy::config::cluster::v3 as cds;
use sextant_proto::envoy::config::listener::v3 as lds;
use sextant_proto::envoy::config::route::v3 as rds;
use sextant_proto::envoy::extensions::filters::http::router::v3::Router;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::google::protobuf::{Any, BoolValue, Duration};

#[test]
fn a_sidecar_port_listener_decodes() {
    let l = listener::decode(&any(&listener_with(&manager()))).expect("supported");
    assert_eq!(l.address, "127.0.0.1:9080".parse().expect("address"));
    assert!(l.bind);
    assert_eq!(l.route_configs().collect::<Vec<_>>(), ["9080"]);
}

#[test]
fn a_field_outside_the_subset_is_refused_by_name_and_path() {
    // A field of the listener itself.
    let mut l = listener_with(&manager());
    l.per_connection_buffer_limit_bytes =
        Some(sextant_proto::google::protobuf::UInt32Value { value: 1024 });
    let e = listener::decode(&any(&l)).expect_err("unsupported");
    assert_eq!(e.path, "per_connection_buffer_limit_bytes");
    assert!(e.to_string().contains("Listener \"127.0.0.1_9080\""), "{e}");
    assert!(
        e.to_string()
            .contains("envoy.config.listener.v3.Listener.per_connection_buffer_limit_bytes"),
        "{e}"
    );

    // A field deep inside a packed payload.
    let mut m = manager();
    m.normalize_path = Some(BoolValue { value: true });
    let e = listener::decode(&any(&listener_with(&m))).expect_err("unsupported");
    assert_eq!(
        e.path, "filter_chains[0].filters[0].typed_config.normalize_path",
        "{e}"
    );

    // An HTTP filter the proxy does not run.
    let mut m = manager();
    m.http_filters.insert(
        0,
        hcm::HttpFilter {
            name: "envoy.filters.http.lua".into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
                &Router::default(),
            ))),
            ..Default::default()
        },
    );
    let e = listener::decode(&any(&listener_with(&m))).expect_err("unsupported");
    assert!(e.reason.contains("envoy.filters.http.lua"), "{e}");
}

#[test]
fn unknown_field_numbers_and_wrong_types_are_refused() {
    let mut bytes = listener_with(&manager()).encode_to_vec();
    // Field 999, varint 1: not in Envoy's v3 Listener.
    bytes.extend_from_slice(&[0xb8, 0x3e, 0x01]);
    let e = listener::decode(&Any {
        type_url: lds::Listener::type_url(),
        value: bytes,
    })
    .expect_err("unknown field");
    assert!(e.reason.contains("field number 999"), "{e}");

    let e = cluster::decode(&any(&listener_with(&manager()))).expect_err("wrong type");
    assert!(
        e.reason
            .contains("expected type.googleapis.com/envoy.config.cluster.v3.Cluster"),
        "{e}"
    );
}

#[test]
fn routes_decode_with_defaults_as_envoy_reads_them() {
    let config = rds::RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![rds::VirtualHost {
            name: "reviews:9080".into(),
            domains: vec!["Reviews".into(), "reviews:9080".into()],
            routes: vec![rds::Route {
                r#match: Some(rds::RouteMatch {
                    path_specifier: Some(rds::route_match::PathSpecifier::SafeRegex(
                        sextant_proto::envoy::r#type::matcher::v3::RegexMatcher {
                            regex: "/api/v[0-9]+".into(),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                }),
                action: Some(rds::route::Action::Route(rds::RouteAction {
                    cluster_specifier: Some(rds::route_action::ClusterSpecifier::Cluster(
                        "outbound|9080||reviews".into(),
                    )),
                    timeout: Some(Duration {
                        seconds: 0,
                        nanos: 0,
                    }),
                    retry_policy: Some(rds::RetryPolicy {
                        retry_on: "5xx,unavailable".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let r = route::decode(&any(&config)).expect("supported");
    let vh = &r.virtual_hosts[0];
    assert_eq!(vh.domains, ["reviews", "reviews:9080"]);
    let route::Action::Forward(f) = &vh.routes[0].action else {
        panic!("forward")
    };
    assert_eq!(f.timeout, None, "0s disables the timeout");
    let retry = f.retry.as_ref().expect("retry");
    assert!(retry.on.server_error && retry.on.grpc.contains(&14));
    assert_eq!(retry.num_retries, 1, "Envoy's default");

    let mut bad = config.clone();
    let rds::route::Action::Route(a) = bad.virtual_hosts[0].routes[0]
        .action
        .as_mut()
        .expect("action")
    else {
        unreachable!()
    };
    a.retry_policy = Some(rds::RetryPolicy {
        retry_on: "5xx,sometimes".into(),
        ..Default::default()
    });
    let e = route::decode(&any(&bad)).expect_err("unknown retry_on");
    assert_eq!(
        e.path,
        "virtual_hosts[0].routes[0].route.retry_policy.retry_on"
    );
    assert!(e.reason.contains("sometimes"), "{e}");

    let mut bad = config;
    bad.virtual_hosts[0].routes[0].r#match = Some(rds::RouteMatch {
        path_specifier: Some(rds::route_match::PathSpecifier::SafeRegex(
            sextant_proto::envoy::r#type::matcher::v3::RegexMatcher {
                regex: "(".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    });
    let e = route::decode(&any(&bad)).expect_err("bad regex");
    assert_eq!(
        e.path, "virtual_hosts[0].routes[0].match.safe_regex.regex",
        "{e}"
    );
}

#[test]
fn clusters_take_envoys_defaults_and_refuse_what_is_not_implemented() {
    let c = cds::Cluster {
        name: "outbound|9080||reviews".into(),
        cluster_discovery_type: Some(cds::cluster::ClusterDiscoveryType::Type(
            cds::cluster::DiscoveryType::Eds as i32,
        )),
        lb_policy: cds::cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    };
    let decoded = cluster::decode(&any(&c)).expect("supported");
    assert!(
        matches!(decoded.discovery, cluster::Discovery::Eds(ref n) if n == "outbound|9080||reviews")
    );
    assert_eq!(decoded.lb, cluster::LbPolicy::LeastRequest { choices: 2 });
    assert_eq!(decoded.limits, cluster::Limits::default());
    assert_eq!(decoded.connect_timeout, std::time::Duration::from_secs(5));

    let mut bad = c;
    bad.lb_policy = cds::cluster::LbPolicy::ClusterProvided as i32;
    let e = cluster::decode(&any(&bad)).expect_err("CLUSTER_PROVIDED on EDS");
    assert_eq!(e.path, "lb_policy");
}

#[test]
fn a_tcp_proxy_cluster_of_weight_zero_is_refused_as_envoy_refuses_it() {
    use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
    let weighted = |weights: &[u32]| {
        let proxy = tcp::TcpProxy {
            stat_prefix: "127.0.0.1_9000".into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::WeightedClusters(
                tcp::tcp_proxy::WeightedCluster {
                    clusters: (weights.iter().enumerate())
                        .map(|(i, w)| tcp::tcp_proxy::weighted_cluster::ClusterWeight {
                            name: format!("c{i}"),
                            weight: *w,
                            ..Default::default()
                        })
                        .collect(),
                },
            )),
            ..Default::default()
        };
        let mut l = listener_with(&manager());
        l.filter_chains[0].filters = vec![lds::Filter {
            name: listener::TCP_PROXY.into(),
            config_type: Some(lds::filter::ConfigType::TypedConfig(any(&proxy))),
        }];
        listener::decode(&any(&l))
    };
    weighted(&[80, 20]).expect("positive weights");
    let e = weighted(&[100, 0]).expect_err("a weight of 0");
    assert_eq!(
        e.path, "filter_chains[0].filters[0].typed_config.weighted_clusters.clusters[1].weight",
        "{e}"
    );
    assert!(e.reason.contains("at least 1"), "{e}");
}
