//! Istio's published bookinfo networking samples, loaded unmodified with our ServiceEntries for the bookinfo
//! services, produce the routing a user expects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pilot_config::{
    FileRegistry, Matcher, MeshConfig, NetworkingSet, Protocol, RouteTarget, ServiceRegistry,
    validate,
};
use sextant_resources::ConfigFiles;

const REVIEWS: &str = "reviews.default.svc.cluster.local";
const RATINGS: &str = "ratings.default.svc.cluster.local";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bookinfo")
}

/// Our services, one sample, the gateway sample its routes may name, and the DestinationRules of
/// `destination-rule-all.yaml` unless the sample brings its own.
fn mesh_with(sample: &str) -> MeshConfig {
    let own_rules = std::fs::read_to_string(dir().join(sample))
        .expect("fixture readable")
        .contains("kind: DestinationRule");
    let mut names = vec!["services.yaml", sample];
    if !own_rules {
        names.push("destination-rule-all.yaml");
    }
    if sample != "bookinfo-gateway.yaml" {
        names.push("bookinfo-gateway.yaml");
    }
    let files = names
        .iter()
        .map(|f| {
            let path = dir().join(f);
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            (path, text)
        })
        .collect();
    let set = NetworkingSet::load(&ConfigFiles::from_texts(files))
        .unwrap_or_else(|e| panic!("{sample}: {e}"));
    validate(&set).unwrap_or_else(|e| panic!("{sample}: {e}"))
}

fn routes_of<'a>(mesh: &'a MeshConfig, host: &str) -> &'a [pilot_config::HttpRouteModel] {
    let vs = mesh.virtual_services_for(host, "default");
    assert_eq!(vs.len(), 1, "one VirtualService for {host}");
    &vs[0].http
}

fn subset_weights(targets: &[RouteTarget]) -> Vec<(String, String, u32)> {
    targets
        .iter()
        .map(|t| {
            (
                t.subset.clone().expect("a subset"),
                t.labels["version"].clone(),
                t.weight,
            )
        })
        .collect()
}

#[test]
fn all_v1_routes_every_service_to_its_v1_subset() {
    let mesh = mesh_with("virtual-service-all-v1.yaml");
    for svc in ["productpage", "reviews", "ratings", "details"] {
        let host = format!("{svc}.default.svc.cluster.local");
        let routes = routes_of(&mesh, &host);
        assert_eq!(routes.len(), 1);
        assert!(routes[0].matches.is_empty(), "every request");
        let t = &routes[0].destinations[0];
        assert_eq!((t.host.as_str(), t.weight), (host.as_str(), 100));
        assert_eq!(
            t.labels["version"], "v1",
            "{svc}: subset v1 resolved to its labels"
        );
    }
}

#[test]
fn reviews_90_10() {
    let mesh = mesh_with("virtual-service-reviews-90-10.yaml");
    let routes = routes_of(&mesh, REVIEWS);
    assert_eq!(
        subset_weights(&routes[0].destinations),
        [
            ("v1".into(), "v1".into(), 90),
            ("v2".into(), "v2".into(), 10)
        ]
    );
}

#[test]
fn reviews_v3() {
    let mesh = mesh_with("virtual-service-reviews-v3.yaml");
    let routes = routes_of(&mesh, REVIEWS);
    assert_eq!(
        subset_weights(&routes[0].destinations),
        [("v3".into(), "v3".into(), 100)]
    );
}

#[test]
fn jason_goes_to_reviews_v2_everyone_else_to_v1() {
    let mesh = mesh_with("virtual-service-reviews-test-v2.yaml");
    let routes = routes_of(&mesh, REVIEWS);
    assert_eq!(routes.len(), 2);
    let (name, matcher) = &routes[0].matches[0].headers[0];
    assert_eq!(name, "end-user");
    assert_eq!(matcher, &Matcher::Exact("jason".into()));
    assert!(matcher.matches("jason") && !matcher.matches("Jason"));
    assert_eq!(routes[0].destinations[0].labels["version"], "v2");
    assert!(routes[1].matches.is_empty());
    assert_eq!(routes[1].destinations[0].labels["version"], "v1");
}

