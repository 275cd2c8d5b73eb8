use std::net::SocketAddr;

use http::{HeaderMap, HeaderValue};
use proxy_config::matcher::{StringMatch, StringMatcher};
use proxy_config::rbac::{Action, PeerIdentity, Permission, Policy, Principal, Rules};
use proxy_config::route::{HeaderMatch, ValueMatch};

use super::{Context, HttpRequest, decide, header_matches};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

fn string(pattern: StringMatch) -> StringMatcher {
    StringMatcher {
        pattern,
        ignore_case: false,
    }
}

fn header(name: &str, value: ValueMatch, invert: bool) -> HeaderMatch {
    HeaderMatch {
        name: name.into(),
        value,
        invert,
    }
}

fn is(name: &str, pattern: StringMatch) -> HeaderMatch {
    header(name, ValueMatch::String(string(pattern)), false)
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(*k, HeaderValue::from_static(v));
    }
    map
}

fn request<'a>(
    method: &'a str,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
) -> HttpRequest<'a> {
    HttpRequest {
        authority: "reviews.default.svc.cluster.local:9080",
        method,
        path_and_query,
        scheme: "http",
        headers,
    }
}

fn context<'a>(http: Option<HttpRequest<'a>>, tls: Option<&'a PeerIdentity>) -> Context<'a> {
    Context {
        peer: addr("10.0.0.5:41000"),
        destination: Some(addr("10.1.2.3:9080")),
        server_name: "",
        tls,
        http,
    }
}

fn rules(action: Action, permissions: Vec<Permission>, principals: Vec<Principal>) -> Rules {
    Rules {
        action,
        policies: vec![Policy {
            name: "p".into(),
            permissions,
            principals,
        }],
    }
}

#[test]
fn pseudo_headers_are_what_envoy_exposes() {
    let h = headers(&[]);
    let r = request("POST", "/api/v1?debug=1", &h);
    assert!(header_matches(
        &is(":method", StringMatch::Exact("POST".into())),
        &r
    ));
    assert!(!header_matches(
        &is(":method", StringMatch::Exact("GET".into())),
        &r
    ));
    // Istio matches hosts on `:authority`, port included as sent.
    assert!(header_matches(
        &is(":authority", StringMatch::Prefix("reviews.default".into())),
        &r
    ));
    assert!(header_matches(
        &is(
            ":authority",
            StringMatch::Exact("reviews.default.svc.cluster.local:9080".into())
        ),
        &r
    ));
    // `:path` carries the query, as Envoy's header does.
    assert!(header_matches(
        &is(":path", StringMatch::Exact("/api/v1?debug=1".into())),
        &r
    ));
    assert!(!header_matches(
        &is(":path", StringMatch::Exact("/api/v1".into())),
        &r
    ));
    assert!(header_matches(
        &is(":scheme", StringMatch::Exact("http".into())),
        &r
    ));
}

#[test]
fn headers_match_as_envoys_header_matcher() {
    let h = headers(&[
        ("x-user", "Jason"),
        ("x-tag", "a"),
        ("x-tag", "b"),
        ("x-empty", ""),
    ]);
    let r = request("GET", "/", &h);
    let exact = |name: &str, v: &str| is(name, StringMatch::Exact(v.into()));
    assert!(header_matches(&exact("x-user", "Jason"), &r));
    let mut folded = string(StringMatch::Exact("jason".into()));
    folded.ignore_case = true;
    assert!(header_matches(
        &header("x-user", ValueMatch::String(folded), false),
        &r
    ));
    assert!(header_matches(
        &is("x-user", StringMatch::Suffix("son".into())),
        &r
    ));
    assert!(header_matches(
        &is("x-user", StringMatch::Contains("aso".into())),
        &r
    ));
    let regex = StringMatcher::full_regex("J[a-z]+").expect("a regex");
    assert!(header_matches(
        &header("x-user", ValueMatch::String(regex), false),
        &r
    ));
    // Several values are matched joined by commas.
    assert!(header_matches(&exact("x-tag", "a,b"), &r));
    assert!(header_matches(&exact("x-empty", ""), &r));
    // Present, absent and inverted.
    assert!(header_matches(
        &header("x-user", ValueMatch::Present, false),
        &r
    ));
    assert!(!header_matches(
        &header("x-absent", ValueMatch::Present, false),
        &r
    ));
    assert!(header_matches(
        &header("x-absent", ValueMatch::Present, true),
        &r
    ));
    assert!(!header_matches(
        &header("x-user", ValueMatch::Present, true),
        &r
    ));
    let inverted = |name: &str, v: &str| {
        header(
            name,
            ValueMatch::String(string(StringMatch::Exact(v.into()))),
            true,
        )
    };
    assert!(header_matches(&inverted("x-user", "Bob"), &r));
    assert!(!header_matches(&inverted("x-user", "Jason"), &r));
    // Envoy 1.40: an absent header never matches a value, inverted or not.
    assert!(!header_matches(&inverted("x-absent", "Bob"), &r));
}

