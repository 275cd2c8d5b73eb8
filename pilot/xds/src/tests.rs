//! Snapshot consistency and the two protocols' state machines, request by request.

use std::net::SocketAddr;

use sextant_proto::envoy::config::route::v3::RouteConfiguration;
use sextant_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use sextant_proto::google::rpc::Status as RpcStatus;

use crate::build;
use crate::types::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use crate::{Answer, Delta, Protocol, Snapshot, SnapshotBuilder, SnapshotError, Sotw, Verdict};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Clusters `names` with one endpoint each (port `port`), a listener routing with `r1`, and `r1`.
fn mesh(names: &[&str], port: u16) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for n in names {
        b.cluster(&build::eds_cluster(n, 1000))
            .endpoints(&build::assignment(n, &[(addr(port), 1)]));
    }
    b.listener(&build::http_listener("http", addr(15001), "r1"))
        .route(&RouteConfiguration {
            name: "r1".into(),
            ..Default::default()
        });
    b.build()
}

fn sotw(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

/// Handles one request as a stream does: parsed, then answered.
fn ask<P: Protocol>(
    p: &mut P,
    request: P::Request,
    snapshot: &Snapshot,
) -> Result<Answer<P::Response>, crate::Refusal> {
    p.on_request(P::parse(request, snapshot), snapshot)
}

#[test]
fn consistent_snapshots_pass_and_dangling_references_do_not() {
    assert_eq!(mesh(&["a", "b"], 1).consistent(), Ok(()));

    let mut b = SnapshotBuilder::new();
    b.cluster(&build::eds_cluster("a", 1000));
    assert!(matches!(
        b.build().consistent(),
        Err(SnapshotError::MissingEndpoints { cluster, .. }) if cluster == "a"
    ));

    let mut b = SnapshotBuilder::new();
    b.endpoints(&build::assignment("ghost", &[(addr(1), 1)]));
    assert_eq!(
        b.build().consistent(),
        Err(SnapshotError::OrphanEndpoints("ghost".into()))
    );

    let mut b = SnapshotBuilder::new();
    b.listener(&build::api_listener("svc", "svc-routes"));
    assert!(matches!(
        b.build().consistent(),
        Err(SnapshotError::MissingRoute { route, .. }) if route == "svc-routes"
    ));

    let mut b = SnapshotBuilder::new();
    b.route(&RouteConfiguration {
        name: "lonely".into(),
        ..Default::default()
    });
    assert_eq!(
        b.build().consistent(),
        Err(SnapshotError::OrphanRoute("lonely".into()))
    );
}

#[test]
fn equal_contents_make_equal_versions() {
    assert_eq!(mesh(&["a"], 1).version(), mesh(&["a"], 1).version());
    assert_ne!(mesh(&["a"], 1).version(), mesh(&["a"], 2).version());
}

#[test]
fn sotw_answers_subscriptions_records_acks_and_nacks_and_pushes_only_changed_types() {
    let snap = mesh(&["a", "b"], 1);
    let mut s = Sotw::default();
    // Wildcard CDS: every cluster.
    let a = ask(&mut s, sotw(CLUSTER, &[], "", ""), &snap).unwrap();
    let out = a.response.expect("first CDS request answered");
    assert_eq!(out.message().resources.len(), 2);
    assert_eq!(out.message().version_info, snap.version());
    assert!(a.verdict.is_none());
    // Named EDS: only what is named and exists.
    let eds = ask(&mut s, sotw(ENDPOINT, &["a", "missing"], "", ""), &snap)
        .unwrap()
        .response
        .expect("EDS answered");
    assert_eq!(eds.holds.keys().collect::<Vec<_>>(), ["a"]);
    // ACK: recorded, nothing resent.
    let ack = ask(
        &mut s,
        sotw(CLUSTER, &[], snap.version(), &out.nonce),
        &snap,
    )
    .unwrap();
    assert!(ack.response.is_none());
    assert_eq!(
        ack.verdict,
        Some(Verdict::Ack {
            type_url: CLUSTER.into(),
            version: snap.version().into()
        })
    );
    // The same snapshot again: nothing to push.
    assert!(s.on_change(&snap).is_empty());
    // Endpoints of `a` change: only EDS is pushed.
    let changed = mesh(&["a", "b"], 2);
    let pushes = s.on_change(&changed);
    assert_eq!(
        pushes
            .iter()
            .map(|o| o.type_url.as_str())
            .collect::<Vec<_>>(),
        [ENDPOINT]
    );
    // A NACK of it: recorded with its detail, not resent; a stale nonce is ignored.
    let mut nack = sotw(
        ENDPOINT,
        &["a", "missing"],
        snap.version(),
        &pushes[0].nonce,
    );
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad endpoint".into(),
        details: vec![],
    });
    let n = ask(&mut s, nack, &changed).unwrap();
    assert!(n.response.is_none());
    assert_eq!(
        n.verdict,
        Some(Verdict::Nack {
            type_url: ENDPOINT.into(),
            version: changed.version().into(),
            message: "bad endpoint".into()
        })
    );
    let stale = ask(&mut s, sotw(ENDPOINT, &["b"], "", "0"), &changed).unwrap();
    assert!(stale.response.is_none() && stale.verdict.is_none());
    // A new cluster: CDS and EDS change, pushed in that order.
    let grown = mesh(&["a", "b", "c"], 2);
    ask(&mut s, sotw(LISTENER, &[], "", ""), &grown).unwrap();
    let order: Vec<String> = s
        .on_change(&grown)
        .into_iter()
        .map(|o| o.type_url)
        .collect();
    assert_eq!(order, [CLUSTER]);
    assert!(ask(&mut s, sotw("", &[], "", ""), &grown).is_err());
}

