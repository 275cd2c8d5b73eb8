//! Network RBAC filters as pilot emits them for AuthorizationPolicy (`[rbac DENY, rbac ALLOW, tcp_proxy]`):
//! decoded into the proxy's types, and everything outside the subset refused naming the field.

mod common;

use std::collections::HashMap;

use common::{any, listener_with, manager};
use proxy_config::listener;
use proxy_config::rbac::{Action, Cidr, NETWORK_RBAC, Permission, Principal, Rbac};
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::listener::v3 as lds;
use sextant_proto::envoy::config::rbac::v3 as pb;
use sextant_proto::envoy::extensions::filters::network::rbac::v3 as network;
use sextant_proto::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;
use sextant_proto::envoy::r#type::matcher::v3 as matcher;
use sextant_proto::envoy::r#type::v3::Int32Range;
use sextant_proto::google::protobuf::{Any, Duration, UInt32Value};

fn filter(name: &str, config: Any) -> lds::Filter {
    lds::Filter {
        name: name.into(),
        config_type: Some(lds::filter::ConfigType::TypedConfig(config)),
    }
}

fn tcp_proxy() -> lds::Filter {
    filter(
        listener::TCP_PROXY,
        any(&tcp::TcpProxy {
            stat_prefix: "inbound|9000||".into(),
            cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(
                "inbound|9000||".into(),
            )),
            ..Default::default()
        }),
    )
}

fn perm(rule: pb::permission::Rule) -> pb::Permission {
    pb::Permission { rule: Some(rule) }
}

fn id(identifier: pb::principal::Identifier) -> pb::Principal {
    pb::Principal {
        identifier: Some(identifier),
    }
}

fn cidr(address: &str, len: u32) -> core::CidrRange {
    core::CidrRange {
        address_prefix: address.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn exact(s: &str) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(matcher::string_matcher::MatchPattern::Exact(s.into())),
        ignore_case: false,
    }
}

fn regex(r: &str) -> matcher::StringMatcher {
    matcher::StringMatcher {
        match_pattern: Some(matcher::string_matcher::MatchPattern::SafeRegex(
            matcher::RegexMatcher {
                regex: r.into(),
                ..Default::default()
            },
        )),
        ignore_case: false,
    }
}

fn authenticated(m: matcher::StringMatcher) -> pb::Principal {
    id(pb::principal::Identifier::Authenticated(
        pb::principal::Authenticated {
            principal_name: Some(m),
        },
    ))
}

