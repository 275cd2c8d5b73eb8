//! HTTP RBAC filters as pilot emits them for AuthorizationPolicy on HTTP chains (`[rbac DENY, rbac ALLOW,
//! …, router]` in the connection manager): decoded into the proxy's types, and everything outside the subset
//! refused naming the field.

mod common;

use common::{any, listener_with, manager};
use proxy_config::listener::{self, HttpManager, Network};
use proxy_config::matcher::StringMatch;
use proxy_config::rbac::{Action, HTTP_RBAC, HttpRbac, Permission, Principal};
use proxy_config::route::ValueMatch;
use sextant_proto::envoy::config::rbac::v3 as pb;
use sextant_proto::envoy::config::route::v3 as route;
use sextant_proto::envoy::extensions::filters::http::cors::v3::Cors;
use sextant_proto::envoy::extensions::filters::http::rbac::v3 as http;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::envoy::r#type::matcher::v3 as matcher;
use sextant_proto::google::protobuf::Any;

fn perm(rule: pb::permission::Rule) -> pb::Permission {
    pb::Permission { rule: Some(rule) }
}

fn id(identifier: pb::principal::Identifier) -> pb::Principal {
    pb::Principal {
        identifier: Some(identifier),
    }
}

fn string(
    pattern: matcher::string_matcher::MatchPattern,
    ignore_case: bool,
) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn header(name: &str, m: matcher::StringMatcher) -> route::HeaderMatcher {
    route::HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(m)),
        ..Default::default()
    }
}

fn url_path(m: matcher::StringMatcher) -> matcher::PathMatcher {
    matcher::PathMatcher {
        rule: Some(matcher::path_matcher::Rule::Path(m)),
    }
}

fn rules(action: pb::rbac::Action, policy: pb::Policy) -> pb::Rbac {
    pb::Rbac {
        action: action as i32,
        policies: [("ns[foo]-policy[p]-rule[0]".to_string(), policy)].into(),
        ..Default::default()
    }
}