/// `mesh(["a", "b"], 1)` with cluster `a`'s connect timeout changed and its endpoints as they were.
fn a_updated() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for (n, timeout) in [("a", 2000), ("b", 1000)] {
        b.cluster(&build::eds_cluster(n, timeout))
            .endpoints(&build::assignment(n, &[(addr(1), 1)]));
    }
    b.listener(&build::http_listener("http", addr(15001), "r1"))
        .route(&RouteConfiguration {
            name: "r1".into(),
            ..Default::default()
        });
    b.build()
}

#[test]
fn an_updated_eds_cluster_gets_its_unchanged_endpoints_again() {
    // Envoy warms an updated EDS cluster again and waits for its endpoints: both protocols resend them.
    let snap = mesh(&["a", "b"], 1);
    let next = a_updated();
    let mut s = Sotw::default();
    ask(&mut s, sotw(CLUSTER, &[], "", ""), &snap).unwrap();
    ask(&mut s, sotw(ENDPOINT, &["a", "b"], "", ""), &snap).unwrap();
    let pushes = s.on_change(&next);
    let types: Vec<&str> = pushes.iter().map(|o| o.type_url.as_str()).collect();
    assert_eq!(types, [CLUSTER, ENDPOINT]);
    assert_eq!(
        pushes[1].message().resources.len(),
        2,
        "SotW sends the whole type"
    );

    let mut d = Delta::default();
    ask(&mut d, delta(CLUSTER, &[], ""), &snap).unwrap();
    ask(&mut d, delta(ENDPOINT, &["a", "b"], ""), &snap).unwrap();
    let pushes = d.on_change(&next);
    let sent: Vec<(String, Vec<String>)> = pushes
        .iter()
        .map(|o| {
            let m = o.message();
            (
                o.type_url.clone(),
                m.resources.into_iter().map(|r| r.name).collect(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (CLUSTER.to_string(), vec!["a".to_string()]),
            (ENDPOINT.to_string(), vec!["a".to_string()])
        ],
        "only the updated cluster's endpoints"
    );
    // Nothing changed since: nothing resent.
    assert!(d.on_change(&next).is_empty() && s.on_change(&next).is_empty());
}

fn delta(type_url: &str, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

#[test]
fn delta_sends_only_what_changed_and_names_what_went_away() {
    let snap = mesh(&["a", "b"], 1);
    let mut d = Delta::default();
    let first = ask(&mut d, delta(CLUSTER, &[], ""), &snap)
        .unwrap()
        .response
        .expect("answered");
    assert_eq!(first.message().resources.len(), 2);
    // A route type nobody named yet: answered (empty) so the proxy can finish starting.
    let routes = ask(&mut d, delta(ROUTE, &["r1"], ""), &snap)
        .unwrap()
        .response
        .expect("answered");
    assert_eq!(routes.message().resources.len(), 1);
    let ack = ask(&mut d, delta(CLUSTER, &[], &first.nonce), &snap).unwrap();
    assert!(ack.response.is_none());
    assert!(matches!(ack.verdict, Some(Verdict::Ack { .. })));

    // `b` removed, `c` added, `a` unchanged: one resource sent, one removed.
    let next = mesh(&["a", "c"], 1);
    let pushes = d.on_change(&next);
    let cds = pushes
        .iter()
        .find(|o| o.type_url == CLUSTER)
        .expect("CDS push");
    let message = cds.message();
    let sent: Vec<&str> = message.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(sent, ["c"]);
    assert_eq!(message.removed_resources, ["b"]);
    assert_eq!(cds.holds.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert!(d.on_change(&next).is_empty(), "nothing changed since");

    // A proxy that reconnects holding current versions gets nothing it already has.
    let mut again = Delta::default();
    let mut req = delta(CLUSTER, &[], "");
    for (name, r) in next.resources(CLUSTER).into_iter().flatten() {
        req.initial_resource_versions
            .insert(name.clone(), r.version.clone());
    }
    let resumed = ask(&mut again, req, &next)
        .unwrap()
        .response
        .expect("answered");
    assert!(resumed.message().resources.is_empty());
}

#[test]
fn a_request_naming_every_resource_shares_the_snapshots_names() {
    use crate::names::Names;
    let snap = mesh(&["a", "b", "c"], 1);
    let list = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let shared = |n: &Names| matches!(n, Names::Keys(k) if std::sync::Arc::ptr_eq(k, snap.shared(ENDPOINT).unwrap()));

    assert!(shared(&Names::from_list(
        list(&["a", "b", "c"]),
        &snap,
        ENDPOINT
    )));
    assert!(shared(&Names::from_list(
        list(&["c", "a", "b"]),
        &snap,
        ENDPOINT
    )));
    // Same count, but a repeat hides a missing name.
    let repeated = Names::from_list(list(&["a", "a", "b"]), &snap, ENDPOINT);
    assert!(!shared(&repeated));
    assert_eq!(repeated.iter().collect::<Vec<_>>(), ["a", "b"]);
    let some = Names::from_list(list(&["b"]), &snap, ENDPOINT);
    assert!(!shared(&some) && some.contains("b") && !some.contains("a"));
}
