//! gRPC framing, message by message: a request body read as messages from a buffer let go of once it is
//! empty, and a response body of frames each in a buffer of its own, freed once HTTP/2 has sent it.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, http};

use crate::limits::MAX_REQUEST_BYTES;

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
pub(crate) fn respond(outbound: mpsc::Receiver<Frame>) -> http::Response<Body> {
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
