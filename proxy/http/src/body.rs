//! The response body sent downstream: an upstream's, or one the proxy made.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use proxy_balance::ResponseBody;

/// A response body sent downstream.
#[derive(Debug)]
pub enum ProxyBody {
    /// Streamed from upstream.
    Upstream(ResponseBody),
    /// Made by the proxy.
    Local(Option<Bytes>),
    /// Either, reported to the hub when it ends.
    Reported(Box<(ProxyBody, crate::hub::Report)>),
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
