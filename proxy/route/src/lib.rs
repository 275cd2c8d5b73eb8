//! Request routing as Envoy does it: the virtual host whose domain best matches the host (exact, then the
//! longest `*` suffix wildcard, then the longest `*` prefix wildcard, then `*`), then the first of its routes
//! whose path, header and query conditions all hold, then for a weighted route one cluster by weight.

pub mod rbac;

use std::borrow::Cow;
use std::collections::HashMap;

use http::HeaderMap;
use proxy_config::route::{
    ClusterWeight, HeaderMatch, PathMatch, QueryMatch, Route, RouteConfig, RouteMatch, ValueMatch,
    VirtualHost,
};

/// The parts of a request routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The host (`:authority` or `Host`), as sent.
    pub host: &'a str,
    /// The method.
    pub method: &'a str,
    /// The scheme (`http` or `https`).
    pub scheme: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// A route configuration indexed for lookups.
#[derive(Debug)]
pub struct Router {
    config: RouteConfig,
    exact: HashMap<String, usize>,
    /// `*.suffix` domains as (suffix, virtual host), longest first.
    suffixes: Vec<(String, usize)>,
    /// `prefix.*` domains as (prefix, virtual host), longest first.
    prefixes: Vec<(String, usize)>,
    any: Option<usize>,
}

impl Router {
    /// Indexes `config`. A domain listed twice resolves to its first virtual host.
    pub fn new(config: RouteConfig) -> Router {
        let mut exact = HashMap::new();
        let (mut suffixes, mut prefixes, mut any) = (Vec::new(), Vec::new(), None);
        for (i, vh) in config.virtual_hosts.iter().enumerate() {
            for domain in &vh.domains {
                if domain == "*" {
                    any.get_or_insert(i);
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    suffixes.push((suffix.to_string(), i));
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    prefixes.push((prefix.to_string(), i));
                } else {
                    exact.entry(domain.clone()).or_insert(i);
                }
            }
        }
        // Longest first; among equals, the earlier virtual host (the sort is stable).
        suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Router {
            config,
            exact,
            suffixes,
            prefixes,
            any,
        }
    }

    /// The configuration routed by.
    pub fn config(&self) -> &RouteConfig {
        &self.config
    }

    /// The virtual host serving `host` (compared case-insensitively; a wildcard matches at least one character).
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let index = self
            .exact
            .get(host)
            .copied()
            .or_else(|| {
                self.suffixes
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)?;
        self.config.virtual_hosts.get(index)
    }

    /// The virtual host and route for `request`, if any route takes it.
    pub fn route<'r>(&'r self, request: &Request<'_>) -> Option<(&'r VirtualHost, &'r Route)> {
        let vh = self.virtual_host(request.host)?;
        let route = vh.routes.iter().find(|r| matches(&r.matcher, request))?;
        Some((vh, route))
    }
}

/// Whether `m` takes `request`.
pub fn matches(m: &RouteMatch, request: &Request<'_>) -> bool {
    let path_ok = match &m.path {
        PathMatch::Prefix(p) if m.case_sensitive => request.path.starts_with(p.as_str()),
        PathMatch::Prefix(p) => request
            .path
            .get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p)),
        PathMatch::Exact(p) if m.case_sensitive => request.path == p,
        PathMatch::Exact(p) => request.path.eq_ignore_ascii_case(p),
        PathMatch::Regex(r) => r.is_match(request.path),
    };
    path_ok
        && m.headers.iter().all(|h| header_matches(h, request))
        && m.query.iter().all(|q| query_matches(q, request.query))
}

/// The value of header `name` as Envoy matches it: several values as one, joined by commas.
/// A header's value as route matching and RBAC read it: several values joined by commas, as Envoy joins them.
pub fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<Cow<'a, str>> {
    let mut values = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
    match (values.next(), values.next()) {
        (None, _) => None,
        (Some(one), None) => Some(Cow::Borrowed(one)),
        (Some(first), Some(second)) => {
            let mut all = vec![first, second];
            all.extend(values);
            Some(Cow::Owned(all.join(",")))
        }
    }
}

fn header_matches(h: &HeaderMatch, request: &Request<'_>) -> bool {
    let value: Option<Cow<'_, str>> = match h.name.as_str() {
        ":authority" | "host" => Some(Cow::Borrowed(request.host)),
        ":method" => Some(Cow::Borrowed(request.method)),
        ":scheme" => Some(Cow::Borrowed(request.scheme)),
        ":path" => Some(Cow::Borrowed(request.path)),
        name => header_value(request.headers, name),
    };
    let value = value.as_deref();
    let found = match (&h.value, value) {
        (_, None) => false,
        (ValueMatch::Present, Some(_)) => true,
        (ValueMatch::String(s), Some(v)) => s.matches(v),
    };
    // An inverted match of an absent header holds, as in Envoy.
    found != h.invert
}

fn query_matches(q: &QueryMatch, query: Option<&str>) -> bool {
    let value = query.and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| *k == q.name.as_str())
            .map(|(_, v)| v)
    });
    match (&q.value, value) {
        (_, None) => false,
        (ValueMatch::Present, Some(_)) => true,
        (ValueMatch::String(s), Some(v)) => s.matches(&v),
    }
}

/// The cluster a weighted route picks for a random number `r` (uniform over `u64`): each cluster with
/// probability weight ÷ total.
pub fn pick_weighted(clusters: &[ClusterWeight], r: u64) -> Option<&ClusterWeight> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = r % total;
    clusters.iter().find(|c| {
        let w = u64::from(c.weight);
        if point < w {
            true
        } else {
            point -= w;
            false
        }
    })
}

#[cfg(test)]
mod tests;
