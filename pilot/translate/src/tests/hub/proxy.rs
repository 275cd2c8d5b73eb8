//! What the hub makes translation read of a proxy: `--hub-service`'s syntax, the node's data plane, workload
//! and pod, and the views they split.

use super::*;

#[test]
fn hub_service_syntax() {
    let ok = HubService::parse("Sextant-Hub.sextant-system.svc.cluster.local:9091").unwrap();
    assert_eq!(
        (ok.host.as_str(), ok.port),
        ("sextant-hub.sextant-system.svc.cluster.local", 9091)
    );
    assert_eq!(ok.to_string(), HUB);
    for bad in [
        "sextant-hub",
        "sextant-hub:",
        "sextant-hub:0",
        "sextant-hub:65536",
        "sextant-hub:http",
        ":9091",
        "*.svc.cluster.local:9091",
        "a..b:9091",
        "-a.b:9091",
        "10.0.0.1:9091:1",
    ] {
        let e = HubService::parse(bad).expect_err(bad);
        assert!(e.to_string().contains(bad), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}

#[test]
fn nodes_say_their_data_plane_workload_and_pod() {
    let node = |user_agent: &str, meta: &[(&str, Kind)]| Node {
        id: "sidecar~10.0.0.5~web-7f9c-x2x.shop~shop.svc.cluster.local".into(),
        user_agent_name: user_agent.into(),
        metadata: Some(Struct {
            fields: (meta.iter())
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value {
                            kind: Some(v.clone()),
                        },
                    )
                })
                .collect(),
        }),
        ..Default::default()
    };
    let labels = |app: &str| {
        Kind::StructValue(Struct {
            fields: [(
                "app".to_string(),
                Value {
                    kind: Some(Kind::StringValue(app.into())),
                },
            )]
            .into(),
        })
    };
    let p = ProxyInfo::from_node(&node("sextant-proxy", &[]));
    assert_eq!(p.data_plane, DataPlane::Sextant);
    assert_eq!(p.pod.as_deref(), Some("web-7f9c-x2x"));
    assert_eq!(
        p.workload, "web-7f9c-x2x",
        "the pod's name, when nothing else names it"
    );
    let p = ProxyInfo::from_node(&node("envoy", &[("LABELS", labels("web"))]));
    assert_eq!(
        (p.data_plane, p.workload.as_str()),
        (DataPlane::Envoy, "web")
    );
    let p = ProxyInfo::from_node(&node(
        "",
        &[
            ("LABELS", labels("web")),
            ("WORKLOAD_NAME", Kind::StringValue("web-v1".into())),
        ],
    ));
    assert_eq!(
        (p.data_plane, p.workload.as_str()),
        (DataPlane::Envoy, "web-v1")
    );
    let p = ProxyInfo::from_node(&Node {
        id: "web".into(),
        ..Default::default()
    });
    assert_eq!((p.pod, p.workload.as_str()), (None, ""));
}

#[test]
fn with_the_hub_data_plane_and_workload_split_views_and_pods_do_not() {
    let base = web(DataPlane::Envoy, Interception::Redirect);
    let others = [
        ProxyInfo {
            data_plane: DataPlane::Sextant,
            ..base.clone()
        },
        ProxyInfo {
            workload: "web-v2".into(),
            ..base.clone()
        },
    ];
    for o in &others {
        assert_ne!(base.view_with_hub(), o.view_with_hub(), "{o:?}");
        assert_eq!(base.view(), o.view(), "without the hub: {o:?}");
    }
    // Pods of one workload share a translation, hub or not.
    let other_pod = ProxyInfo {
        pod: Some("web-2".into()),
        ..base.clone()
    };
    assert_eq!(base.view_with_hub(), other_pod.view_with_hub());
    // What the view clears is not read: a proxy and its view get the same resources.
    let mesh = yaml(MESH);
    let hub = HubService::parse(HUB).unwrap();
    let options = Options {
        hub: Some(&hub),
        ..Default::default()
    };
    for p in [
        base.clone(),
        ProxyInfo {
            data_plane: DataPlane::Sextant,
            ..base.clone()
        },
    ] {
        let own = translate_with(&mesh, &registry(&mesh), &p, &options);
        let view = translate_with(&mesh, &registry(&mesh), &p.view_with_hub(), &options);
        assert_eq!(everything(&own), everything(&view));
    }
    // Routers do not read them.
    let router = ProxyInfo {
        kind: ProxyKind::Router,
        ..base.clone()
    };
    let v = router.view_with_hub();
    assert_eq!(
        (v.data_plane, v.workload.as_str(), v.pod),
        (DataPlane::Envoy, "", None)
    );
}
