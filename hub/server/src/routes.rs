//! The native Mixer service's routes: Check and Report decoded by the hub's own codecs.
//!
//! tonic's generated Mixer service decodes a `ReportRequest` with prost before the handler runs: a hash map
//! per value type and a `String` per word, for every one of a Report's bags, only to be turned into bags and
//! dropped. [`MixerRoutes`] sends Report to [`ReportService`], whose codec hands over the message bytes;
//! [`sextant_attributes::ReportWire`] decodes them one bag at a time straight into Telemetry. Check goes through
//! [`CheckCodec`], prost's decoder with the refusal a client can act on: bytes that are not a `CheckRequest`
//! are `INVALID_ARGUMENT` naming the field at fault (the generated codec answers `INTERNAL` "failed to decode
//! Protobuf message"). A request over the size limit is refused before its body is read, also as
//! `INVALID_ARGUMENT` (see [`restate_too_large`]). Every refusal is counted as `result="invalid"`.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::bytes::{Buf as _, Bytes};
use sextant_proto::mixer::{self, mixer_server::Mixer as _, mixer_server::MixerServer};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tower::Service;

use crate::native::MixerService;
use crate::refusal::RequestError;
use crate::state::HubState;

/// The Check method's path.
const CHECK_PATH: &str = "/sextant.mixer.v1.Mixer/Check";
/// The Report method's path.
const REPORT_PATH: &str = "/sextant.mixer.v1.Mixer/Report";

/// The message bytes of a request, undecoded (taken from the receive buffer without a copy).
#[derive(Debug, Default)]
struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n)))
    }
}

/// Raw bytes in, a prost `ReportResponse` out.
#[derive(Debug)]
struct ReportCodec(PhantomData<mixer::ReportResponse>);

impl Codec for ReportCodec {
    type Encode = mixer::ReportResponse;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<mixer::ReportResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// A `CheckRequest` decoded by prost; bytes that are not one are counted and refused as `INVALID_ARGUMENT`
/// naming the field.
struct CheckDecoder(Arc<HubState>);

impl Decoder for CheckDecoder {
    type Item = mixer::CheckRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<mixer::CheckRequest>, Status> {
        <mixer::CheckRequest as prost::Message>::decode(buf)
            .map(Some)
            .map_err(|e| {
                self.0.metrics.rejected("native", "invalid");
                RequestError::malformed("CheckRequest", &e).into_status()
            })
    }
}

/// A `CheckRequest` in through [`CheckDecoder`], a prost `CheckResponse` out.
struct CheckCodec(Arc<HubState>);

impl Codec for CheckCodec {
    type Encode = mixer::CheckResponse;
    type Decode = mixer::CheckRequest;
    type Encoder = tonic_prost::ProstEncoder<mixer::CheckResponse>;
    type Decoder = CheckDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckDecoder(self.0.clone())
    }
}

/// A boxed handler future.
type HandlerFuture<T> = Pin<Box<dyn Future<Output = Result<Response<T>, Status>> + Send>>;

/// The Report handler.
#[derive(Clone)]
struct ReportService(Arc<HubState>);

impl UnaryService<Bytes> for ReportService {
    type Response = mixer::ReportResponse;
    type Future = HandlerFuture<mixer::ReportResponse>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let span = crate::trace::report(request.metadata());
            let caller = crate::caller::identity_of(request.extensions());
            crate::ingest::report(&state, request.get_ref(), caller.as_deref(), &span)
                .map(Response::new)
        })
    }
}

/// The Check handler: [`MixerService::check`], shared with the generated server (one deduplication cache).
#[derive(Clone)]
struct CheckService(Arc<MixerService>);

impl UnaryService<mixer::CheckRequest> for CheckService {
    type Response = mixer::CheckResponse;
    type Future = HandlerFuture<mixer::CheckResponse>;

    fn call(&mut self, request: Request<mixer::CheckRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.check(request).await })
    }
}

/// The Mixer methods [`MixerRoutes`] serves itself.
#[derive(Clone, Copy, Debug)]
enum Method {
    Check,
    Report,
}

impl Method {
    fn of(path: &str) -> Option<Method> {
        match path {
            CHECK_PATH => Some(Method::Check),
            REPORT_PATH => Some(Method::Report),
            _ => None,
        }
    }

