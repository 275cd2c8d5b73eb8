//! The request body sent upstream: none, held whole (sendable again), or streamed from downstream while a
//! copy is kept up to a limit, so a retry can send it again once it is complete (as Envoy buffers a request
//! for retries up to its buffer limit).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body sent upstream.
#[derive(Debug, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// A body held whole: its data frames and the trailers that ended it, if any.
    Full(VecDeque<Bytes>, Option<http::HeaderMap>),
    /// Streamed from downstream as it arrives (sent once), a copy kept in the recording when there is one.
    Streaming(Incoming, Option<Arc<Recording>>),
}

/// The copy of a streamed body, kept while it is sent, up to a limit.
#[derive(Debug)]
pub struct Recording {
    limit: usize,
    state: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    data: VecDeque<Bytes>,
    trailers: Option<http::HeaderMap>,
    size: usize,
    complete: bool,
    overflowed: bool,
}

impl Recording {
    /// A recording keeping at most `limit` bytes of body.
    pub fn new(limit: usize) -> Arc<Recording> {
        Arc::new(Recording {
            limit,
            state: Mutex::new(Recorded::default()),
        })
    }

    fn record(&self, frame: &Frame<Bytes>) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.overflowed {
            return;
        }
        if let Some(data) = frame.data_ref() {
            s.size += data.len();
            if s.size > self.limit {
                // Too large to send again: let it go.
                s.overflowed = true;
                s.data.clear();
                return;
            }
            s.data.push_back(data.clone());
        } else if let Some(trailers) = frame.trailers_ref() {
            s.trailers = Some(trailers.clone());
        }
    }

    fn finish(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .complete = true;
    }

    /// Whether [`Recording::replay`] would give the body.
    pub fn replayable(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.complete && !s.overflowed
    }

    /// The whole body again, if it was streamed to its end within the limit.
    pub fn replay(&self) -> Option<Body> {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (s.complete && !s.overflowed).then(|| Body::Full(s.data.clone(), s.trailers.clone()))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(data, trailers) => {
                if let Some(d) = data.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Body::Streaming(incoming, recording) => {
                let polled = Pin::new(incoming).poll_frame(cx);
                if let Some(recording) = recording {
                    match &polled {
                        Poll::Ready(Some(Ok(frame))) => recording.record(frame),
                        Poll::Ready(None) => recording.finish(),
                        _ => {}
                    }
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(data, trailers) => data.is_empty() && trailers.is_none(),
            // Reporting the end here would skip the poll that marks the recording complete.
            Body::Streaming(incoming, None) => incoming.is_end_stream(),
            Body::Streaming(_, Some(_)) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(data, _) => SizeHint::with_exact(data.iter().map(|d| d.len() as u64).sum()),
            Body::Streaming(incoming, _) => incoming.size_hint(),
        }
    }
}

impl Body {
    /// A copy, for a body held whole; `None` for a streamed one.
    pub fn try_clone(&self) -> Option<Body> {
        match self {
            Body::Empty => Some(Body::Empty),
            Body::Full(d, t) => Some(Body::Full(d.clone(), t.clone())),
            Body::Streaming(..) => None,
        }
    }
}
