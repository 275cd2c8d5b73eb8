//! `ISTIO_KUBE_APP_PROBERS` → [`Probers`]: a pure step, every key and field checked before the proxy starts, so
//! a probe the proxy cannot run is refused with the key and what is wrong instead of failing at each kubelet
//! probe.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;

/// The most probes a proxy runs: three per container (liveness, readiness, startup), for 21 containers.
pub const MAX_PROBERS: usize = 64;

/// Why `ISTIO_KUBE_APP_PROBERS` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The text is not a JSON object.
    #[error("not a JSON object of probes: {0}")]
    Json(String),
    /// More probes than [`MAX_PROBERS`].
    #[error("{count} probes, more than the {max} the proxy runs")]
    TooMany {
        /// How many there are.
        count: usize,
        /// [`MAX_PROBERS`].
        max: usize,
    },
    /// A key not of the form `/app-health/CONTAINER/livez|readyz|startupz`.
    #[error("key {key:?}: {why}")]
    Key {
        /// The key.
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A probe with none or several of `httpGet`, `tcpSocket`, `grpc`.
    #[error("{key}: a probe needs exactly one of httpGet, tcpSocket, grpc; this one has {found}")]
    Action {
        /// The key.
        key: String,
        /// The ones it has (`none`, `httpGet and grpc`).
        found: String,
    },
    /// A field of a probe is missing, of the wrong type, unknown or out of range.
    #[error("{key}: {field}: {message}")]
    Field {
        /// The key.
        key: String,
        /// The field's path in the probe (`httpGet.port`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Which of a container's probes: the last segment of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeKind {
    /// `livez`: the liveness probe.
    Liveness,
    /// `readyz`: the readiness probe.
    Readiness,
    /// `startupz`: the startup probe.
    Startup,
}

impl ProbeKind {
    /// The kind a key's last segment names.
    pub fn from_segment(segment: &str) -> Option<ProbeKind> {
        match segment {
            "livez" => Some(ProbeKind::Liveness),
            "readyz" => Some(ProbeKind::Readiness),
            "startupz" => Some(ProbeKind::Startup),
            _ => None,
        }
    }

    /// The key's last segment for this kind.
    pub fn segment(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livez",
            ProbeKind::Readiness => "readyz",
            ProbeKind::Startup => "startupz",
        }
    }
}

/// The application's probes by container and kind, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probers {
    probes: BTreeMap<(String, ProbeKind), Prober>,
}

/// One original probe, as the proxy runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prober {
    /// What the probe does.
    pub action: Action,
    /// The probe fails when it has not succeeded within this (`timeoutSeconds`, default 1 s).
    pub timeout: Duration,
}

/// What a probe does (Kubernetes' probe handler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `httpGet`.
    Http(HttpGet),
    /// `tcpSocket`.
    Tcp(TcpSocket),
    /// `grpc`.
    Grpc(Grpc),
}

/// An HTTP GET, successful on a status in 200..=399 (as the kubelet's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// HTTP or HTTPS (whose certificate is not verified, as the kubelet does not).
    pub scheme: Scheme,
    /// The host to connect to; `None`: the pod's IP.
    pub host: Option<String>,
    /// The port.
    pub port: u16,
    /// The path and query (`/` when the probe names none).
    pub path: PathAndQuery,
    /// The probe's `httpHeaders`, in order; one named `Host` sets the request's authority.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS, any certificate accepted.
    Https,
}

/// A TCP connect, successful when the connection is established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// The host to connect to; `None`: the pod's IP.
    pub host: Option<String>,
    /// The port.
    pub port: u16,
}

