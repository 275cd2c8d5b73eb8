//! Istio's bookinfo samples: names, endpoints, domains, weights, header matches, faults.

use super::*;

#[test]
fn every_bookinfo_sample_translates_to_a_consistent_snapshot_for_every_kind_of_proxy() {
    let samples = [
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-v3.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-ratings-test-abort.yaml",
        "",
    ];
    let mut grpc = proxy(Interception::None);
    grpc.kind = ProxyKind::ProxylessGrpc;
    for sample in samples {
        let mesh = bookinfo(sample);
        for p in [
            proxy(Interception::Redirect),
            proxy(Interception::None),
            grpc.clone(),
        ] {
            let s = translate(&mesh, &registry(&mesh), &p, &MeshTls::default());
            assert_eq!(s.consistent(), Ok(()), "{sample} for {p:?}");
            assert_eq!(names(&s, types::ROUTE), ["9080"], "{sample}");
        }
    }
}

#[test]
fn clusters_are_named_the_istio_way_with_subset_endpoints() {
    let mesh = bookinfo("virtual-service-all-v1.yaml");
    let s = snap(&mesh, &proxy(Interception::Redirect));
    let clusters = names(&s, types::CLUSTER);
    for name in [
        "BlackHoleCluster",
        "PassthroughCluster",
        "InboundPassthroughCluster",
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "outbound|9080|v3|reviews.default.svc.cluster.local",
        "outbound|9080|v2-mysql|ratings.default.svc.cluster.local",
    ] {
        assert!(
            clusters.contains(&name.to_string()),
            "{name} in {clusters:?}"
        );
    }
    // 4 services; subsets: productpage 1, reviews 3, ratings 4, details 2; plus 3 special clusters.
    assert_eq!(clusters.len(), 4 + 10 + 3);
    let c: Cluster = get(
        &s,
        types::CLUSTER,
        "outbound|9080|v2|reviews.default.svc.cluster.local",
    );
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(
        c.lb_policy,
        cluster::LbPolicy::LeastRequest as i32,
        "Istio's default"
    );
    assert_eq!(c.connect_timeout.map(|d| d.seconds), Some(10));
    let eds = |n: &str| ports_of(&get(&s, types::ENDPOINT, n));
    assert_eq!(
        eds("outbound|9080||reviews.default.svc.cluster.local"),
        [19081, 19082, 19083]
    );
    assert_eq!(
        eds("outbound|9080|v2|reviews.default.svc.cluster.local"),
        [19082]
    );
    assert_eq!(
        eds("outbound|9080|v1|ratings.default.svc.cluster.local"),
        [19084],
        "WorkloadEntry"
    );
    assert!(eds("outbound|9080|v2|ratings.default.svc.cluster.local").is_empty());
    let black: Cluster = get(&s, types::CLUSTER, "BlackHoleCluster");
    assert_eq!(
        black.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32
        ))
    );
    let pass: Cluster = get(&s, types::CLUSTER, "PassthroughCluster");
    assert_eq!(pass.lb_policy, cluster::LbPolicy::ClusterProvided as i32);
}

#[test]
fn virtual_hosts_carry_istios_domains() {
    let mesh = bookinfo("");
    let s = snap(&mesh, &proxy(Interception::None));
    let mut d = vhost(&s, "9080", REVIEWS).domains;
    d.sort();
    assert_eq!(
        d,
        [
            "reviews",
            "reviews.default",
            "reviews.default.svc",
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc:9080",
            "reviews.default:9080",
            "reviews:9080",
        ]
    );
    // From another namespace the bare name means something else.
    let mut other = proxy(Interception::None);
    other.namespace = "shop".into();
    let s = snap(&mesh, &other);
    let d = vhost(&s, "9080", REVIEWS).domains;
    assert!(!d.contains(&"reviews".to_string()) && d.contains(&"reviews.default".to_string()));
    // No VirtualService: one default route to the service's cluster, no timeout, Istio's retries.
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 1);
    let a = action(&vh.routes[0]);
    assert_eq!(weights(a), [(format!("outbound|9080||{REVIEWS}"), 100)]);
    assert_eq!(a.timeout.map(|t| (t.seconds, t.nanos)), Some((0, 0)));
    let retry = a.retry_policy.as_ref().expect("default retries");
    assert_eq!(retry.num_retries.as_ref().map(|n| n.value), Some(2));
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, [503]);
}

#[test]
fn weighted_split_and_header_match_follow_the_samples() {
    let s = snap(
        &bookinfo("virtual-service-reviews-90-10.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 1);
    assert_eq!(
        weights(action(&vh.routes[0])),
        [
            (format!("outbound|9080|v1|{REVIEWS}"), 90),
            (format!("outbound|9080|v2|{REVIEWS}"), 10)
        ]
    );

    let s = snap(
        &bookinfo("virtual-service-reviews-test-v2.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", REVIEWS);
    assert_eq!(vh.routes.len(), 2);
    let m = vh.routes[0].r#match.as_ref().expect("match");
    assert_eq!(m.headers.len(), 1);
    assert_eq!(m.headers[0].name, "end-user");
    match &m.headers[0].header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(sm)) => assert_eq!(
            sm.match_pattern,
            Some(
                sextant_proto::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact(
                    "jason".into()
                )
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        weights(action(&vh.routes[0])),
        [(format!("outbound|9080|v2|{REVIEWS}"), 100)]
    );
    assert_eq!(
        weights(action(&vh.routes[1])),
        [(format!("outbound|9080|v1|{REVIEWS}"), 100)]
    );
    assert!(
        vh.routes[1]
            .r#match
            .as_ref()
            .is_some_and(|m| m.headers.is_empty())
    );
}

fn fault_of(r: &Route) -> HttpFault {
    let any = r
        .typed_per_filter_config
        .get("envoy.filters.http.fault")
        .expect("a fault");
    assert_eq!(any.type_url, HttpFault::type_url());
    HttpFault::decode(any.value.as_slice()).expect("decodes")
}

#[test]
fn faults_become_per_route_fault_filter_config() {
    let s = snap(
        &bookinfo("virtual-service-ratings-test-abort.yaml"),
        &proxy(Interception::None),
    );
    let vh = vhost(&s, "9080", RATINGS);
    let f = fault_of(&vh.routes[0]);
    let abort = f.abort.expect("abort");
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::HttpStatus(500))
    );
    assert_eq!(
        abort.percentage.map(|p| (p.numerator, p.denominator)),
        Some((1_000_000, 2))
    );
    assert!(f.delay.is_none());
    assert!(
        vh.routes[1].typed_per_filter_config.is_empty(),
        "only jason's route"
    );

    let s = snap(
        &bookinfo("virtual-service-ratings-test-delay.yaml"),
        &proxy(Interception::None),
    );
    let f = fault_of(&vhost(&s, "9080", RATINGS).routes[0]);
    let delay = f.delay.expect("delay");
    use sextant_proto::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
    match delay.fault_delay_secifier {
        Some(FaultDelaySecifier::FixedDelay(d)) => assert_eq!((d.seconds, d.nanos), (7, 0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(delay.percentage.map(|p| p.numerator), Some(1_000_000));
}
