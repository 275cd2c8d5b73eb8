//! Each resource judged on its own: what is left out, what degrades, what conflicts.

use std::path::PathBuf;

use hub_config::ConfigFiles;

use crate::{NetworkingSet, ParsedFiles, Validated, validate_each};

fn each(files: &[(&str, &str)]) -> Validated {
    let files = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    let set =
        NetworkingSet::load_with(&ConfigFiles::from_texts(files), &mut ParsedFiles::default());
    validate_each(&set)
}

/// (kind, namespace/name, file:line) of each resource left out.
fn left_out(v: &Validated) -> Vec<(String, String, String)> {
    v.rejected
        .iter()
        .map(|r| {
            (
                r.kind.clone(),
                r.key(),
                r.at().map(ToString::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

fn rule(name: &str, host: &str, v2_labels: bool) -> String {
    let v2 = if v2_labels {
        "{name: v2, labels: {version: v2}}"
    } else {
        "{name: v2}"
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {v2}]\n"
    )
}

fn route(name: &str, host: &str, subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: {host}, subset: {subset}}}\n"
    )
}

fn entry(name: &str, host: &str, port: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  ports: [{{number: {port}, name: http}}]\n  resolution: DNS\n"
    )
}

#[test]
fn an_invalid_resource_is_left_out_and_the_rest_is_kept() {
    let v = each(&[
        ("a.yaml", &rule("ratings", "ratings", true)),
        ("b.yaml", &route("ratings", "ratings", "v9")),
        ("c.yaml", &route("details", "details", "v1")),
        ("d.yaml", &rule("details", "details", true)),
    ]);
    // The route to an unknown subset of a valid rule is the route's own error.
    assert_eq!(
        left_out(&v),
        [(
            "VirtualService".into(),
            "default/ratings".into(),
            "b.yaml:8".into()
        )]
    );
    assert!(v.rejected[0].message().contains("unknown subset \"v9\""));
    assert_eq!(v.config.virtual_services.len(), 1);
    assert_eq!(v.config.destination_rules.len(), 2);
}

#[test]
fn a_route_to_a_subset_of_a_left_out_rule_degrades() {
    let v = each(&[
        ("a.yaml", &rule("reviews", "reviews", false)),
        ("b.yaml", &route("reviews", "reviews", "v2")),
    ]);
    assert_eq!(
        left_out(&v),
        [(
            "DestinationRule".into(),
            "default/reviews".into(),
            "a.yaml:6".into()
        )]
    );
    // The VirtualService stays, naming a subset no cluster has (Envoy answers 503).
    let target = &v.config.virtual_services[0].http[0].destinations[0];
    assert_eq!(target.subset.as_deref(), Some("v2"));
    assert!(target.labels.is_empty());
    assert!(v.config.destination_rules.is_empty());

    // The same when the rule cannot even be typed, or its file is not YAML.
    let untyped = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec: {host: reviews, subsets: 7}\n";
    for broken in [untyped, "kind: [\n"] {
        let v = each(&[
            ("a.yaml", broken),
            ("b.yaml", &route("reviews", "reviews", "v2")),
        ]);
        assert_eq!(v.rejected.len(), 1, "{:?}", left_out(&v));
        assert_eq!(v.config.virtual_services.len(), 1);
    }
}

#[test]
fn a_route_bound_to_a_left_out_gateway_is_kept() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  servers: []\n";
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop}\nspec:\n  hosts: [shop.example.com]\n  gateways: [edge]\n  http:\n  - route: [{destination: {host: shop}}]\n";
    let v = each(&[("a.yaml", gw), ("b.yaml", vs)]);
    assert_eq!(
        left_out(&v),
        [("Gateway".into(), "default/edge".into(), "a.yaml:5".into())]
    );
    assert_eq!(v.config.virtual_services[0].gateways, ["default/edge"]);
    assert!(v.config.gateways.is_empty());
    // A gateway never written is still the route's error.
    let v = each(&[("b.yaml", vs)]);
    assert_eq!(left_out(&v)[0].0, "VirtualService");
}

#[test]
fn of_two_claiming_one_host_the_later_is_left_out_and_an_invalid_one_claims_nothing() {
    let v = each(&[
        ("a.yaml", &entry("first", "db.example.com", 5432)),
        ("b.yaml", &entry("second", "db.example.com", 5433)),
        ("c.yaml", &rule("one", "reviews", true)),
        ("d.yaml", &rule("two", "reviews", true)),
    ]);
    let out = left_out(&v);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0].1, "default/second");
    assert_eq!(out[1].1, "default/two");
    assert_eq!(v.config.services["db.example.com"].ports[0].number, 5432);
    // The first is invalid: the second has the host.
    let v = each(&[
        ("a.yaml", &entry("first", "db.example.com", 0)),
        ("b.yaml", &entry("second", "db.example.com", 5433)),
    ]);
    assert_eq!(left_out(&v)[0].1, "default/first");
    assert_eq!(v.config.services["db.example.com"].ports[0].number, 5433);
}

#[test]
fn an_invalid_workload_entry_is_not_selected() {
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vm}\nspec:\n  hosts: [vm.example.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: vm}}\n";
    let we = |name: &str, address: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {name}}}\nspec: {{address: '{address}', labels: {{app: vm}}}}\n"
        )
    };
    let v = each(&[
        ("a.yaml", se),
        ("b.yaml", &we("good", "10.0.0.1")),
        ("c.yaml", &we("bad", "")),
    ]);
    assert_eq!(left_out(&v)[0].1, "default/bad");
    let endpoints = &v.config.services["vm.example.com"].endpoints;
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].address, "10.0.0.1");
}
