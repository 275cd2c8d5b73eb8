use proptest::prelude::*;
use proxy_config::matcher::{StringMatch, StringMatcher};
use proxy_config::route::{Action, Direct, HeaderOps};

use super::*;

fn route(path: PathMatch, headers: Vec<HeaderMatch>, query: Vec<QueryMatch>, name: &str) -> Route {
    Route {
        name: name.into(),
        matcher: RouteMatch {
            path,
            case_sensitive: true,
            headers,
            query,
        },
        action: Action::Direct(Direct {
            status: 200,
            body: Vec::new(),
        }),
        fault: None,
        cors: None,
        headers: HeaderOps::default(),
    }
}

fn vh(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        require_tls: false,
        attempt_count_header: false,
    }
}

fn any_route() -> Vec<Route> {
    vec![route(PathMatch::Prefix("/".into()), vec![], vec![], "all")]
}

fn request<'a>(
    host: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Request<'a> {
    Request {
        host,
        method: "GET",
        scheme: "http",
        path,
        query,
        headers,
    }
}

#[test]
fn domains_resolve_exact_then_longest_suffix_then_longest_prefix_then_any() {
    let router = Router::new(RouteConfig {
        name: "80".into(),
        virtual_hosts: vec![
            vh("any", &["*"], any_route()),
            vh(
                "exact",
                &["api.example.com", "api.example.com:80"],
                any_route(),
            ),
            vh("short-suffix", &["*.com"], any_route()),
            vh("long-suffix", &["*.example.com"], any_route()),
            vh("prefix", &["api.*"], any_route()),
        ],
    });
    let name = |host: &str| router.virtual_host(host).map(|v| v.name.clone());
    assert_eq!(name("api.example.com").as_deref(), Some("exact"));
    assert_eq!(
        name("API.Example.com").as_deref(),
        Some("exact"),
        "case-insensitive"
    );
    assert_eq!(name("api.example.com:80").as_deref(), Some("exact"));
    assert_eq!(name("www.example.com").as_deref(), Some("long-suffix"));
    assert_eq!(name("example.com").as_deref(), Some("short-suffix"));
    assert_eq!(name("api.internal").as_deref(), Some("prefix"));
    assert_eq!(name("other").as_deref(), Some("any"));
    assert_eq!(
        name(".example.com").as_deref(),
        Some("short-suffix"),
        "a wildcard matches at least one character"
    );
}

#[test]
fn the_first_route_whose_conditions_all_hold_wins() {
    let jason = HeaderMatch {
        name: "end-user".into(),
        value: ValueMatch::String(StringMatcher {
            pattern: StringMatch::Exact("jason".into()),
            ignore_case: false,
        }),
        invert: false,
    };
    let no_debug = HeaderMatch {
        name: "x-debug".into(),
        value: ValueMatch::Present,
        invert: true,
    };
    let version = QueryMatch {
        name: "v".into(),
        value: ValueMatch::String(StringMatcher {
            pattern: StringMatch::Exact("2 beta".into()),
            ignore_case: false,
        }),
    };
    let router = Router::new(RouteConfig {
        name: "80".into(),
        virtual_hosts: vec![vh(
            "reviews",
            &["reviews"],
            vec![
                route(
                    PathMatch::Prefix("/r".into()),
                    vec![jason, no_debug],
                    vec![],
                    "jason",
                ),
                route(
                    PathMatch::Exact("/q".into()),
                    vec![],
                    vec![version],
                    "query",
                ),
                route(PathMatch::Prefix("/".into()), vec![], vec![], "default"),
            ],
        )],
    });
    let name = |path: &str, query: Option<&str>, headers: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, http::HeaderValue::from_static(v));
        }
        router
            .route(&request("reviews", path, query, &map))
            .map(|(_, r)| r.name.clone())
    };
    assert_eq!(
        name("/reviews", None, &[("end-user", "jason")]).as_deref(),
        Some("jason")
    );
    assert_eq!(
        name("/reviews", None, &[("end-user", "jason"), ("x-debug", "1")]).as_deref(),
        Some("default")
    );
    assert_eq!(
        name("/reviews", None, &[("end-user", "json")]).as_deref(),
        Some("default")
    );
    assert_eq!(
        name("/q", Some("a=1&v=2+beta"), &[]).as_deref(),
        Some("query"),
        "query values are decoded"
    );
    assert_eq!(name("/q", Some("v=2"), &[]).as_deref(), Some("default"));
    assert_eq!(
        router
            .route(&request("ratings", "/", None, &HeaderMap::new()))
            .map(|(_, r)| r.name.clone()),
        None
    );
}

proptest! {
    /// Weighted picks follow the weights exactly over the whole range of random numbers.
    #[test]
    fn weighted_picks_follow_the_weights(weights in proptest::collection::vec(0u32..100, 1..6), r in any::<u64>()) {
        let clusters: Vec<ClusterWeight> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| ClusterWeight { name: i.to_string(), weight: *w, headers: HeaderOps::default() })
            .collect();
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        match pick_weighted(&clusters, r) {
            None => prop_assert_eq!(total, 0),
            Some(c) => {
                prop_assert!(c.weight > 0, "a zero-weight cluster is never picked");
                // Counting each cluster's share of 0..total gives exactly its weight.
                let index: usize = c.name.parse().map_err(|_| TestCaseError::fail("name"))?;
                let before: u64 = weights[..index].iter().map(|w| u64::from(*w)).sum();
                let point = r % total;
                prop_assert!(before <= point && point < before + u64::from(weights[index]));
            }
        }
    }

    /// Prefix matching ignoring case agrees with lower-casing both sides.
    #[test]
    fn case_insensitive_prefix_agrees_with_lowercasing(prefix in "[a-zA-Z/]{0,6}", path in "[a-zA-Z/]{0,10}") {
        let m = RouteMatch { path: PathMatch::Prefix(prefix.clone()), case_sensitive: false, headers: vec![], query: vec![] };
        let headers = HeaderMap::new();
        let got = matches(&m, &request("h", &path, None, &headers));
        prop_assert_eq!(got, path.to_lowercase().starts_with(&prefix.to_lowercase()));
    }
}
