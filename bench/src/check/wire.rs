//! What the load client puts on the wire: every request encoded once before a run (a gRPC message with its
//! 5-byte frame prefix, or OPA's JSON input), POSTed on a plain hyper HTTP/2 connection (h2c, as gRPC and
//! `opa run --h2c`), and the answer read back to one [`Outcome`].
//!
//! tonic's client would clone and encode each message per call and hand it through a buffer task to the
//! connection; the client then costs as much CPU per call as the empty server does, and with one core each
//! the empty server's maximum is the client's. Sending pre-encoded bodies on hyper directly is the same
//! HTTP/2 stack (hyper and h2, as tonic) with none of that, so the server side is what bounds the rate.

use std::net::SocketAddr;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper::http::{HeaderMap, HeaderValue, Method, Request, Uri, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use sextant_proto::envoy::service::auth::v3 as authz;
use sextant_proto::envoy::service::ratelimit::v3 as rls;
use sextant_proto::mixer;

/// google.rpc code PERMISSION_DENIED.
pub const PERMISSION_DENIED: i32 = 7;
/// google.rpc code RESOURCE_EXHAUSTED.
pub const RESOURCE_EXHAUSTED: i32 = 8;

/// What one call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A decision with status OK (the empty server's empty response counts as OK).
    Ok,
    /// PERMISSION_DENIED (OPA: `allowed` false).
    Denied,
    /// A decision of RESOURCE_EXHAUSTED, or OVER_LIMIT from the rate-limit service (a rate limit refused;
    /// never with the benchmark's default limits).
    Exhausted,
    /// Any other decision code.
    Other,
    /// The call itself was refused with gRPC status RESOURCE_EXHAUSTED: the hub shed it (`--max-in-flight`).
    Shed,
    /// The call itself failed (another gRPC status, an HTTP error, a transport error).
    Error,
}

/// Which API a body is for, and so how its answer is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `sextant.mixer.v1.Mixer/Check`.
    Native,
    /// `envoy.service.auth.v3.Authorization/Check`.
    Authz,
    /// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
    Rls,
    /// OPA's REST decision API at [`crate::rego::DECISION_PATH`].
    Opa,
}

impl Api {
    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Api::Native => "/sextant.mixer.v1.Mixer/Check",
            Api::Authz => "/envoy.service.auth.v3.Authorization/Check",
            Api::Rls => "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
            Api::Opa => crate::rego::DECISION_PATH,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Api::Opa => "application/json",
            _ => "application/grpc",
        }
    }
}

/// A gRPC message framed for the wire (uncompressed, length-prefixed), encoded once.
pub fn grpc_frame<M: prost::Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    // A request over 4 GiB cannot be built here: the pools hold requests of a few hundred bytes.
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    m.encode_raw(&mut buf);
    buf.into()
}

/// One HTTP/2 connection (cloning shares it) and what to send on it.
#[derive(Clone)]
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    uri: Uri,
    api: Api,
    content_type: HeaderValue,
}

/// An answer's parts: its HTTP status, gRPC status (from the headers of a trailers-only answer, or the
/// trailers) and body without the gRPC frame prefix.
pub struct Answer {
    /// HTTP status.
    pub http: u16,
    /// gRPC status, when the server sent one.
    pub grpc: Option<i32>,
    /// The message (gRPC) or document (OPA).
    pub body: Bytes,
}

/// The first transport error of the run, for the notes.
static FIRST_ERROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The first call that failed without an answer, if one did.
pub fn first_error() -> Option<&'static str> {
    FIRST_ERROR.get().map(String::as_str)
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

