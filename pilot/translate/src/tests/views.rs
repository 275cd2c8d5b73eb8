//! The view key: proxies with equal views get identical resources, and every field translation reads splits
//! views.

use super::*;

/// Every resource of every type, by type URL.
fn resources(s: &Snapshot) -> Vec<(String, Vec<(String, XdsBody)>)> {
    let mut all: Vec<_> = s
        .type_urls()
        .map(|t| {
            let all = s.resources(t).map_or_else(Vec::new, |m| {
                m.iter()
                    .map(|(name, r)| (name.clone(), r.body.value.clone()))
                    .collect()
            });
            (t.to_string(), all)
        })
        .collect();
    all.sort();
    all
}

type XdsBody = Vec<u8>;

/// Proxies of every kind, interception and a gateway's labels.
fn proxies() -> Vec<ProxyInfo> {
    let sidecar = proxy(Interception::Redirect);
    let explicit = proxy(Interception::None);
    let ingress = ProxyInfo {
        id: "router~10.0.0.9~ingress-1.istio-system~istio-system.svc.cluster.local".into(),
        namespace: "istio-system".into(),
        labels: [("istio".to_string(), "ingressgateway".to_string())]
            .into_iter()
            .collect(),
        kind: ProxyKind::Router,
        ..Default::default()
    };
    let grpc = ProxyInfo {
        kind: ProxyKind::ProxylessGrpc,
        ..proxy(Interception::None)
    };
    vec![sidecar, explicit, ingress, grpc]
}

/// Translating a proxy and translating its view give the same bytes: what the view clears is not read.
#[test]
fn a_proxy_and_its_view_get_the_same_resources() {
    let mut meshes = vec![bookinfo("virtual-service-reviews-jason-v2-v3.yaml")];
    let gateway = fixtures().join("bookinfo-gateway.yaml");
    let mut files = vec![(
        gateway.clone(),
        std::fs::read_to_string(&gateway).expect("fixture"),
    )];
    for f in ["services.yaml", "destination-rule-all-mtls.yaml"] {
        let path = fixtures().join(f);
        files.push((
            path.clone(),
            std::fs::read_to_string(&path).expect("fixture"),
        ));
    }
    meshes.push(mesh_of(files));
    let mut compared = 0;
    for mesh in &meshes {
        for p in proxies() {
            let other_pod = ProxyInfo {
                id: format!("{}-other", p.id),
                ip: Some([10, 9, 8, 7].into()),
                ..p.clone()
            };
            assert_eq!(p.view(), other_pod.view(), "id and ip do not split views");
            let own = resources(&snap(mesh, &p));
            assert!(!own.is_empty(), "{p:?} gets resources");
            assert_eq!(own, resources(&snap(mesh, &p.view())), "{p:?}");
            assert_eq!(own, resources(&snap(mesh, &other_pod)), "{p:?}");
            compared += 1;
        }
    }
    assert_eq!(compared, 8);
}

/// Proxies that differ in anything translation reads are different views.
#[test]
fn each_field_translation_reads_splits_views() {
    let base = proxy(Interception::Redirect);
    let variants = [
        ProxyInfo {
            namespace: "other".into(),
            ..base.clone()
        },
        ProxyInfo {
            labels: [("app".to_string(), "x".to_string())].into_iter().collect(),
            ..base.clone()
        },
        ProxyInfo {
            interception: Interception::None,
            ..base.clone()
        },
        ProxyInfo {
            kind: ProxyKind::Router,
            ..base.clone()
        },
        ProxyInfo {
            service_account: "bookinfo-reviews".into(),
            ..base.clone()
        },
    ];
    for v in &variants {
        assert_ne!(base.view(), v.view(), "{v:?}");
    }
    let views: std::collections::HashSet<ProxyInfo> =
        variants.iter().map(ProxyInfo::view).collect();
    assert_eq!(
        views.len(),
        variants.len(),
        "the variants' views are distinct"
    );
}

/// A proxy keeping its own key is a view of its own, and its data plane too (an Envoy reads its secrets
/// from the agent, the Sextant proxy over ADS); without its own key the data plane does not split views.
#[test]
fn keeping_its_own_key_splits_views_by_data_plane() {
    let base = proxy(Interception::None);
    let local = |data_plane| ProxyInfo {
        local_certificate: true,
        data_plane,
        ..base.clone()
    };
    let envoy = local(crate::DataPlane::Envoy);
    let sextant = local(crate::DataPlane::Sextant);
    assert_ne!(base.view(), envoy.view());
    assert_ne!(envoy.view(), sextant.view());
    assert_ne!(envoy.view_with_hub(), sextant.view_with_hub());
    let plain_sextant = ProxyInfo {
        data_plane: crate::DataPlane::Sextant,
        ..base.clone()
    };
    assert_eq!(base.view(), plain_sextant.view());
    // A proxyless client takes no certificate: it has none of its own either.
    let grpc = ProxyInfo {
        kind: ProxyKind::ProxylessGrpc,
        local_certificate: true,
        ..base.clone()
    };
    assert!(!grpc.view().local_certificate);
    // A proxy and its view get the same resources.
    let mesh = bookinfo("virtual-service-reviews-jason-v2-v3.yaml");
    for p in [&envoy, &sextant] {
        assert_eq!(
            resources(&snap(&mesh, p)),
            resources(&snap(&mesh, &p.view()))
        );
    }
}
