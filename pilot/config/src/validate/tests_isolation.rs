//! Each resource judged on its own: what is left out, what degrades, what conflicts.

use std::path::PathBuf;

use sextant_resources::ConfigFiles;

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

fn set_of(files: &[(&str, &str)]) -> NetworkingSet {
    let files = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    NetworkingSet::load_with(&ConfigFiles::from_texts(files), &mut ParsedFiles::default())
}

fn allow(name: &str, principal: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  rules:\n  - from: [{{source: {{principals: [\"{principal}\"]}}}}]\n"
    )
}

#[test]
fn security_resources_fail_closed() {
    use crate::security::Security;
    use crate::types::{AuthorizationAction, MtlsMode};
    use crate::validate_each_after;
    let good = allow("web", "cluster.local/ns/shop/sa/front");
    let first = validate_each(&set_of(&[("p.yaml", &good)]));
    assert!(first.rejected.is_empty());
    let enforced = |s: &Security| {
        (s.authorization.iter())
            .map(|p| (p.name.clone(), p.rules.len(), p.fail_closed.is_some()))
            .collect::<Vec<_>>()
    };
    assert_eq!(enforced(&first.config.security), [("web".into(), 1, false)]);

    // Turned invalid (a bad principal): its last good version stays, and it is reported.
    let bad = allow("web", "cluster.local/*/sa/*");
    let second = validate_each_after(&set_of(&[("p.yaml", &bad)]), Some(&first.config));
    assert_eq!(left_out(&second)[0].1, "shop/web");
    assert_eq!(
        second.config.security.authorization[0].rules,
        first.config.security.authorization[0].rules
    );
    assert_eq!(enforced(&second.config.security), [("web".into(), 1, true)]);
    // And again after that: still the last good one, not the stand-in of a stand-in.
    let third = validate_each_after(&set_of(&[("p.yaml", &bad)]), Some(&second.config));
    assert_eq!(
        third.config.security.authorization,
        second.config.security.authorization
    );
    // Fixed: the new version.
    let fixed = allow("web", "cluster.local/ns/shop/sa/other");
    let fourth = validate_each_after(&set_of(&[("p.yaml", &fixed)]), Some(&third.config));
    assert!(fourth.rejected.is_empty());
    assert_eq!(
        enforced(&fourth.config.security),
        [("web".into(), 1, false)]
    );

    // Never valid: an ALLOW without rules (allows nothing) for what it selects, or for the whole namespace
    // when it could not even be read.
    let fresh = validate_each(&set_of(&[("p.yaml", &bad)]));
    let p = &fresh.config.security.authorization[0];
    assert_eq!((p.action, p.rules.len()), (AuthorizationAction::Allow, 0));
    assert!(p.selector.as_ref().is_some_and(|s| s.get("app").is_some()));
    let unreadable = validate_each(&set_of(&[(
        "p.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: shop}\nspec:\n  action: CUSTOM\n",
    )]));
    assert_eq!(left_out(&unreadable)[0].0, "AuthorizationPolicy");
    let p = &unreadable.config.security.authorization[0];
    assert_eq!((p.selector.is_none(), p.rules.len()), (true, 0));

    // PeerAuthentication: a never-valid one is STRICT for what it selects.
    let peer = validate_each(&set_of(&[(
        "m.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec:\n  mtls: {mode: PERMISSIVE}\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
    )]));
    assert!(
        left_out(&peer)[0].2.starts_with("m.yaml:"),
        "{:?}",
        left_out(&peer)
    );
    let labels = crate::types::Labels::new();
    assert_eq!(
        peer.config.security.mtls_for("shop", &labels).mode,
        MtlsMode::Strict
    );
}
