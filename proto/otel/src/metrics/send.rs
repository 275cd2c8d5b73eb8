//! One export request to the collector: OTLP/gRPC through the generated `MetricsService` client, or
//! OTLP/HTTP as a protobuf body POSTed to `/v1/metrics`. Each is built once on the export thread (inside
//! its runtime) and connects lazily, so a collector that is not up yet is an export failure, not a
//! startup error.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::transport::{Channel, Endpoint};

use crate::options::Protocol;

/// How much of a collector's HTTP answer is read (it is a small protobuf message, or an error text).
const ANSWER_LIMIT: usize = 64 * 1024;

/// The way to the collector.
#[derive(Debug)]
pub(super) enum Sender {
    /// OTLP/gRPC.
    Grpc(MetricsServiceClient<Channel>),
    /// OTLP/HTTP with a protobuf body.
    Http {
        /// The pooled client (boxed: it is most of the enum's size).
        client: Box<Client<HttpConnector, Full<Bytes>>>,
        /// `ENDPOINT/v1/metrics`.
        url: http::Uri,
    },
}

impl Sender {
    /// The sender for `url` (as [`crate::Options::signal_url`] gives it). Call inside a tokio runtime: the
    /// gRPC channel's worker is spawned on it.
    pub(super) fn new(protocol: Protocol, url: &str, timeout: Duration) -> Result<Self, String> {
        if url.starts_with("https://") {
            return Err(
                "https endpoints are not supported for metrics (this build has no TLS for OTLP); \
                 use http:// or a local collector"
                    .into(),
            );
        }
        match protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(url.to_string())
                    .map_err(|e| format!("bad endpoint: {e}"))?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                Ok(Self::Grpc(MetricsServiceClient::new(
                    endpoint.connect_lazy(),
                )))
            }
            Protocol::HttpProtobuf => {
                let url = url
                    .parse::<http::Uri>()
                    .map_err(|e| format!("bad URL {url:?}: {e}"))?;
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(timeout));
                connector.set_nodelay(true);
                let client = Client::builder(TokioExecutor::new()).build(connector);
                Ok(Self::Http {
                    client: Box::new(client),
                    url,
                })
            }
        }
    }

    /// Sends one request; `Err` says why it failed. The caller bounds it in time.
    pub(super) async fn send(&self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        match self {
            Self::Grpc(client) => {
                let answer = client
                    .clone()
                    .export(request)
                    .await
                    .map_err(|s| format!("gRPC status {:?}: {}", s.code(), s.message()))?;
                partial(answer.into_inner().partial_success);
                Ok(())
            }
            Self::Http { client, url } => {
                let post = http::Request::post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(Bytes::from(request.encode_to_vec())))
                    .map_err(|e| format!("the request: {e}"))?;
                let answer = client.request(post).await.map_err(|e| error_chain(&e))?;
                let status = answer.status();
                let body = Limited::new(answer.into_body(), ANSWER_LIMIT)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if !status.is_success() {
                    let text = String::from_utf8_lossy(&body);
                    let text = text.trim();
                    return Err(if text.is_empty() || !text.is_ascii() {
                        format!("HTTP {status}")
                    } else {
                        format!(
                            "HTTP {status}: {}",
                            text.chars().take(200).collect::<String>()
                        )
                    });
                }
                if let Ok(answer) = ExportMetricsServiceResponse::decode(body) {
                    partial(answer.partial_success);
                }
                Ok(())
            }
        }
    }
}

/// A collector's partial success: accepted, what it rejected noted at debug level (the rest went through).
fn partial(p: Option<ExportMetricsPartialSuccess>) {
    if let Some(p) = p
        && (p.rejected_data_points > 0 || !p.error_message.is_empty())
    {
        tracing::debug!(
            rejected = p.rejected_data_points,
            message = %p.error_message,
            "the OTLP collector rejected some metric points"
        );
    }
}

/// An error with its causes (hyper's own message is only "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