/// A `grpc.health.v1.Health/Check` on the pod's IP, successful when the answer is `SERVING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grpc {
    /// The port.
    pub port: u16,
    /// The service asked about (empty: the server as a whole).
    pub service: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProbe {
    http_get: Option<RawHttpGet>,
    tcp_socket: Option<RawTcpSocket>,
    grpc: Option<RawGrpc>,
    timeout_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawHttpGet {
    path: Option<String>,
    port: serde_json::Value,
    host: Option<String>,
    scheme: Option<String>,
    http_headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcpSocket {
    port: serde_json::Value,
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpc {
    port: serde_json::Value,
    service: Option<String>,
}

impl Probers {
    /// Parses and validates the text of `ISTIO_KUBE_APP_PROBERS`; the first error found, naming its key.
    pub fn parse(text: &str) -> Result<Probers, ParseError> {
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
        if raw.len() > MAX_PROBERS {
            return Err(ParseError::TooMany {
                count: raw.len(),
                max: MAX_PROBERS,
            });
        }
        let mut probes = BTreeMap::new();
        for (key, value) in raw {
            let (container, kind) = parse_key(&key)?;
            let prober = parse_probe(&key, value)?;
            probes.insert((container, kind), prober);
        }
        Ok(Probers { probes })
    }

    /// The probe of `container` of `kind`, if the injector rewrote one.
    pub fn get(&self, container: &str, kind: ProbeKind) -> Option<&Prober> {
        // At most MAX_PROBERS entries: a scan spares building a key.
        self.probes
            .iter()
            .find(|((c, k), _)| c == container && *k == kind)
            .map(|(_, p)| p)
    }

    /// How many probes there are.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// The probes' paths on the status port (`/app-health/CONTAINER/KIND`), in order.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.probes
            .keys()
            .map(|(c, k)| format!("/app-health/{c}/{}", k.segment()))
    }
}

fn parse_key(key: &str) -> Result<(String, ProbeKind), ParseError> {
    let bad = |why: String| ParseError::Key {
        key: key.to_string(),
        why,
    };
    let shape = || bad("not /app-health/CONTAINER/livez, readyz or startupz".into());
    let rest = key.strip_prefix("/app-health/").ok_or_else(shape)?;
    let (container, segment) = rest.split_once('/').ok_or_else(shape)?;
    let kind = ProbeKind::from_segment(segment).ok_or_else(shape)?;
    if !is_dns_label(container) {
        return Err(bad(format!(
            "container name {container:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"
        )));
    }
    Ok((container.to_string(), kind))
}

/// RFC 1123 label, as Kubernetes requires of container names.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn parse_probe(key: &str, value: serde_json::Value) -> Result<Prober, ParseError> {
    let field = |field: &str, message: String| ParseError::Field {
        key: key.to_string(),
        field: field.to_string(),
        message,
    };
    let Some(object) = value.as_object() else {
        return Err(field("probe", format!("{value} is not a JSON object")));
    };
    if object.contains_key("exec") {
        return Err(field(
            "exec",
            "exec probes are not rewritten by the injector: the kubelet runs them in the container"
                .into(),
        ));
    }
    let raw: RawProbe = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "probe".into() } else { path };
        field(&path, e.into_inner().to_string())
    })?;
    let timeout = match raw.timeout_seconds {
        // The API server defaults 0 (unset) to 1.
        None | Some(0) => Duration::from_secs(1),
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        Some(s) => return Err(field("timeoutSeconds", format!("{s} is negative"))),
    };
    let found: Vec<&str> = [
        ("httpGet", raw.http_get.is_some()),
        ("tcpSocket", raw.tcp_socket.is_some()),
        ("grpc", raw.grpc.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let action = match (raw.http_get, raw.tcp_socket, raw.grpc) {
        (Some(h), None, None) => Action::Http(http_get(key, h)?),
        (None, Some(t), None) => Action::Tcp(TcpSocket {
            host: host(key, "tcpSocket.host", t.host)?,
            port: port(key, "tcpSocket.port", &t.port)?,
        }),
        (None, None, Some(g)) => Action::Grpc(Grpc {
            port: port(key, "grpc.port", &g.port)?,
            service: g.service.unwrap_or_default(),
        }),
        _ => {
            return Err(ParseError::Action {
                key: key.to_string(),
                found: if found.is_empty() {
                    "none".into()
                } else {
                    found.join(" and ")
                },
            });
        }
    };
    Ok(Prober { action, timeout })
}

fn http_get(key: &str, raw: RawHttpGet) -> Result<HttpGet, ParseError> {
    let field = |field: &str, message: String| ParseError::Field {
        key: key.to_string(),
        field: field.to_string(),
        message,
    };
    let scheme = match raw
        .scheme
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("" | "HTTP") => Scheme::Http,
        Some("HTTPS") => Scheme::Https,
        Some(_) => {
            return Err(field(
                "httpGet.scheme",
                format!(
                    "{:?} is neither HTTP nor HTTPS",
                    raw.scheme.unwrap_or_default()
                ),
            ));
        }
    };
    let path = raw.path.unwrap_or_default();
    let path = if path.starts_with('/') {
        path
    } else {
        // As the kubelet: a path without its leading slash gets one.
        format!("/{path}")
    };
    let path = PathAndQuery::from_str(&path)
        .map_err(|e| field("httpGet.path", format!("{path:?}: {e}")))?;
    let mut headers = Vec::new();
    for (i, h) in raw.http_headers.unwrap_or_default().into_iter().enumerate() {
        let name = HeaderName::from_str(&h.name).map_err(|_| {
            field(
                &format!("httpGet.httpHeaders[{i}].name"),
                format!("{:?} is not a header name", h.name),
            )
        })?;
        let value = HeaderValue::from_str(&h.value).map_err(|_| {
            field(
                &format!("httpGet.httpHeaders[{i}].value"),
                format!("{:?} is not a header value", h.value),
            )
        })?;
        headers.push((name, value));
    }
    Ok(HttpGet {
        scheme,
        host: host(key, "httpGet.host", raw.host)?,
        port: port(key, "httpGet.port", &raw.port)?,
        path,
        headers,
    })
}

fn port(key: &str, field: &str, value: &serde_json::Value) -> Result<u16, ParseError> {
    let message = match value {
        serde_json::Value::Number(n) => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(p) if p >= 1 => return Ok(p),
            _ => format!("{n} is not a port (1..65535)"),
        },
        serde_json::Value::String(s) => {
            format!("named port {s:?}: the injector must resolve it to the container's port number")
        }
        other => format!("{other} is not a port number"),
    };
    Err(ParseError::Field {
        key: key.to_string(),
        field: field.to_string(),
        message,
    })
}

/// A probe's host: an IP address or a DNS name; empty is none (the pod's IP).
fn host(key: &str, field: &str, host: Option<String>) -> Result<Option<String>, ParseError> {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Ok(None);
    };
    let name_ok = host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if host.parse::<IpAddr>().is_ok() || name_ok {
        Ok(Some(host))
    } else {
        Err(ParseError::Field {
            key: key.to_string(),
            field: field.to_string(),
            message: format!("{host:?} is neither an IP address nor a DNS name"),
        })
    }
}

#[cfg(test)]
mod tests;