#[test]
fn url_path_is_the_path_without_its_query() {
    let h = headers(&[]);
    let prefix = |p: &str| {
        rules(
            Action::Allow,
            vec![Permission::UrlPath(string(StringMatch::Prefix(p.into())))],
            vec![Principal::Any],
        )
    };
    let exact = rules(
        Action::Allow,
        vec![Permission::UrlPath(string(StringMatch::Exact(
            "/admin".into(),
        )))],
        vec![Principal::UrlPath(string(StringMatch::Suffix(
            "min".into(),
        )))],
    );
    for (path, admin, exactly) in [
        ("/admin?x=1", true, true),
        ("/admin#top", true, true),
        ("/admin/users", true, false),
        ("/", false, false),
        ("/public?next=/admin", false, false),
    ] {
        let r = request("GET", path, &h);
        assert_eq!(
            decide(&prefix("/admin"), &context(Some(r), None)),
            admin,
            "{path}"
        );
        assert_eq!(decide(&exact, &context(Some(r), None)), exactly, "{path}");
    }
}

#[test]
fn http_rules_never_match_a_connection() {
    let header_rule = Permission::Header(header(":method", ValueMatch::Present, false));
    let inverted = Principal::Header(header("x-any", ValueMatch::Present, true));
    let allow = rules(
        Action::Allow,
        vec![header_rule.clone()],
        vec![Principal::Any],
    );
    assert!(!decide(&allow, &context(None, None)));
    let deny = rules(Action::Deny, vec![header_rule], vec![Principal::Any]);
    assert!(decide(&deny, &context(None, None)));
    let url = rules(
        Action::Allow,
        vec![Permission::Any],
        vec![Principal::UrlPath(string(StringMatch::Prefix("/".into())))],
    );
    assert!(!decide(&url, &context(None, None)));
    let inverted = rules(Action::Allow, vec![Permission::Any], vec![inverted]);
    assert!(!decide(&inverted, &context(None, None)));
}

/// Istio's shape: a DENY of `/admin*` for everyone, an ALLOW of GET from the sleep identity or 10.0.0.0/8.
#[test]
fn the_engine_combines_connection_and_request_rules() {
    let sleep = PeerIdentity {
        uri_sans: vec!["spiffe://cluster.local/ns/default/sa/sleep".into()],
        ..PeerIdentity::default()
    };
    let other = PeerIdentity {
        uri_sans: vec!["spiffe://cluster.local/ns/default/sa/other".into()],
        ..PeerIdentity::default()
    };
    let deny = rules(
        Action::Deny,
        vec![Permission::And(vec![
            Permission::DestinationPort(9080),
            Permission::Or(vec![Permission::UrlPath(string(StringMatch::Prefix(
                "/admin".into(),
            )))]),
        ])],
        vec![Principal::Any],
    );
    let allow = rules(
        Action::Allow,
        vec![Permission::And(vec![
            Permission::Header(is(":method", StringMatch::Exact("GET".into()))),
            Permission::Not(Box::new(Permission::Header(is(
                ":authority",
                StringMatch::Prefix("evil".into()),
            )))),
        ])],
        vec![Principal::Authenticated(Some(string(StringMatch::Exact(
            "spiffe://cluster.local/ns/default/sa/sleep".into(),
        ))))],
    );
    let h = headers(&[]);
    let both = |method: &str, path: &str, id: Option<&PeerIdentity>| {
        let r = request(method, path, &h);
        let cx = context(Some(r), id);
        decide(&deny, &cx) && decide(&allow, &cx)
    };
    assert!(both("GET", "/", Some(&sleep)));
    assert!(!both("GET", "/admin", Some(&sleep)), "denied by path");
    assert!(!both("POST", "/", Some(&sleep)), "not an allowed method");
    assert!(!both("GET", "/", Some(&other)), "not the allowed identity");
    assert!(!both("GET", "/", None), "plain text is not authenticated");
    // The port condition of the DENY reads the connection: on another port /admin passes.
    let r = request("GET", "/admin", &h);
    let elsewhere = Context {
        destination: Some(addr("10.1.2.3:8080")),
        ..context(Some(r), Some(&sleep))
    };
    assert!(decide(&deny, &elsewhere));
    let r = Context {
        http: Some(HttpRequest {
            authority: "evil.example",
            ..request("GET", "/", &h)
        }),
        ..context(None, Some(&sleep))
    };
    assert!(!decide(&allow, &r), "excluded authority");
}
