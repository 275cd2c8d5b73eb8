use std::net::SocketAddr;

use proxy_config::matcher::{StringMatch, StringMatcher};
use proxy_config::rbac::{Action, Cidr, Permission, Policy, Principal, Rbac, Rules};
use proxy_stats::Stats;
use proxy_tls::PeerIdentity;

use super::{Facts, Filters, decide};

const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

fn cidr(address: &str, prefix_len: u8) -> Cidr {
    Cidr {
        address: address.parse().expect("an IP"),
        prefix_len,
    }
}

fn string(pattern: StringMatch) -> StringMatcher {
    StringMatcher {
        pattern,
        ignore_case: false,
    }
}

fn exact(s: &str) -> StringMatcher {
    string(StringMatch::Exact(s.into()))
}

fn sleep_identity() -> PeerIdentity {
    PeerIdentity {
        uri_sans: vec![SLEEP.into()],
        dns_sans: vec![],
        subject: "O=sextant-test".into(),
    }
}

/// A plain-text connection from 10.0.0.5 to 10.1.2.3:9080 without SNI.
fn plain() -> Facts<'static> {
    Facts {
        peer: addr("10.0.0.5:41000"),
        destination: Some(addr("10.1.2.3:9080")),
        server_name: "",
        tls: None,
    }
}

fn with_tls<'a>(id: &'a PeerIdentity) -> Facts<'a> {
    Facts {
        tls: Some(id),
        ..plain()
    }
}

fn rules(action: Action, policies: Vec<(Vec<Permission>, Vec<Principal>)>) -> Rules {
    Rules {
        action,
        policies: policies
            .into_iter()
            .enumerate()
            .map(|(i, (permissions, principals))| Policy {
                name: format!("p{i}"),
                permissions,
                principals,
            })
            .collect(),
    }
}

/// Whether an ALLOW policy of `permission` and any principal lets `facts` through.
fn permits(permission: Permission, facts: &Facts<'_>) -> bool {
    decide(
        &rules(
            Action::Allow,
            vec![(vec![permission], vec![Principal::Any])],
        ),
        facts,
    )
}

/// Whether an ALLOW policy of any permission and `principal` lets `facts` through.
fn admits(principal: Principal, facts: &Facts<'_>) -> bool {
    decide(
        &rules(
            Action::Allow,
            vec![(vec![Permission::Any], vec![principal])],
        ),
        facts,
    )
}

#[test]
fn allow_passes_only_what_a_policy_matches_and_deny_the_rest() {
    let port = |p| vec![(vec![Permission::DestinationPort(p)], vec![Principal::Any])];
    assert!(decide(&rules(Action::Allow, port(9080)), &plain()));
    assert!(!decide(&rules(Action::Allow, port(9090)), &plain()));
    assert!(!decide(&rules(Action::Deny, port(9080)), &plain()));
    assert!(decide(&rules(Action::Deny, port(9090)), &plain()));
    // No policies: ALLOW lets nothing through, DENY everything.
    assert!(!decide(&rules(Action::Allow, vec![]), &plain()));
    assert!(decide(&rules(Action::Deny, vec![]), &plain()));
    // One permission and one principal of the same policy must both match; any policy may.
    let both = rules(
        Action::Allow,
        vec![(
            vec![
                Permission::DestinationPort(9090),
                Permission::DestinationPort(9080),
            ],
            vec![
                Principal::RemoteIp(cidr("192.0.2.0", 24)),
                Principal::RemoteIp(cidr("10.0.0.0", 8)),
            ],
        )],
    );
    assert!(decide(&both, &plain()));
    let split = rules(
        Action::Allow,
        vec![
            (
                vec![Permission::DestinationPort(9080)],
                vec![Principal::RemoteIp(cidr("192.0.2.0", 24))],
            ),
            (
                vec![Permission::DestinationPort(9090)],
                vec![Principal::RemoteIp(cidr("10.0.0.0", 8))],
            ),
        ],
    );
    assert!(
        !decide(&split, &plain()),
        "no one policy has a matching permission and principal"
    );
}