impl Conn {
    /// Opens a connection to `addr` for `api` (TCP_NODELAY, as the hub's and the empty server's listeners).
    pub async fn open(addr: SocketAddr, api: Api) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tcp))
            .await
            .with_context(|| format!("HTTP/2 handshake with {addr}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let uri = format!("http://{addr}{}", api.path())
            .parse()
            .context("request URI")?;
        Ok(Conn {
            send,
            uri,
            api,
            content_type: HeaderValue::from_static(api.content_type()),
        })
    }

    /// POSTs `body` and reads the whole answer.
    pub async fn exchange(&mut self, body: Bytes) -> anyhow::Result<Answer> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        if self.api != Api::Opa {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let resp = self.send.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await?;
        let grpc =
            grpc_status(&parts.headers).or_else(|| collected.trailers().and_then(grpc_status));
        let mut body = collected.to_bytes();
        if self.api != Api::Opa && body.len() >= 5 {
            body = body.slice(5..);
        }
        Ok(Answer {
            http: parts.status.as_u16(),
            grpc,
            body,
        })
    }

    /// POSTs `body` and classifies the answer.
    pub async fn call(&mut self, body: Bytes) -> Outcome {
        match self.exchange(body).await {
            Ok(a) => classify(self.api, &a),
            Err(e) => {
                let _ = FIRST_ERROR.set(format!("{e:#}"));
                Outcome::Error
            }
        }
    }
}

fn decision(code: i32) -> Outcome {
    match code {
        0 => Outcome::Ok,
        PERMISSION_DENIED => Outcome::Denied,
        RESOURCE_EXHAUSTED => Outcome::Exhausted,
        _ => Outcome::Other,
    }
}

/// The outcome of an answer to `api`.
pub fn classify(api: Api, a: &Answer) -> Outcome {
    if a.http != 200 {
        let _ = FIRST_ERROR.set(format!(
            "HTTP {}: {}",
            a.http,
            String::from_utf8_lossy(&a.body)
        ));
        return Outcome::Error;
    }
    if api == Api::Opa {
        return opa_allowed(&a.body).map_or(Outcome::Other, |allowed| {
            if allowed {
                Outcome::Ok
            } else {
                Outcome::Denied
            }
        });
    }
    match a.grpc {
        Some(0) => {}
        Some(RESOURCE_EXHAUSTED) => return Outcome::Shed,
        other => {
            let _ = FIRST_ERROR.set(format!(
                "HTTP {}, grpc-status {other:?}: {}",
                a.http,
                String::from_utf8_lossy(&a.body)
            ));
            return Outcome::Error;
        }
    }
    let body = a.body.clone();
    match api {
        Api::Native => mixer::CheckResponse::decode(body).map_or(Outcome::Error, |r| {
            decision(r.precondition.and_then(|p| p.status).map_or(0, |s| s.code))
        }),
        Api::Authz => authz::CheckResponse::decode(body)
            .map_or(Outcome::Error, |r| decision(r.status.map_or(0, |s| s.code))),
        Api::Rls => rls::RateLimitResponse::decode(body).map_or(Outcome::Error, |r| {
            match rls::rate_limit_response::Code::try_from(r.overall_code) {
                Ok(rls::rate_limit_response::Code::Ok) => Outcome::Ok,
                Ok(rls::rate_limit_response::Code::OverLimit) => Outcome::Exhausted,
                _ => Outcome::Other,
            }
        }),
        Api::Opa => Outcome::Other,
    }
}

/// `allowed` of an OPA decision document, found without parsing it (OPA writes compact JSON); `None` when
/// the document has none (no decision: the query named no rule).
pub fn opa_allowed(body: &[u8]) -> Option<bool> {
    let find = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if find(br#""allowed":true"#) {
        Some(true)
    } else if find(br#""allowed":false"#) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opa_documents_are_read_without_parsing() {
        assert_eq!(
            opa_allowed(br#"{"result":{"audit":[],"decision":{"allowed":true,"rule":"x"}}}"#),
            Some(true)
        );
        assert_eq!(
            opa_allowed(br#"{"result":{"decision":{"allowed":false,"http_status":403}}}"#),
            Some(false)
        );
        assert_eq!(opa_allowed(br#"{}"#), None);
    }

    #[test]
    fn a_frame_is_the_message_behind_its_length() {
        let m = mixer::CheckRequest {
            deduplication_id: "d-7".to_string(),
            ..Default::default()
        };
        let f = grpc_frame(&m);
        assert_eq!(f[0], 0);
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 5
        );
        assert_eq!(
            mixer::CheckRequest::decode(f.slice(5..)).expect("the framed message"),
            m
        );
    }
}