#[test]
fn ratings_delay_for_jason() {
    let mesh = mesh_with("virtual-service-ratings-test-delay.yaml");
    let routes = routes_of(&mesh, RATINGS);
    let delay = routes[0]
        .spec
        .fault
        .as_ref()
        .unwrap()
        .delay
        .as_ref()
        .unwrap();
    assert_eq!(delay.fixed_delay.get(), Duration::from_secs(7));
    assert_eq!(delay.percentage.unwrap().value, 100.0);
    assert_eq!(routes[0].matches[0].headers[0].0, "end-user");
    assert!(routes[1].spec.fault.is_none(), "others are not delayed");
}

#[test]
fn ratings_abort_for_jason() {
    let mesh = mesh_with("virtual-service-ratings-test-abort.yaml");
    let routes = routes_of(&mesh, RATINGS);
    let abort = routes[0]
        .spec
        .fault
        .as_ref()
        .unwrap()
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(abort.http_status, 500);
    assert_eq!(abort.percentage.unwrap().value, 100.0);
    assert!(routes[1].spec.fault.is_none());
}

#[test]
fn gateway_routes_productpage_paths() {
    let mesh = mesh_with("virtual-service-reviews-v3.yaml");
    let gw = &mesh.gateways[0];
    assert_eq!(gw.key(), "default/bookinfo-gateway");
    assert_eq!(gw.spec.selector["istio"], "ingressgateway");
    assert_eq!(gw.spec.servers[0].port.number, 8080);
    assert_eq!(gw.spec.servers[0].hosts, ["*"]);
    let vs = mesh
        .virtual_services
        .iter()
        .find(|v| v.resource.name == "bookinfo")
        .unwrap();
    assert_eq!(vs.gateways, ["default/bookinfo-gateway"]);
    let route = &vs.http[0];
    let uris: Vec<_> = route
        .matches
        .iter()
        .map(|m| m.uri.clone().unwrap())
        .collect();
    assert_eq!(uris.len(), 5);
    assert_eq!(uris[0], Matcher::Exact("/productpage".into()));
    assert!(uris[1].matches("/static/css/x.css"));
    assert_eq!(
        route.destinations[0].host,
        "productpage.default.svc.cluster.local"
    );
    assert_eq!(route.destinations[0].port, Some(9080));
    // A gateway-only VirtualService does not apply to the sidecars.
    assert_eq!(
        mesh.virtual_services_for("productpage.default.svc.cluster.local", "default")
            .len(),
        0
    );
}

#[test]
fn the_registry_serves_the_bookinfo_services() {
    let mesh = mesh_with("virtual-service-reviews-90-10.yaml");
    let registry = FileRegistry::new();
    assert_eq!(registry.update(mesh.services.clone()), 1);
    let snap = registry.snapshot();
    assert_eq!(snap.services().count(), 4);
    let reviews = snap.service(REVIEWS).unwrap();
    assert_eq!(reviews.ports[0].protocol, Protocol::Http, "port named http");
    let subset = mesh.subset(REVIEWS, "v2").unwrap();
    let v2: Vec<_> = reviews.endpoints_with(&subset.labels).collect();
    assert_eq!(v2.len(), 1);
    assert_eq!(
        (v2[0].address.as_str(), v2[0].ports[&9080]),
        ("127.0.0.1", 19082)
    );
    assert_eq!(v2[0].labels["app"], "reviews");
    // ratings' endpoint is a WorkloadEntry chosen by the ServiceEntry's workloadSelector.
    let ratings = snap.service(RATINGS).unwrap();
    assert_eq!(ratings.endpoints.len(), 1);
    assert_eq!(ratings.endpoints[0].ports[&9080], 19084);
    assert_eq!(
        ratings.endpoints[0].service_account.as_deref(),
        Some("bookinfo-ratings")
    );
    // Reloading the same files changes nothing.
    let again = mesh_with("virtual-service-reviews-v3.yaml");
    assert_eq!(registry.update(again.services.clone()), 1);
}

