//! Pilot's ADS server against a real Envoy 1.40, in state-of-the-world and delta mode: Envoy's bootstrap
//! holds only the ADS cluster; it takes clusters, endpoints, listeners and routes from pilot, ACKs every type
//! with zero rejections, proxies to a backend, applies a route change (only the route configuration is
//! pushed; how fast is pilot-bench's to measure), and a push Envoy rejects is recorded as a NACK with its detail while Envoy keeps
//! serving its last good configuration.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ads, Backend, HeldPort, Plane, get, scratch, wait_until};
use pilot_xds::{Snapshot, SnapshotBuilder, TypeStatus, build, types};
use sextant_proto::envoy::config::core::v3::{DataSource, data_source};
use sextant_proto::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_action, route_match,
};

fn prefix(p: &str) -> Option<RouteMatch> {
    Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    })
}

/// Cluster `svc` → `backend`; listener `http` on `listen` with routes `r1`: `/v2` answers "v2" directly
/// when `v2`, everything else goes to `svc`.
fn mesh(backend: SocketAddr, listen: SocketAddr, v2: bool) -> SnapshotBuilder {
    let mut routes = Vec::new();
    if v2 {
        routes.push(Route {
            r#match: prefix("/v2"),
            action: Some(route::Action::DirectResponse(DirectResponseAction {
                status: 200,
                body: Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineString("v2".into())),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        });
    }
    routes.push(Route {
        r#match: prefix("/"),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("svc".into())),
            ..Default::default()
        })),
        ..Default::default()
    });
    let mut b = SnapshotBuilder::new();
    b.cluster(&build::eds_cluster("svc", 1000))
        .endpoints(&build::assignment("svc", &[(backend, 1)]))
        .listener(&build::http_listener("http", listen, "r1"))
        .route(&RouteConfiguration {
            name: "r1".into(),
            virtual_hosts: vec![VirtualHost {
                name: "all".into(),
                domains: vec!["*".into()],
                routes,
                ..Default::default()
            }],
            ..Default::default()
        });
    b
}

struct Pilot {
    ads: Ads,
}

impl Pilot {
    fn start(initial: Snapshot) -> Pilot {
        let ads = Ads::start();
        ads.snapshots.publish(initial).expect("consistent");
        Pilot { ads }
    }

    /// What pilot knows of the proxy, by short type name (cds, eds, lds, rds).
    fn status(&self) -> Vec<(String, TypeStatus)> {
        self.ads
            .connections
            .proxy("envoy-under-test")
            .map(|p| {
                p.types
                    .into_iter()
                    .map(|(url, t)| (types::short_name(&url).to_string(), t))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn of(&self, short: &str) -> TypeStatus {
        self.status()
            .into_iter()
            .find(|(t, _)| t == short)
            .map(|(_, s)| s)
            .unwrap_or_default()
    }

    fn all_acked(&self) -> bool {
        let s = self.status();
        s.len() == 4
            && s.iter()
                .all(|(_, t)| t.acked_version.as_ref() == Some(&t.sent_version))
    }

    fn pushes(&self) -> [u64; 4] {
        ["cds", "eds", "lds", "rds"].map(|t| self.of(t).pushes)
    }
}

fn run(api_type: &str, plane: Plane) {
    let dir = scratch(&format!("pilot-xds-{plane:?}-{api_type}"));
    let backend = Backend::start();
    // The listener's port is in the snapshot before Envoy binds it.
    let held = HeldPort::hold();
    let listen = held.addr;
    let pilot = Pilot::start(mesh(backend.addr, listen, false).build());
    let envoy = plane.start(
        &dir.join("proxy"),
        pilot.ads.addr,
        api_type,
        "{id: envoy-under-test, cluster: test}",
        "envoy-under-test",
        &[],
    );

    wait_until(
        Duration::from_secs(60),
        "Envoy to proxy through pilot's config",
        || get(listen, "/", &[]).is_some_and(|r| r.status == 200 && r.body == "backend ok"),
    );
    wait_until(
        Duration::from_secs(30),
        "Envoy to ACK all four types",
        || pilot.all_acked(),
    );
    assert_eq!(
        envoy.rejected_updates(),
        0,
        "Envoy rejected nothing: {}",
        get(envoy.admin(), "/stats?filter=update_rejected", &[])
            .map(|r| r.body)
            .unwrap_or_default()
    );
    let before = pilot.pushes();

    // A route change reaches Envoy; only the route configuration is pushed.
    let start = Instant::now();
    pilot
        .ads
        .snapshots
        .publish(mesh(backend.addr, listen, true).build())
        .expect("consistent");
    wait_until(
        Duration::from_secs(60),
        "the new route to take effect",
        || get(listen, "/v2", &[]).is_some_and(|r| r.body == "v2"),
    );
    let took = start.elapsed();
    wait_until(Duration::from_secs(30), "Envoy to ACK the change", || {
        pilot.all_acked()
    });
    assert_eq!(
        pilot.pushes(),
        [before[0], before[1], before[2], before[3] + 1],
        "only RDS was pushed (took {took:?})"
    );
    assert_eq!(envoy.rejected_updates(), 0);

    // A cluster whose connect timeout is negative: consistent for pilot, invalid for Envoy (NACK).
    let mut bad = build::eds_cluster("svc", 1000);
    bad.connect_timeout = Some(sextant_proto::google::protobuf::Duration {
        seconds: -1,
        nanos: 0,
    });
    let mut next = mesh(backend.addr, listen, true);
    next.cluster(&bad);
    pilot
        .ads
        .snapshots
        .publish(next.build())
        .expect("consistent");
    wait_until(
        Duration::from_secs(30),
        "pilot to record Envoy's NACK",
        || pilot.of("cds").last_nack.is_some(),
    );
    let nack = pilot
        .of("cds")
        .last_nack
        .map(|n| n.message)
        .unwrap_or_default();
    // Each proxy says it its own way: Envoy's validation message, or sextant proxy's naming the field.
    let detail = match plane {
        Plane::Envoy => "Expected positive duration",
        Plane::Sextant => "connect_timeout: -1s 0ns is not a valid non-negative duration",
    };
    assert!(nack.contains(detail), "the NACK's detail is kept: {nack}");
    assert!(envoy.rejected_updates() >= 1);
    assert!(
        get(listen, "/v2", &[]).is_some_and(|r| r.body == "v2"),
        "Envoy keeps serving its last good configuration"
    );
    let mut registry = prometheus_client::registry::Registry::default();
    pilot.ads.connections.metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("pilot_xds_nacks_total{type=\"cds\"} 1"),
        "{text}"
    );
    drop(envoy);
}

#[test]
fn envoy_takes_its_whole_config_over_state_of_the_world_ads() {
    run("GRPC", Plane::Envoy);
}

#[test]
fn envoy_takes_its_whole_config_over_delta_ads() {
    run("DELTA_GRPC", Plane::Envoy);
}

#[test]
fn sextant_proxy_takes_its_whole_config_over_state_of_the_world_ads() {
    run("GRPC", Plane::Sextant);
}

#[test]
fn sextant_proxy_takes_its_whole_config_over_delta_ads() {
    run("DELTA_GRPC", Plane::Sextant);
}