#[test]
fn each_permission_reads_the_destination_or_the_sni() {
    let facts = plain();
    assert!(permits(Permission::Any, &facts));
    assert!(permits(Permission::DestinationPort(9080), &facts));
    assert!(!permits(Permission::DestinationPort(80), &facts));
    let range = |start, end| Permission::DestinationPortRange { start, end };
    assert!(permits(range(9080, 9081), &facts));
    assert!(permits(range(1, 65536), &facts));
    assert!(
        !permits(range(9000, 9080), &facts),
        "a range's end is exclusive"
    );
    assert!(permits(
        Permission::DestinationIp(cidr("10.1.0.0", 16)),
        &facts
    ));
    assert!(permits(
        Permission::DestinationIp(cidr("10.1.2.3", 32)),
        &facts
    ));
    assert!(!permits(
        Permission::DestinationIp(cidr("10.2.0.0", 16)),
        &facts
    ));
    assert!(!permits(Permission::DestinationIp(cidr("::", 0)), &facts));
    // Without a known destination nothing about it matches.
    let unknown = Facts {
        destination: None,
        ..plain()
    };
    assert!(!permits(Permission::DestinationPort(9080), &unknown));
    assert!(!permits(
        Permission::DestinationIp(cidr("0.0.0.0", 0)),
        &unknown
    ));
    // The SNI, or the empty string without one.
    let sni = Facts {
        server_name: "reviews.default.svc.cluster.local",
        ..plain()
    };
    let suffix =
        Permission::RequestedServerName(string(StringMatch::Suffix(".svc.cluster.local".into())));
    assert!(permits(suffix.clone(), &sni));
    assert!(!permits(suffix, &plain()));
    assert!(permits(
        Permission::RequestedServerName(exact("")),
        &plain()
    ));
}

#[test]
fn permissions_nest_with_and_or_not() {
    let facts = plain();
    let port = Permission::DestinationPort;
    let and = |v| Permission::And(v);
    let or = |v| Permission::Or(v);
    let not = |p| Permission::Not(Box::new(p));
    assert!(permits(and(vec![port(9080), Permission::Any]), &facts));
    assert!(!permits(and(vec![port(9080), port(80)]), &facts));
    assert!(permits(or(vec![port(80), port(9080)]), &facts));
    assert!(!permits(or(vec![port(80), port(443)]), &facts));
    assert!(permits(not(port(80)), &facts));
    assert!(!permits(not(port(9080)), &facts));
    // Istio's shape: and_rules of or_rules, and a not_rule inside.
    let istio = and(vec![
        or(vec![port(80), port(9080)]),
        not(or(vec![Permission::DestinationIp(cidr("10.2.0.0", 16))])),
    ]);
    assert!(permits(istio, &facts));
    assert!(!permits(not(and(vec![port(9080), not(port(1))])), &facts));
}

#[test]
fn each_address_principal_reads_the_peer() {
    let facts = plain();
    assert!(admits(Principal::Any, &facts));
    assert!(admits(Principal::RemoteIp(cidr("10.0.0.5", 32)), &facts));
    assert!(admits(Principal::RemoteIp(cidr("10.0.0.0", 24)), &facts));
    assert!(!admits(Principal::RemoteIp(cidr("10.0.1.0", 24)), &facts));
    let v6 = Facts {
        peer: addr("[2001:db8::7]:5000"),
        ..plain()
    };
    assert!(admits(Principal::RemoteIp(cidr("2001:db8::", 32)), &v6));
    assert!(!admits(Principal::RemoteIp(cidr("0.0.0.0", 0)), &v6));
}

#[test]
fn principals_nest_with_and_or_not() {
    let id = sleep_identity();
    let facts = with_tls(&id);
    let ip = |a| Principal::RemoteIp(cidr(a, 32));
    let sleep = Principal::Authenticated(Some(exact(SLEEP)));
    let and = |v| Principal::And(v);
    let or = |v| Principal::Or(v);
    let not = |p| Principal::Not(Box::new(p));
    assert!(admits(and(vec![sleep.clone(), ip("10.0.0.5")]), &facts));
    assert!(!admits(and(vec![sleep.clone(), ip("10.0.0.6")]), &facts));
    assert!(admits(or(vec![ip("10.0.0.6"), sleep.clone()]), &facts));
    assert!(!admits(or(vec![ip("10.0.0.6"), ip("10.0.0.7")]), &facts));
    assert!(!admits(not(sleep.clone()), &facts));
    assert!(admits(not(ip("10.0.0.6")), &facts));
    assert!(admits(
        and(vec![
            or(vec![sleep.clone()]),
            not(or(vec![ip("192.0.2.1")]))
        ]),
        &facts
    ));
    assert!(!admits(not(Principal::Any), &facts));
}

#[test]
fn authenticated_matches_tls_peers_only() {
    let id = sleep_identity();
    let any_tls = Principal::Authenticated(None);
    let sleep = Principal::Authenticated(Some(exact(SLEEP)));
    assert!(admits(sleep.clone(), &with_tls(&id)));
    assert!(admits(any_tls.clone(), &with_tls(&id)));
    // Plain text is never authenticated, whatever the matcher; its negation matches.
    assert!(!admits(sleep.clone(), &plain()));
    assert!(!admits(any_tls.clone(), &plain()));
    assert!(
        !admits(
            Principal::Authenticated(Some(string(StringMatch::Prefix(String::new())))),
            &plain()
        ),
        "not even a matcher of everything"
    );
    assert!(admits(Principal::Not(Box::new(sleep)), &plain()));
    // A TLS peer without a certificate: authenticated with no matcher matches (the connection is TLS);
    // a matcher sees only the empty subject.
    let none = PeerIdentity::default();
    assert!(admits(any_tls, &with_tls(&none)));
    assert!(!admits(
        Principal::Authenticated(Some(exact(SLEEP))),
        &with_tls(&none)
    ));
    assert!(admits(
        Principal::Authenticated(Some(exact(""))),
        &with_tls(&none)
    ));
}

