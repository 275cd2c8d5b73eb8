//! Responses the proxy makes itself: redirects, direct responses, CORS preflights and errors.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use proxy_config::route::{Cors, Redirect, RedirectPath};

use crate::body::ProxyBody;

/// A response with `status` and a plain-text `body`.
pub(crate) fn response(status: u16, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let body = body.into();
    let mut r = Response::new(ProxyBody::local(body.clone()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

/// The redirect `r` gives for a request to `scheme://host{path}?{query}`; `matched_prefix` is the route's
/// path prefix (for prefix rewrites).
pub(crate) fn redirect(
    r: &Redirect,
    scheme: &str,
    host: &str,
    path: &str,
    query: Option<&str>,
    matched_prefix: Option<&str>,
) -> Response<ProxyBody> {
    let new_scheme = r.scheme.as_deref().unwrap_or(scheme);
    let (bare_host, port) = split_port(host);
    let host = r.host.as_deref().unwrap_or(bare_host);
    let port = match (r.port, port) {
        (Some(p), _) => Some(p.to_string()),
        // A changed scheme drops the old scheme's port.
        (None, Some(_)) if new_scheme != scheme => None,
        (None, p) => p.map(str::to_string),
    };
    let new_path = match &r.path {
        Some(RedirectPath::Path(p)) => p.clone(),
        Some(RedirectPath::Prefix(p)) => match matched_prefix.and_then(|m| path.strip_prefix(m)) {
            Some(rest) => format!("{p}{rest}"),
            None => path.to_string(),
        },
        None => path.to_string(),
    };
    let mut location = format!("{new_scheme}://{host}");
    if let Some(port) = port {
        location.push(':');
        location.push_str(&port);
    }
    location.push_str(&new_path);
    if let Some(q) = query.filter(|_| !r.strip_query) {
        location.push('?');
        location.push_str(q);
    }
    let mut response = response(r.status, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `host` without its `:port`, and the port (IPv6 literals in brackets kept whole).
pub(crate) fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rfind(':') {
        Some(i)
            if !host[i..].contains(']')
                && host[i + 1..].bytes().all(|b| b.is_ascii_digit())
                && i + 1 < host.len() =>
        {
            (&host[..i], Some(&host[i + 1..]))
        }
        _ => (host, None),
    }
}

/// Whether `origin` is allowed by `cors`.
pub(crate) fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    cors.origins.iter().any(|m| m.matches(origin))
}

/// The answer to a CORS preflight from an allowed `origin`.
pub(crate) fn preflight(cors: &Cors, origin: &HeaderValue) -> Response<ProxyBody> {
    let mut r = response(200, Bytes::new());
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_METHODS, &cors.methods),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, &cors.headers),
        (header::ACCESS_CONTROL_MAX_AGE, &cors.max_age),
    ] {
        if let Ok(v) = HeaderValue::from_str(value)
            .map_err(drop)
            .and_then(|v| if value.is_empty() { Err(()) } else { Ok(v) })
        {
            h.insert(name, v);
        }
    }
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// Adds the CORS headers of a simple (non-preflight) request's response.
pub(crate) fn decorate(cors: &Cors, origin: &HeaderValue, headers: &mut http::HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose)
    {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_split_only_when_numeric_and_outside_brackets() {
        assert_eq!(split_port("a.b:80"), ("a.b", Some("80")));
        assert_eq!(split_port("a.b"), ("a.b", None));
        assert_eq!(split_port("[::1]:8080"), ("[::1]", Some("8080")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
        assert_eq!(split_port("a.b:"), ("a.b:", None));
    }

    #[test]
    fn redirects_keep_what_they_do_not_change() {
        let r = Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: None,
            status: 301,
            strip_query: false,
        };
        let resp = redirect(&r, "http", "shop.example:80", "/cart", Some("id=1"), None);
        assert_eq!(resp.status(), 301);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://shop.example/cart?id=1"
        );
        let r = Redirect {
            scheme: None,
            host: Some("new.example".into()),
            port: Some(8443),
            path: Some(RedirectPath::Prefix("/v2".into())),
            status: 308,
            strip_query: true,
        };
        let resp = redirect(
            &r,
            "http",
            "old.example",
            "/v1/items",
            Some("q=1"),
            Some("/v1"),
        );
        assert_eq!(
            resp.headers()[header::LOCATION],
            "http://new.example:8443/v2/items"
        );
    }
}
