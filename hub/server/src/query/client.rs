//! Prometheus's HTTP API as the query API reads it: a base URL checked without any I/O, instant
//! (`/api/v1/query`) and range (`/api/v1/query_range`) queries over plain HTTP, each under a timeout with
//! its answer capped in bytes and in series, and Prometheus's JSON decoded into [`Series`].

use std::collections::HashMap;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;

/// How long one query may take, connecting and reading the answer included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read from Prometheus; a larger one is an error, not a partial read.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;
/// The most series taken from one answer; the rest are left out and the answer says `truncated`.
pub const MAX_SERIES: usize = 100_000;

/// A Prometheus server's base URL, `http://HOST[:PORT][/PATH]` (a path for a Prometheus served under a
/// prefix, `--web.route-prefix`), checked by [`PrometheusUrl::parse`] before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusUrl {
    /// `host[:port]`.
    authority: String,
    /// The path prefix without a trailing `/` (empty for none).
    prefix: String,
}

/// Why a `--prometheus-url` is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL with a scheme and a host.
    #[error("not a URL: want http://HOST:PORT, like http://127.0.0.1:9090")]
    NotUrl,
    /// `https://`: the client speaks plain HTTP only.
    #[error(
        "https:// is not supported: give Prometheus's plain http:// address (TLS can end in front of it)"
    )]
    Https,
    /// Another scheme than `http`.
    #[error("scheme {0:?}: want http://HOST:PORT")]
    Scheme(String),
    /// User name or password in the URL (not sent: basic authentication is not supported).
    #[error("credentials in the URL are not supported")]
    Credentials,
    /// A query string or fragment (the API's own parameters are added to the path).
    #[error("a query string or fragment has no place in it: want http://HOST:PORT[/PATH]")]
    Query,
}

impl PrometheusUrl {
    /// Checks `text` (pure): an `http://` URL with a host, an optional path prefix, nothing else.
    pub fn parse(text: &str) -> Result<PrometheusUrl, UrlError> {
        let uri: http::Uri = text.trim().parse().map_err(|_| UrlError::NotUrl)?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(UrlError::NotUrl);
        };
        match scheme {
            "http" => {}
            "https" => return Err(UrlError::Https),
            other => return Err(UrlError::Scheme(other.to_string())),
        }
        if authority.as_str().contains('@') {
            return Err(UrlError::Credentials);
        }
        if authority.host().is_empty() {
            return Err(UrlError::NotUrl);
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(UrlError::Query);
        }
        Ok(PrometheusUrl {
            authority: authority.as_str().to_string(),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The URI of API `path` (`/api/v1/query`) with `params` encoded.
    fn endpoint(&self, path: &str, params: &[(&str, &str)]) -> Option<http::Uri> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        format!("http://{}{}{path}?{query}", self.authority, self.prefix)
            .parse()
            .ok()
    }
}

impl std::fmt::Display for PrometheusUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.prefix)
    }
}

impl std::str::FromStr for PrometheusUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrometheusUrl::parse(s)
    }
}

/// Why one query failed.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    /// No whole answer within [`TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or sending failed (Prometheus down, a wrong address).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The exchange failed after connecting.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer was larger than [`MAX_ANSWER_BYTES`] or could not be read whole.
    #[error("reading the answer: {0}")]
    Read(String),
    /// Prometheus refused the query (`status: error`): its error type and message.
    #[error("{kind}: {message}")]
    Refused {
        /// `errorType` (`bad_data`, `timeout`, `execution`…), or the HTTP status.
        kind: String,
        /// `error`.
        message: String,
    },
    /// The answer is not Prometheus's API JSON (a proxy's page, another server on that port).
    #[error("HTTP {status}, not Prometheus's API answer: {detail}")]
    NotApi {
        /// The HTTP status.
        status: u16,
        /// What did not decode, and the answer's start.
        detail: String,
    },
}

/// One failed query: which of the answer's queries, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct QueryFailed {
    /// What the query asks, in words (`requests per edge`).
    pub what: &'static str,
    /// Why it failed.
    pub reason: Reason,
}

/// One series of an answer: its labels and its samples (one for an instant query).
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// The labels (`__name__` is absent from aggregations).
    pub labels: HashMap<String, String>,
    /// `(time, value)` samples; a value Prometheus wrote as `NaN` is left out.
    pub samples: Vec<(f64, f64)>,
}