#[test]
fn authenticated_reads_uri_sans_then_dns_sans_then_the_subject() {
    let id = PeerIdentity {
        uri_sans: vec!["spiffe://a/ns/x/sa/one".into(), SLEEP.into()],
        dns_sans: vec!["client.example.com".into()],
        subject: "CN=J. Smith,O=Widget Inc.,C=US".into(),
    };
    let facts = with_tls(&id);
    let by = |m| admits(Principal::Authenticated(Some(m)), &facts);
    assert!(by(exact(SLEEP)), "the second URI SAN");
    assert!(by(exact("client.example.com")), "a DNS SAN");
    assert!(by(exact("CN=J. Smith,O=Widget Inc.,C=US")), "the subject");
    assert!(!by(exact("spiffe://a/ns/x/sa/two")));
}

#[test]
fn principal_names_match_by_every_string_matcher_form() {
    let id = sleep_identity();
    let facts = with_tls(&id);
    let by = |pattern, ignore_case| {
        admits(
            Principal::Authenticated(Some(StringMatcher {
                pattern,
                ignore_case,
            })),
            &facts,
        )
    };
    assert!(by(StringMatch::Exact(SLEEP.into()), false));
    assert!(!by(StringMatch::Exact(SLEEP.to_uppercase()), false));
    assert!(by(StringMatch::Exact(SLEEP.to_uppercase()), true));
    assert!(by(
        StringMatch::Prefix("spiffe://cluster.local/".into()),
        false
    ));
    assert!(!by(StringMatch::Prefix("spiffe://other/".into()), false));
    assert!(by(StringMatch::Suffix("/SA/SLEEP".into()), true));
    assert!(!by(StringMatch::Suffix("/SA/SLEEP".into()), false));
    assert!(by(StringMatch::Contains("/ns/default/".into()), false));
    assert!(!by(StringMatch::Contains("/ns/other/".into()), false));
    let regex = |r: &str| StringMatcher::full_regex(r).expect("a valid regex").pattern;
    assert!(by(
        regex(r"spiffe://cluster\.local/ns/default/sa/.*"),
        false
    ));
    assert!(
        !by(regex(r"cluster\.local/ns/default/sa/.*"), false),
        "a regex matches the whole name"
    );
    assert!(!by(regex(r"spiffe://cluster\.local/ns/other/.*"), false));
}

#[test]
fn filters_decide_in_order_and_count_as_envoy_does() {
    let stats = Stats::new();
    let deny_10 = Rbac {
        stat_prefix: "tcp.".into(),
        rules: Some(rules(
            Action::Deny,
            vec![(
                vec![Permission::Any],
                vec![Principal::RemoteIp(cidr("10.0.0.0", 8))],
            )],
        )),
    };
    let allow_9080 = Rbac {
        stat_prefix: "allow".into(),
        rules: Some(rules(
            Action::Allow,
            vec![(
                vec![Permission::DestinationPort(9080)],
                vec![Principal::Any],
            )],
        )),
    };
    let unruled = Rbac {
        stat_prefix: "none.".into(),
        rules: None,
    };
    let filters = Filters::new(&[unruled, deny_10, allow_9080], &stats);
    assert!(!filters.reads_certificates());
    let outside = Facts {
        peer: addr("192.0.2.9:1234"),
        ..plain()
    };
    assert!(filters.allow(&outside));
    assert!(!filters.allow(&plain()));
    let wrong_port = Facts {
        destination: Some(addr("10.1.2.3:9090")),
        ..outside
    };
    assert!(!filters.allow(&wrong_port));
    let value = |name: &str| stats.value(name).unwrap_or(-1);
    assert_eq!(value("tcp.rbac.allowed"), 2);
    assert_eq!(value("tcp.rbac.denied"), 1);
    // The ALLOW filter decided only the two connections the DENY filter let through.
    assert_eq!(value("allow.rbac.allowed"), 1);
    assert_eq!(value("allow.rbac.denied"), 1);
    assert_eq!(value("tcp.rbac.shadow_allowed"), 0);
    // A filter without rules counts nothing (Envoy registers its counters all the same).
    assert_eq!(value("none.rbac.allowed"), 0);
    assert_eq!(value("none.rbac.denied"), 0);

    let by_name = Rbac {
        stat_prefix: "tcp.".into(),
        rules: Some(rules(
            Action::Allow,
            vec![(
                vec![Permission::Any],
                vec![Principal::Not(Box::new(Principal::Authenticated(Some(
                    exact(SLEEP),
                ))))],
            )],
        )),
    };
    assert!(Filters::new(&[by_name], &stats).reads_certificates());
    assert!(
        Filters::new(&[], &stats).allow(&plain()),
        "no filters, no say"
    );
}