#[test]
fn the_whole_directory_names_the_conflicting_samples() {
    // The samples are alternatives: several define VirtualService reviews, so loading them together is
    // refused with both places named, rather than one silently winning.
    let err = pilot_config::load_path(&dir()).unwrap_err().to_string();
    assert!(
        err.contains("VirtualService default/reviews is defined twice (first at"),
        "{err}"
    );
    assert!(
        err.contains("virtual-service-reviews-90-10.yaml:4"),
        "{err}"
    );
}

#[test]
fn every_published_sample_loads_unmodified() {
    let mut samples: Vec<String> = std::fs::read_dir(dir())
        .expect("fixture dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "services.yaml")
        .collect();
    samples.sort();
    assert_eq!(samples.len(), 22);
    for sample in &samples {
        let mesh = mesh_with(sample);
        assert!(!mesh.destination_rules.is_empty(), "{sample}");
    }
}

#[test]
fn more_samples_mean_what_they_say() {
    let mesh = mesh_with("virtual-service-reviews-80-20.yaml");
    let weights: Vec<u32> = routes_of(&mesh, REVIEWS)[0]
        .destinations
        .iter()
        .map(|t| t.weight)
        .collect();
    assert_eq!(weights, [80, 20]);

    let mesh = mesh_with("virtual-service-reviews-jason-v2-v3.yaml");
    let routes = routes_of(&mesh, REVIEWS);
    assert_eq!(routes[0].destinations[0].labels["version"], "v2");
    assert_eq!(routes[1].destinations[0].labels["version"], "v3");

    let mesh = mesh_with("fault-injection-details-v1.yaml");
    let routes = routes_of(&mesh, "details.default.svc.cluster.local");
    let abort = routes[0]
        .spec
        .fault
        .as_ref()
        .unwrap()
        .abort
        .as_ref()
        .unwrap();
    assert_eq!(
        (abort.http_status, abort.percentage.unwrap().value),
        (555, 100.0)
    );

    // Istio's mutual TLS sample: every service's traffic (and each subset's) uses the mesh certificates.
    let mesh = mesh_with("destination-rule-all-mtls.yaml");
    for rule in mesh.destination_rules.values() {
        let spec = &rule.resource.spec;
        let tls = spec.traffic_policy.as_ref().and_then(|p| p.tls.as_ref());
        assert_eq!(
            tls.map(|t| t.mode),
            Some(pilot_config::types::TlsMode::IstioMutual),
            "{}",
            rule.host
        );
    }
    assert_eq!(mesh.destination_rules.len(), 4);

    let mesh = mesh_with("egress-rule-google-apis.yaml");
    let google = &mesh.services["www.googleapis.com"];
    assert_eq!(google.resolution, pilot_config::types::Resolution::Dns);
    let protocols: Vec<_> = google.ports.iter().map(|p| p.protocol).collect();
    assert_eq!(protocols, [Protocol::Http, Protocol::Https]);
    let route = &routes_of(&mesh, "www.googleapis.com")[0];
    assert_eq!(route.matches[0].port, Some(80));
    assert_eq!(route.destinations[0].port, Some(443));

    let mesh = mesh_with("certmanager-gateway.yaml");
    let vs = mesh
        .virtual_services
        .iter()
        .find(|v| v.resource.name == "cert-manager")
        .unwrap();
    assert_eq!(vs.gateways, ["istio-system/cert-manager-gateway"]);
    assert_eq!(
        vs.http[0].destinations[0].host, "cert-manager-resolver.istio-system.svc.cluster.local",
        "a short name resolves in the VirtualService's namespace"
    );
}