/// Istio's shape: DENY `/admin*`, ALLOW GET to `reviews*` (host ignoring case) from a header-named user.
fn deny_and_allow() -> (http::Rbac, http::Rbac) {
    use matcher::string_matcher::MatchPattern as P;
    use pb::permission::Rule as R;
    use pb::principal::Identifier as I;
    let deny = http::Rbac {
        rules: Some(rules(
            pb::rbac::Action::Deny,
            pb::Policy {
                permissions: vec![perm(R::UrlPath(url_path(string(
                    P::Prefix("/admin".into()),
                    false,
                ))))],
                principals: vec![id(I::Any(true))],
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let allow = http::Rbac {
        rules: Some(rules(
            pb::rbac::Action::Allow,
            pb::Policy {
                permissions: vec![perm(R::AndRules(pb::permission::Set {
                    rules: vec![
                        perm(R::Header(header(
                            ":method",
                            string(P::Exact("GET".into()), false),
                        ))),
                        perm(R::Header(header(
                            ":authority",
                            string(P::Prefix("reviews".into()), true),
                        ))),
                    ],
                }))],
                principals: vec![id(I::Header(header(
                    "x-user",
                    string(P::Exact("jason".into()), false),
                )))],
                ..Default::default()
            },
        )),
        rules_stat_prefix: "allow_".into(),
        ..Default::default()
    };
    (deny, allow)
}

fn http_filter(name: &str, config: Any) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: name.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// The connection manager with `filters` before its router.
fn with_filters(filters: Vec<hcm::HttpFilter>) -> hcm::HttpConnectionManager {
    let mut m = manager();
    let router = m.http_filters.pop().expect("the router");
    m.http_filters = filters;
    m.http_filters.push(router);
    m
}

fn decode(m: &hcm::HttpConnectionManager) -> Result<HttpManager, proxy_config::Error> {
    let l = listener::decode(&any(&listener_with(m)))?;
    match &l.filter_chains[0].network {
        Network::Http(h) => Ok(h.clone()),
        Network::Tcp(_) => panic!("an HTTP chain"),
    }
}

fn decode_pair(
    deny: &http::Rbac,
    allow: &http::Rbac,
) -> Result<Vec<HttpRbac>, proxy_config::Error> {
    let m = with_filters(vec![
        http_filter(HTTP_RBAC, any(deny)),
        http_filter(HTTP_RBAC, any(allow)),
    ]);
    decode(&m).map(|h| h.rbac)
}

#[test]
fn pilots_deny_then_allow_filters_decode_into_rules() {
    let (deny, allow) = deny_and_allow();
    let rbac = decode_pair(&deny, &allow).expect("decodes");
    assert_eq!(rbac.len(), 2);
    assert_eq!(rbac[0].rules_stat_prefix, "");
    assert_eq!(rbac[1].rules_stat_prefix, "allow_");
    let deny = rbac[0].rules.as_ref().expect("rules");
    assert_eq!(deny.action, Action::Deny);
    match &deny.policies[0].permissions[..] {
        [Permission::UrlPath(m)] => {
            assert!(matches!(&m.pattern, StringMatch::Prefix(p) if p == "/admin"));
        }
        other => panic!("{other:?}"),
    }
    let allow = rbac[1].rules.as_ref().expect("rules");
    assert_eq!(allow.action, Action::Allow);
    let Permission::And(both) = &allow.policies[0].permissions[0] else {
        panic!("{:?}", allow.policies[0].permissions);
    };
    match &both[..] {
        [Permission::Header(method), Permission::Header(host)] => {
            assert_eq!(method.name, ":method");
            assert_eq!(host.name, ":authority");
            assert!(matches!(&host.value, ValueMatch::String(s) if s.ignore_case));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &allow.policies[0].principals[..],
        [Principal::Header(h)] if h.name == "x-user"
    ));
}

#[test]
fn a_filter_without_rules_decodes_and_a_manager_without_rbac_has_none() {
    let m = with_filters(vec![http_filter(HTTP_RBAC, any(&http::Rbac::default()))]);
    let h = decode(&m).expect("decodes");
    assert_eq!(h.rbac.len(), 1);
    assert!(h.rbac[0].rules.is_none(), "no rules: allow everything");
    assert!(decode(&manager()).expect("decodes").rbac.is_empty());
}

/// Decodes the pair with the deny filter changed by `change`, expecting it refused at `path` (relative to
/// the deny filter's `typed_config`).
fn refused_at(change: impl FnOnce(&mut http::Rbac), path: &str) -> String {
    let (mut deny, allow) = deny_and_allow();
    change(&mut deny);
    let e = decode_pair(&deny, &allow).expect_err("refused");
    assert_eq!(
        e.path,
        format!("filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.{path}"),
        "{e}"
    );
    e.to_string()
}

#[test]
// The deprecated match forms are exactly what must be refused.
#[allow(deprecated)]
fn fields_outside_the_subset_are_refused_by_path() {
    let e = refused_at(|r| r.shadow_rules = r.rules.clone(), "shadow_rules");
    assert!(e.contains("not implemented by sextant proxy"), "{e}");
    refused_at(
        |r| r.shadow_rules_stat_prefix = "dry_run_".into(),
        "shadow_rules_stat_prefix",
    );
    refused_at(|r| r.matcher = Some(Default::default()), "matcher");
    refused_at(
        |r| r.shadow_matcher = Some(Default::default()),
        "shadow_matcher",
    );
    refused_at(|r| r.track_per_rule_stats = true, "track_per_rule_stats");
    let policy = "rules.policies[\"ns[foo]-policy[p]-rule[0]\"]";
    refused_at(
        |r| r.rules.as_mut().expect("rules").action = pb::rbac::Action::Log as i32,
        "rules.action",
    );
    refused_at(
        |r| {
            let p = r
                .rules
                .as_mut()
                .expect("rules")
                .policies
                .values_mut()
                .next()
                .expect("one");
            p.permissions = vec![perm(pb::permission::Rule::Header(route::HeaderMatcher {
                name: "x-a".into(),
                header_match_specifier: Some(
                    route::header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                ),
                treat_missing_header_as_empty: true,
                ..Default::default()
            }))];
        },
        &format!("{policy}.permissions[0].header.treat_missing_header_as_empty"),
    );
    refused_at(
        |r| {
            let p = r
                .rules
                .as_mut()
                .expect("rules")
                .policies
                .values_mut()
                .next()
                .expect("one");
            p.permissions = vec![perm(pb::permission::Rule::Header(route::HeaderMatcher {
                name: "x-a".into(),
                header_match_specifier: Some(
                    route::header_matcher::HeaderMatchSpecifier::ExactMatch("v".into()),
                ),
                ..Default::default()
            }))];
        },
        &format!("{policy}.permissions[0].header.exact_match"),
    );
    refused_at(
        |r| {
            let p = r
                .rules
                .as_mut()
                .expect("rules")
                .policies
                .values_mut()
                .next()
                .expect("one");
            p.principals = vec![id(pb::principal::Identifier::UrlPath(
                matcher::PathMatcher { rule: None },
            ))];
        },
        &format!("{policy}.principals[0].url_path.path"),
    );
    refused_at(
        |r| {
            let p = r
                .rules
                .as_mut()
                .expect("rules")
                .policies
                .values_mut()
                .next()
                .expect("one");
            p.principals = vec![id(pb::principal::Identifier::Metadata(Default::default()))];
        },
        &format!("{policy}.principals[0].metadata"),
    );
}

#[test]
fn the_filter_must_precede_fault_and_cors_and_carry_its_own_type() {
    let (deny, _) = deny_and_allow();
    let m = with_filters(vec![
        http_filter("envoy.filters.http.cors", any(&Cors::default())),
        http_filter(HTTP_RBAC, any(&deny)),
    ]);
    let e = decode(&m).expect_err("refused");
    assert_eq!(
        e.path, "filter_chains[0].filters[0].typed_config.http_filters[1]",
        "{e}"
    );
    let m = with_filters(vec![http_filter(HTTP_RBAC, any(&Cors::default()))]);
    let e = decode(&m).expect_err("refused");
    assert_eq!(
        e.path, "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config",
        "{e}"
    );
}

#[test]
fn per_route_rbac_config_is_refused() {
    let per_route = http::RbacPerRoute::default();
    let config = route::RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![route::VirtualHost {
            name: "any".into(),
            domains: vec!["*".into()],
            routes: vec![route::Route {
                r#match: Some(route::RouteMatch {
                    path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::route::Action::DirectResponse(
                    route::DirectResponseAction {
                        status: 200,
                        ..Default::default()
                    },
                )),
                typed_per_filter_config: [(HTTP_RBAC.to_string(), any(&per_route))].into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let e = proxy_config::route::decode(&any(&config)).expect_err("refused");
    assert!(e.path.contains("typed_per_filter_config"), "{e}");
}