    /// The request message's name.
    fn message(self) -> &'static str {
        match self {
            Method::Check => "CheckRequest",
            Method::Report => "ReportRequest",
        }
    }

    /// Counts one request refused before it was decided.
    fn count_invalid(self, state: &HubState) {
        match self {
            Method::Check => state.metrics.rejected("native", "invalid"),
            Method::Report => state.metrics.reports("native", "invalid", 1),
        }
    }
}

/// Restates tonic's refusal of an oversized request as `INVALID_ARGUMENT` naming the size and the limit, and
/// counts it.
///
/// tonic reads a message's 5-byte length prefix and refuses a length over `max_decoding_message_size` before
/// it buffers any of the body: that is the behaviour wanted, so the check is left to tonic rather than
/// repeated in a request-body wrapper or a decoder (a decoder only runs once the whole message is buffered).
/// The refusal is an error response with no body (trailers-only: `grpc-status` is in its headers, and tonic
/// also puts the `Status` in its extensions), so restating it is an edit of the response before it is sent.
/// `OUT_OF_RANGE` in such a response can only be that refusal: the Check and Report handlers never answer it
/// (a response too large to encode fails in the body, after the headers). The size is read from tonic's
/// message ("found N bytes"); if tonic ever words it differently the status still names the limit.
fn restate_too_large(
    response: http::Response<tonic::body::Body>,
    method: Method,
    limit: usize,
    state: &HubState,
) -> http::Response<tonic::body::Body> {
    let Some(status) = response.extensions().get::<Status>() else {
        return response;
    };
    if status.code() != Code::OutOfRange {
        return response;
    }
    let bytes = declared_length(status.message());
    method.count_invalid(state);
    RequestError::TooLarge {
        message: method.message(),
        bytes,
        limit,
    }
    .into_status()
    .into_http()
}

/// The length in tonic's "message length too large: found N bytes, …".
fn declared_length(message: &str) -> Option<usize> {
    let (_, after) = message.split_once("found ")?;
    after.split_once(" bytes")?.0.parse().ok()
}

/// The Mixer service: Check through [`CheckCodec`], Report through [`ReportService`], anything else through
/// the generated code (which answers `UNIMPLEMENTED`).
#[derive(Clone)]
pub struct MixerRoutes {
    generated: MixerServer<MixerService>,
    check: CheckService,
    state: Arc<HubState>,
    max_message_bytes: usize,
}

impl MixerRoutes {
    /// Serves Mixer with `state`; messages larger than `max_message_bytes` are refused.
    pub fn new(state: Arc<HubState>, max_message_bytes: usize) -> Self {
        let service = Arc::new(MixerService::new(state.clone()));
        MixerRoutes {
            generated: MixerServer::from_arc(service.clone())
                .max_decoding_message_size(max_message_bytes),
            check: CheckService(service),
            state,
            max_message_bytes,
        }
    }
}

impl NamedService for MixerRoutes {
    const NAME: &'static str = <MixerServer<MixerService> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for MixerRoutes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let Some(method) = Method::of(req.uri().path()) else {
            return self.generated.call(req);
        };
        let state = self.state.clone();
        let check = self.check.clone();
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let response = match method {
                Method::Check => {
                    tonic::server::Grpc::new(CheckCodec(state.clone()))
                        .max_decoding_message_size(limit)
                        .unary(check, req)
                        .await
                }
                Method::Report => {
                    tonic::server::Grpc::new(ReportCodec(PhantomData))
                        .max_decoding_message_size(limit)
                        .unary(ReportService(state.clone()), req)
                        .await
                }
            };
            Ok(restate_too_large(response, method, limit, &state))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_names_size_and_limit() {
        let message = "Error, decoded message length too large: found 10485771 bytes, the limit is: 4194304 bytes";
        let e = RequestError::TooLarge {
            message: "CheckRequest",
            bytes: declared_length(message),
            limit: 4 << 20,
        };
        assert_eq!(
            e.to_string(),
            "CheckRequest is 10485771 bytes; the hub accepts at most 4194304"
        );
        assert_eq!(declared_length("worded differently"), None);
    }
}
