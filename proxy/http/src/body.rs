//! The response body sent downstream: an upstream's, or one the proxy made; either reported to the hub
//! when it ends ([`Report`], made by the hub filter).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use proxy_balance::ResponseBody;
use proxy_report::Reporter;
use sextant_attributes::{Bag, Span, Value, attr};

use crate::bag::{grpc_status, now, put};

/// A response body sent downstream.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from upstream.
    Upstream(ResponseBody),
    /// Made by the proxy.
    Local(Option<Bytes>),
    /// Either, reported to the hub when it ends.
    Reported(Box<(ProxyBody, Report)>),
}

impl ProxyBody {
    /// A body of `bytes` (none when empty).
    pub fn local(bytes: impl Into<Bytes>) -> ProxyBody {
        let bytes = bytes.into();
        ProxyBody::Local(if bytes.is_empty() { None } else { Some(bytes) })
    }
}

impl HttpBody for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Local(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Reported(r) => {
                let (inner, report) = &mut **r;
                report.poll_frame(Pin::new(inner), cx)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(b) => b.is_end_stream(),
            ProxyBody::Local(b) => b.is_none(),
            ProxyBody::Reported(r) => r.0.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(b) => b.size_hint(),
            ProxyBody::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Reported(r) => r.0.size_hint(),
        }
    }
}

/// A response on its way downstream: reported when its body ends or is dropped.
#[derive(Debug)]
pub struct Report {
    bag: Option<Bag>,
    started: Instant,
    bytes: u64,
    reporter: Arc<Reporter>,
}

impl Report {
    /// A report of the request whose attributes so far are `bag`, started at `started`, sent through
    /// `reporter` once the response ends.
    pub(crate) fn new(bag: Bag, started: Instant, reporter: Arc<Reporter>) -> Report {
        Report {
            bag: Some(bag),
            started,
            bytes: 0,
            reporter,
        }
    }

    /// Polls `inner` (the body reported on), counting its bytes and reading a gRPC status from its
    /// trailers; its end sends the report.
    pub(crate) fn poll_frame(
        &mut self,
        inner: Pin<&mut ProxyBody>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if let (Some(trailers), Some(bag)) = (frame.trailers_ref(), self.bag.as_mut())
                    && let Some(code) = grpc_status(trailers)
                {
                    put(
                        bag,
                        attr!("response.grpc_status", String),
                        Value::String(code),
                    );
                }
            }
            Poll::Ready(None) => self.send(),
            _ => {}
        }
        polled
    }

    fn send(&mut self) {
        let Some(mut bag) = self.bag.take() else {
            return;
        };
        let bytes = i64::try_from(self.bytes).unwrap_or(i64::MAX);
        put(&mut bag, attr!("response.size", Int64), Value::Int64(bytes));
        put(
            &mut bag,
            attr!("response.total_size", Int64),
            Value::Int64(bytes),
        );
        put(
            &mut bag,
            attr!("response.time", Timestamp),
            Value::Timestamp(now()),
        );
        let took = self.started.elapsed();
        put(
            &mut bag,
            attr!("response.duration", Duration),
            Value::Duration(Span {
                seconds: i64::try_from(took.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(took.subsec_nanos()).unwrap_or(0),
            }),
        );
        self.reporter.report(bag);
    }
}

impl Drop for Report {
    /// A response dropped before its end (the client went away) is reported with what was sent.
    fn drop(&mut self) {
        self.send();
    }
}