impl Series {
    /// Label `name`, `unknown` when absent or empty (as the Telemetry's dimensions of absent attributes).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or("unknown")
    }

    /// The value of an instant query's sample (0 without one).
    pub fn value(&self) -> f64 {
        self.samples.first().map_or(0.0, |s| s.1)
    }
}

/// An answer: its series, at most [`MAX_SERIES`].
#[derive(Debug, Default)]
pub struct Answer {
    /// The series.
    pub series: Vec<Series>,
    /// Whether series past [`MAX_SERIES`] were left out.
    pub truncated: bool,
}

#[derive(serde::Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Decodes Prometheus's answer `body` (HTTP `status`) to a vector or matrix query.
pub fn decode(status: u16, body: &[u8]) -> Result<Answer, Reason> {
    let not_api = |detail: String| Reason::NotApi {
        status,
        detail: format!(
            "{detail}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    };
    let answer: ApiAnswer = serde_json::from_slice(body).map_err(|e| not_api(e.to_string()))?;
    if answer.status != "success" {
        return Err(Reason::Refused {
            kind: answer
                .error_type
                .unwrap_or_else(|| format!("HTTP {status}")),
            message: answer.error.unwrap_or_default(),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| not_api("no data in a success".to_string()))?;
    if data.result_type != "vector" && data.result_type != "matrix" {
        return Err(not_api(format!(
            "a {} where a vector or matrix was asked for",
            data.result_type
        )));
    }
    let all: Vec<ApiSeries> =
        serde_json::from_value(data.result).map_err(|e| not_api(e.to_string()))?;
    let truncated = all.len() > MAX_SERIES;
    let series = all
        .into_iter()
        .take(MAX_SERIES)
        .map(|s| Series {
            labels: s.metric,
            samples: s
                .value
                .into_iter()
                .chain(s.values)
                .filter_map(|(t, v)| Some((t, v.parse::<f64>().ok().filter(|v| !v.is_nan())?)))
                .collect(),
        })
        .collect();
    Ok(Answer { series, truncated })
}

/// A client of one Prometheus (connections pooled).
pub struct Client {
    url: PrometheusUrl,
    http: hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>,
}

impl Client {
    /// A client of `url`; connects only when asked something.
    pub fn new(url: PrometheusUrl) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(TIMEOUT));
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
        Client { url, http }
    }

    /// Its URL.
    pub fn url(&self) -> &PrometheusUrl {
        &self.url
    }

    /// Instant query `promql` evaluated at `time` (seconds since the epoch).
    pub async fn instant(
        &self,
        what: &'static str,
        promql: &str,
        time: f64,
    ) -> Result<Answer, QueryFailed> {
        let time = format!("{time:.3}");
        self.get(what, "/api/v1/query", &[("query", promql), ("time", &time)])
            .await
    }

    /// Range query `promql` from `start` to `end` every `step` seconds.
    pub async fn range(
        &self,
        what: &'static str,
        promql: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Answer, QueryFailed> {
        let (start, end, step) = (
            format!("{start:.3}"),
            format!("{end:.3}"),
            format!("{step:.3}"),
        );
        self.get(
            what,
            "/api/v1/query_range",
            &[
                ("query", promql),
                ("start", &start),
                ("end", &end),
                ("step", &step),
            ],
        )
        .await
    }

    async fn get(
        &self,
        what: &'static str,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Answer, QueryFailed> {
        let failed = |reason| QueryFailed { what, reason };
        let uri = self.url.endpoint(path, params).ok_or_else(|| {
            failed(Reason::Http(format!(
                "cannot make a URI of {}{path}",
                self.url
            )))
        })?;
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| failed(Reason::Http(e.to_string())))?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                let detail = chain(&e);
                if e.is_connect() {
                    Reason::Connect(detail)
                } else {
                    Reason::Http(detail)
                }
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| Reason::Read(format!("{e} (limit {MAX_ANSWER_BYTES} bytes)")))?
                .to_bytes();
            decode(status, &body)
        };
        match tokio::time::timeout(TIMEOUT, exchange).await {
            Ok(answer) => answer.map_err(failed),
            Err(_) => Err(failed(Reason::Timeout(TIMEOUT))),
        }
    }
}

/// An error and its causes, `: `-separated (hyper's own message alone says only "client error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
