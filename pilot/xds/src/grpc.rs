//! The ADS gRPC service written out rather than generated, for one reason: memory. The generated server
//! encodes a stream's responses into one buffer per stream, which keeps the capacity of the largest response
//! it ever sent (a full push of thousands of clusters: megabytes per proxy, for as long as the proxy stays
//! connected). Here each response is framed into a buffer of its own, freed once HTTP/2 has sent it.
//! Requests are read the same way: from a buffer let go of once it is empty (tonic's decoder too keeps the
//! capacity of the largest request, and Envoy's EDS requests name every cluster).

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, Service, http};
use tonic::server::NamedService;

use crate::server::AdsServer;
use crate::source::SnapshotSource;

/// The service's gRPC name.
const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

use crate::limits::MAX_REQUEST_BYTES;

/// `envoy.service.discovery.v3.AggregatedDiscoveryService` over an [`AdsServer`], to add to a tonic server.
pub struct AdsService<S> {
    server: Arc<AdsServer<S>>,
}

impl<S> Clone for AdsService<S> {
    fn clone(&self) -> Self {
        AdsService {
            server: self.server.clone(),
        }
    }
}

impl<S> AdsService<S> {
    pub(crate) fn new(server: AdsServer<S>) -> Self {
        AdsService {
            server: Arc::new(server),
        }
    }
}

impl<S> NamedService for AdsService<S> {
    const NAME: &'static str = SERVICE;
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send + 'static>>;

impl<S: SnapshotSource> Service<http::Request<Body>> for AdsService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let server = self.server.clone();
        Box::pin(async move {
            let method = request.uri().path().rsplit('/').next().unwrap_or_default();
            let response = match method {
                "StreamAggregatedResources" => {
                    respond(server.sotw(Requests::new(request.into_body())))
                }
                "DeltaAggregatedResources" => {
                    respond(server.delta(Requests::new(request.into_body())))
                }
                other => {
                    Status::unimplemented(format!("{SERVICE} has no method {other:?}")).into_http()
                }
            };
            Ok(response)
        })
    }
}

/// A request body as gRPC messages.
pub(crate) struct Requests<R> {
    body: Body,
    buf: Vec<u8>,
    ended: bool,
    _messages: PhantomData<fn() -> R>,
}

impl<R: Message + Default> Requests<R> {
    pub(crate) fn new(body: Body) -> Self {
        Requests {
            body,
            buf: Vec::new(),
            ended: false,
            _messages: PhantomData,
        }
    }

    /// The next message; `None` once the proxy ended the stream. Cancel safe: what was read stays buffered.
    pub(crate) async fn message(&mut self) -> Result<Option<R>, Status> {
        loop {
            if let Some(message) = self.decode()? {
                return Ok(Some(message));
            }
            if self.ended {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(Status::invalid_argument(
                        "the request stream ended inside a message",
                    )),
                };
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(status)) => return Err(status),
                None => self.ended = true,
            }
        }
    }

    /// The first whole message of the buffer, if there is one.
    fn decode(&mut self) -> Result<Option<R>, Status> {
        let Some(header) = self.buf.first_chunk::<5>() else {
            return Ok(None);
        };
        if header[0] != 0 {
            return Err(Status::unimplemented(
                "compressed ADS requests are not supported",
            ));
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_REQUEST_BYTES {
            return Err(Status::resource_exhausted(format!(
                "a request of {len} bytes is over the limit of {MAX_REQUEST_BYTES}"
            )));
        }
        let Some(body) = self.buf.get(5..5 + len) else {
            return Ok(None);
        };
        let message = R::decode(body)
            .map_err(|e| Status::invalid_argument(format!("malformed request: {e}")))?;
        if self.buf.len() == 5 + len {
            self.buf = Vec::new();
        } else {
            self.buf.drain(..5 + len);
        }
        Ok(Some(message))
    }
}

/// What a stream's task queues for its response body: a message already framed (see [`frame`]), or the
/// status that ends the stream (boxed: a queue's slots are as large as their largest item).
pub(crate) type Frame = Result<Bytes, Box<Status>>;

/// A gRPC response whose body carries the frames the stream's task queues, then ends with the status.
fn respond(outbound: mpsc::Receiver<Frame>) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Framed {
        outbound,
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// Messages framed as gRPC, each in a buffer of its own, then the trailers.
struct Framed {
    outbound: mpsc::Receiver<Frame>,
    done: bool,
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match self.outbound.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(bytes))) => {
                return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
            }
            Poll::Ready(Some(Err(status))) => *status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            return Poll::Ready(Some(Err(e)));
        }
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// One message as a gRPC length-prefixed frame (a zero compression flag, a big-endian length, the
/// message).
pub(crate) fn frame<M: Message>(message: &M) -> Bytes {
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    message
        .encode(&mut buf)
        .expect("the buffer was sized by encoded_len");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use sextant_proto::envoy::service::discovery::v3::DiscoveryRequest;

    use super::*;

    fn body(bytes: Vec<u8>) -> Body {
        Body::new(http_body_util::Full::new(Bytes::from(bytes)))
    }

    fn request(type_url: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: vec!["a".into(), "b".into()],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_bad_input_is_named() {
        let mut two = frame(&request("cds")).to_vec();
        two.extend_from_slice(&frame(&request("eds")));
        let mut requests = Requests::<DiscoveryRequest>::new(body(two));
        assert_eq!(requests.message().await.unwrap(), Some(request("cds")));
        assert_eq!(requests.message().await.unwrap(), Some(request("eds")));
        assert_eq!(requests.message().await.unwrap(), None);

        let mut compressed = frame(&request("cds")).to_vec();
        compressed[0] = 1;
        let err = Requests::<DiscoveryRequest>::new(body(compressed))
            .message()
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);

        let mut huge = vec![0u8];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = Requests::<DiscoveryRequest>::new(body(huge))
            .message()
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("over the limit"), "{err}");

        let truncated = frame(&request("cds"))[..8].to_vec();
        let err = Requests::<DiscoveryRequest>::new(body(truncated))
            .message()
            .await
            .unwrap_err();
        assert!(err.message().contains("ended inside a message"), "{err}");

        let garbage = vec![0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        let err = Requests::<DiscoveryRequest>::new(body(garbage))
            .message()
            .await
            .unwrap_err();
        assert!(err.message().starts_with("malformed request"), "{err}");
    }
}
