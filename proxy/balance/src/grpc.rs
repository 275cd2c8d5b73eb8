//! One unary gRPC call over a cluster: how the proxy talks to the hub. The call is an ordinary upstream
//! request of the cluster (balanced over its hosts, counted in its stats and circuit breakers, its outcome
//! fed to outlier detection), so several hubs behind one cluster are balanced and ejected like any upstream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version, header};
use http_body_util::BodyExt;
use proxy_config::cluster::Protocol;

use crate::{Body, Cluster, Error, Outcome};

/// The largest response message accepted (the hub's answers are a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Why a call has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    /// The cluster does not speak HTTP/2.
    #[error("the cluster does not speak HTTP/2, which gRPC needs")]
    NotHttp2,
    /// The request could not be sent (no host, circuit breaker, connection failure, reset).
    #[error("{0}")]
    Send(Error),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with a non-OK gRPC status.
    #[error("gRPC status {code}: {message}")]
    Status {
        /// The gRPC status code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// The answer is not a well-formed gRPC response.
    #[error("malformed gRPC response: {0}")]
    Malformed(String),
}

impl GrpcError {
    /// Whether the server, reached, refused the call for want of capacity or availability (UNAVAILABLE,
    /// RESOURCE_EXHAUSTED): like a transport failure, the hub did not decide.
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, GrpcError::Status { code, .. } if *code != 8 && *code != 14)
    }
}

/// Calls `path` (`/package.Service/Method`) with the encoded `message` on one of `cluster`'s hosts, waiting
/// at most `timeout`, and returns the encoded answer. `traceparent`: the W3C trace context to send, making
/// the server's span a child of the caller's.
pub async fn unary(
    cluster: &Arc<Cluster>,
    authority: &str,
    path: &str,
    message: Bytes,
    timeout: Duration,
    traceparent: Option<&str>,
) -> Result<Bytes, GrpcError> {
    if cluster.config().protocol != Protocol::Http2 {
        return Err(GrpcError::NotHttp2);
    }
    let host = cluster
        .choose(None, None, 1, |_| false)
        .map_err(GrpcError::Send)?;
    let mut request = request(authority, path, message, timeout)?;
    if let Some(v) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
        request
            .headers_mut()
            .insert(sextant_tracectx::TRACEPARENT, v);
    }
    let call = async {
        let response = cluster
            .send(&host, request)
            .await
            .map_err(GrpcError::Send)?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|e| GrpcError::Send(Error::Reset(e.to_string())))?;
        let trailers = collected.trailers().cloned();
        Ok::<_, GrpcError>((status, parts.headers, trailers, collected.to_bytes()))
    };
    let answered = match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => {
            cluster.record(&host, Outcome::LocalFailure);
            cluster.stats().rq_timeout.inc();
            return Err(GrpcError::Timeout(timeout));
        }
    };
    let (status, headers, trailers, body) = match answered {
        Ok(a) => a,
        Err(e) => {
            cluster.record(&host, Outcome::LocalFailure);
            return Err(e);
        }
    };
    cluster.stats().response(status);
    if status != 200 {
        cluster.record(&host, Outcome::Status(status));
        return Err(GrpcError::Malformed(format!("HTTP status {status}")));
    }
    // A server that cannot serve (UNAVAILABLE) counts against the host as a 503 would.
    let grpc = grpc_status(trailers.as_ref().unwrap_or(&headers));
    let as_http = match grpc {
        Some((14, _)) => 503,
        _ => 200,
    };
    cluster.record(&host, Outcome::Status(as_http));
    match grpc {
        Some((0, _)) => decode(body),
        Some((code, message)) => Err(GrpcError::Status { code, message }),
        None => Err(GrpcError::Malformed("no grpc-status".into())),
    }
}

fn request(
    authority: &str,
    path: &str,
    message: Bytes,
    timeout: Duration,
) -> Result<Request<Body>, GrpcError> {
    let uri = Uri::try_from(format!("http://{authority}{path}"))
        .map_err(|e| GrpcError::Malformed(format!("bad call target {authority}{path}: {e}")))?;
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.extend_from_slice(&message);
    let mut request = Request::new(Body::Full(VecDeque::from([frame.freeze()]), None));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    let h = request.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    let millis = timeout.as_millis().clamp(1, 99_999_999);
    if let Ok(v) = HeaderValue::from_str(&format!("{millis}m")) {
        h.insert("grpc-timeout", v);
    }
    Ok(request)
}

/// `grpc-status` and `grpc-message` (percent-decoding left out: the message is for logs).
fn grpc_status(headers: &HeaderMap) -> Option<(i32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// The one message of a unary response's body.
fn decode(mut body: Bytes) -> Result<Bytes, GrpcError> {
    if body.len() < 5 {
        return Err(GrpcError::Malformed(format!(
            "a body of {} bytes holds no message",
            body.len()
        )));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 {
        return Err(GrpcError::Malformed("a compressed message".into()));
    }
    if len > MAX_RESPONSE_BYTES || len > body.len() {
        return Err(GrpcError::Malformed(format!(
            "a message of {len} bytes in a body of {}",
            body.len()
        )));
    }
    Ok(body.split_to(len))
}

/// The `:authority` of calls to a cluster: `HOST:PORT` of an Istio-named cluster (`outbound|PORT||HOST`),
/// else the cluster's name.
pub fn authority_of(cluster: &str) -> String {
    match cluster.split('|').collect::<Vec<_>>()[..] {
        ["outbound", port, _, host] if !host.is_empty() => format!("{host}:{port}"),
        _ => cluster.to_string(),
    }
}