fn rbac(action: pb::rbac::Action, policies: Vec<(&str, pb::Policy)>) -> network::Rbac {
    network::Rbac {
        stat_prefix: "tcp.".into(),
        rules: Some(pb::Rbac {
            action: action as i32,
            policies: policies
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What Istio emits for a DENY policy on port 9000 for one namespace and an ALLOW policy for one service
/// account or a range of peers (`source_ip` among them: deprecated, still honoured by Envoy 1.40).
#[allow(deprecated)]
fn deny_and_allow() -> (network::Rbac, network::Rbac) {
    use pb::permission::Rule as R;
    use pb::principal::Identifier as I;
    let deny = rbac(
        pb::rbac::Action::Deny,
        vec![(
            "ns[foo]-policy[deny-other]-rule[0]",
            pb::Policy {
                permissions: vec![perm(R::AndRules(pb::permission::Set {
                    rules: vec![perm(R::OrRules(pb::permission::Set {
                        rules: vec![perm(R::DestinationPort(9000))],
                    }))],
                }))],
                principals: vec![id(I::AndIds(pb::principal::Set {
                    ids: vec![id(I::OrIds(pb::principal::Set {
                        ids: vec![authenticated(regex(r"spiffe://cluster\.local/ns/other/.*"))],
                    }))],
                }))],
                ..Default::default()
            },
        )],
    );
    let allow = rbac(
        pb::rbac::Action::Allow,
        vec![
            (
                "ns[foo]-policy[allow-sleep]-rule[0]",
                pb::Policy {
                    permissions: vec![
                        perm(R::DestinationPortRange(Int32Range {
                            start: 9000,
                            end: 9100,
                        })),
                        perm(R::NotRule(Box::new(perm(R::DestinationIp(cidr(
                            "10.0.0.0", 8,
                        )))))),
                        perm(R::RequestedServerName(exact("foo.example.com"))),
                    ],
                    principals: vec![
                        authenticated(exact("spiffe://cluster.local/ns/default/sa/sleep")),
                        id(I::NotId(Box::new(id(I::Any(true))))),
                    ],
                    ..Default::default()
                },
            ),
            (
                "ns[foo]-policy[allow-peers]-rule[0]",
                pb::Policy {
                    permissions: vec![perm(R::Any(true))],
                    principals: vec![
                        id(I::SourceIp(cidr("192.0.2.0", 24))),
                        id(I::DirectRemoteIp(cidr("2001:db8::", 32))),
                        id(I::RemoteIp(cidr("198.51.100.7", 32))),
                    ],
                    ..Default::default()
                },
            ),
        ],
    );
    (deny, allow)
}

fn listener_with_filters(filters: Vec<lds::Filter>) -> lds::Listener {
    let mut l = listener_with(&manager());
    l.filter_chains[0].filters = filters;
    l
}

fn chain_of(deny: &network::Rbac, allow: &network::Rbac) -> lds::Listener {
    listener_with_filters(vec![
        filter(NETWORK_RBAC, any(deny)),
        filter(NETWORK_RBAC, any(allow)),
        tcp_proxy(),
    ])
}

fn decode_rbac(deny: &network::Rbac, allow: &network::Rbac) -> Vec<Rbac> {
    let l = listener::decode(&any(&chain_of(deny, allow))).expect("supported");
    l.filter_chains[0].rbac.clone()
}

#[test]
fn pilots_deny_then_allow_chain_decodes_into_rules() {
    let (deny, allow) = deny_and_allow();
    let l = listener::decode(&any(&chain_of(&deny, &allow))).expect("supported");
    let chain = &l.filter_chains[0];
    assert!(matches!(chain.network, listener::Network::Tcp(_)));
    let [deny, allow] = chain.rbac.as_slice() else {
        panic!("two RBAC filters: {:?}", chain.rbac);
    };
    assert_eq!(deny.stat_prefix, "tcp.");
    let deny = deny.rules.as_ref().expect("rules");
    assert_eq!(deny.action, Action::Deny);
    assert_eq!(deny.policies.len(), 1);
    assert!(matches!(
        &deny.policies[0].permissions[0],
        Permission::And(v) if matches!(&v[0], Permission::Or(w) if matches!(w[0], Permission::DestinationPort(9000)))
    ));
    let allow = allow.rules.as_ref().expect("rules");
    assert_eq!(allow.action, Action::Allow);
    // Sorted by name.
    let names: Vec<&str> = allow.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ns[foo]-policy[allow-peers]-rule[0]",
            "ns[foo]-policy[allow-sleep]-rule[0]"
        ]
    );
    let sleep = &allow.policies[1];
    assert!(matches!(
        sleep.permissions[0],
        Permission::DestinationPortRange {
            start: 9000,
            end: 9100
        }
    ));
    assert!(matches!(
        &sleep.permissions[1],
        Permission::Not(p) if matches!(**p, Permission::DestinationIp(Cidr { prefix_len: 8, .. }))
    ));
    assert!(
        matches!(&sleep.permissions[2], Permission::RequestedServerName(m) if m.matches("foo.example.com"))
    );
    assert!(matches!(
        &sleep.principals[0],
        Principal::Authenticated(Some(m)) if m.matches("spiffe://cluster.local/ns/default/sa/sleep")
    ));
    assert!(matches!(&sleep.principals[1], Principal::Not(p) if matches!(**p, Principal::Any)));
    let peers = &allow.policies[0];
    assert!(matches!(peers.permissions[0], Permission::Any));
    let ranges: Vec<Cidr> = peers
        .principals
        .iter()
        .map(|p| match p {
            Principal::RemoteIp(c) => *c,
            other => panic!("an address principal: {other:?}"),
        })
        .collect();
    assert_eq!(
        ranges,
        [
            Cidr {
                address: "192.0.2.0".parse().expect("ip"),
                prefix_len: 24
            },
            Cidr {
                address: "2001:db8::".parse().expect("ip"),
                prefix_len: 32
            },
            Cidr {
                address: "198.51.100.7".parse().expect("ip"),
                prefix_len: 32
            },
        ]
    );
}

#[test]
fn an_allow_filter_without_policies_and_one_without_rules_decode() {
    let empty = rbac(pb::rbac::Action::Allow, vec![]);
    let no_rules = network::Rbac {
        stat_prefix: "tcp.".into(),
        ..Default::default()
    };
    let filters = decode_rbac(&empty, &no_rules);
    let rules = filters[0].rules.as_ref().expect("rules");
    assert_eq!(rules.action, Action::Allow);
    assert!(rules.policies.is_empty());
    assert!(filters[1].rules.is_none());
}

#[test]
fn a_chain_is_rbac_filters_then_one_terminal_filter() {
    let (deny, _) = deny_and_allow();
    // RBAC before an HTTP connection manager.
    let l = listener_with_filters(vec![
        filter(NETWORK_RBAC, any(&deny)),
        filter(listener::HTTP_CONNECTION_MANAGER, any(&manager())),
    ]);
    let l = listener::decode(&any(&l)).expect("supported");
    assert_eq!(l.filter_chains[0].rbac.len(), 1);
    assert!(matches!(
        l.filter_chains[0].network,
        listener::Network::Http(_)
    ));
    assert_eq!(l.route_configs().collect::<Vec<_>>(), ["9080"]);

    let refused = |filters: Vec<lds::Filter>| {
        listener::decode(&any(&listener_with_filters(filters))).expect_err("refused")
    };
    let e = refused(vec![filter(NETWORK_RBAC, any(&deny))]);
    assert_eq!(e.path, "filter_chains[0].filters[0].name", "{e}");
    assert!(e.reason.contains("must end in"), "{e}");
    let e = refused(vec![tcp_proxy(), filter(NETWORK_RBAC, any(&deny))]);
    assert_eq!(e.path, "filter_chains[0].filters[0].name", "{e}");
    assert!(e.reason.contains("must come last"), "{e}");
    let e = refused(vec![]);
    assert_eq!(e.path, "filter_chains[0].filters", "{e}");
    // The RBAC filter's name with another payload.
    let e = refused(vec![
        filter(NETWORK_RBAC, any(&tcp::TcpProxy::default())),
        tcp_proxy(),
    ]);
    assert_eq!(e.path, "filter_chains[0].filters[0].typed_config", "{e}");
}

/// Decodes a chain whose first filter is `deny` changed by `change`, expecting it refused at `path`
/// (relative to the filter's `typed_config`).
fn refused_at(change: impl FnOnce(&mut network::Rbac), path: &str) -> String {
    let (mut deny, allow) = deny_and_allow();
    change(&mut deny);
    let e = listener::decode(&any(&chain_of(&deny, &allow))).expect_err("refused");
    assert_eq!(
        e.path,
        format!("filter_chains[0].filters[0].typed_config.{path}"),
        "{e}"
    );
    e.to_string()
}

fn only_policy(r: &mut network::Rbac) -> &mut pb::Policy {
    let rules = r.rules.as_mut().expect("rules");
    rules.policies.values_mut().next().expect("a policy")
}

const POLICY: &str = "rules.policies[\"ns[foo]-policy[deny-other]-rule[0]\"]";

#[test]
fn fields_outside_the_subset_are_refused_by_path() {
    let e = refused_at(|r| r.shadow_rules = r.rules.clone(), "shadow_rules");
    assert!(e.contains("not implemented by sextant proxy"), "{e}");
    refused_at(|r| r.matcher = Some(Default::default()), "matcher");
    refused_at(
        |r| r.shadow_matcher = Some(Default::default()),
        "shadow_matcher",
    );
    refused_at(
        |r| r.shadow_rules_stat_prefix = "shadow.".into(),
        "shadow_rules_stat_prefix",
    );
    refused_at(
        |r| {
            r.delay_deny = Some(Duration {
                seconds: 1,
                nanos: 0,
            })
        },
        "delay_deny",
    );
    let e = refused_at(
        |r| r.enforcement_type = network::rbac::EnforcementType::Continuous as i32,
        "enforcement_type",
    );
    assert!(e.contains("ONE_TIME_ON_FIRST_BYTE"), "{e}");
    let e = refused_at(
        |r| r.rules.as_mut().expect("rules").action = pb::rbac::Action::Log as i32,
        "rules.action",
    );
    assert!(e.contains("LOG"), "{e}");
    refused_at(
        |r| r.rules.as_mut().expect("rules").audit_logging_options = Some(Default::default()),
        "rules.audit_logging_options",
    );
    refused_at(|r| r.stat_prefix.clear(), "stat_prefix");
    refused_at(
        |r| only_policy(r).condition = Some(Default::default()),
        &format!("{POLICY}.condition"),
    );
    refused_at(
        |r| only_policy(r).checked_condition = Some(Default::default()),
        &format!("{POLICY}.checked_condition"),
    );
    refused_at(
        |r| only_policy(r).principals.clear(),
        &format!("{POLICY}.principals"),
    );
    refused_at(
        |r| only_policy(r).permissions.clear(),
        &format!("{POLICY}.permissions"),
    );
}

#[test]
fn permissions_and_principals_outside_the_subset_are_refused_by_path() {
    use pb::permission::Rule as R;
    use pb::principal::Identifier as I;
    refused_at(
        |r| {
            only_policy(r).permissions = vec![perm(R::Header(Default::default()))];
        },
        &format!("{POLICY}.permissions[0].header"),
    );
    refused_at(
        |r| {
            only_policy(r).permissions = vec![perm(R::NotRule(Box::new(perm(R::UrlPath(
                Default::default(),
            )))))];
        },
        &format!("{POLICY}.permissions[0].not_rule.url_path"),
    );
    refused_at(
        |r| only_policy(r).principals = vec![id(I::Header(Default::default()))],
        &format!("{POLICY}.principals[0].header"),
    );
    refused_at(
        |r| only_policy(r).principals = vec![id(I::FilterState(Default::default()))],
        &format!("{POLICY}.principals[0].filter_state"),
    );
    let e = refused_at(
        |r| only_policy(r).permissions = vec![perm(R::DestinationPort(70000))],
        &format!("{POLICY}.permissions[0].destination_port"),
    );
    assert!(e.contains("70000"), "{e}");
    refused_at(
        |r| only_policy(r).permissions = vec![perm(R::Any(false))],
        &format!("{POLICY}.permissions[0].any"),
    );
    refused_at(
        |r| only_policy(r).permissions = vec![pb::Permission { rule: None }],
        &format!("{POLICY}.permissions[0]"),
    );
    refused_at(
        |r| {
            only_policy(r).permissions =
                vec![perm(R::AndRules(pb::permission::Set { rules: vec![] }))]
        },
        &format!("{POLICY}.permissions[0].and_rules.rules"),
    );
    refused_at(
        |r| {
            only_policy(r).permissions = vec![perm(R::DestinationPortRange(Int32Range {
                start: 10,
                end: 5,
            }))]
        },
        &format!("{POLICY}.permissions[0].destination_port_range"),
    );
    refused_at(
        |r| only_policy(r).principals = vec![id(I::RemoteIp(cidr("not-an-ip", 8)))],
        &format!("{POLICY}.principals[0].remote_ip.address_prefix"),
    );
    refused_at(
        |r| {
            only_policy(r).principals = vec![authenticated(regex("(unclosed"))];
        },
        &format!("{POLICY}.principals[0].authenticated.principal_name.safe_regex.regex"),
    );
    refused_at(
        |r| {
            only_policy(r).principals = vec![id(I::OrIds(pb::principal::Set { ids: vec![] }))];
        },
        &format!("{POLICY}.principals[0].or_ids.ids"),
    );
}
