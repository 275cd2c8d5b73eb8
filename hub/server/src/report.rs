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

use crate::native::{DecodedReport, MAX_REPORT_BAGS, MixerService, each_report_bag};
use crate::state::HubState;

/// The Check method's path.
const CHECK_PATH: &str = "/sextant.mixer.v1.Mixer/Check";
/// The Report method's path.
const REPORT_PATH: &str = "/sextant.mixer.v1.Mixer/Report";

/// Why a native request was refused before it was decided. Each variant names the message and, when known,
/// the field at fault; it becomes an `INVALID_ARGUMENT` status.
#[derive(Debug, PartialEq, thiserror::Error)]
enum RequestError {
    /// Bytes that are not a protobuf encoding of the message (garbage, a wrong wire type, truncated).
    #[error("malformed {path}: {detail}")]
    Malformed {
        /// The message and the field path where decoding failed (`CheckRequest.attributes.values`).
        path: String,
        /// What was wrong (`buffer underflow`).
        detail: String,
    },
    /// A message over the hub's size limit.
    #[error("{message} is {}; the hub accepts at most {limit}", size(*.bytes))]
    TooLarge {
        /// The message type (`CheckRequest`).
        message: &'static str,
        /// Its length as its gRPC frame declared it, when known.
        bytes: Option<usize>,
        /// The limit, in bytes.
        limit: usize,
    },
    /// What [`sextant_attributes::ReportWire`] found wrong, when prost did not name a field.
    #[error(transparent)]
    Report(sextant_attributes::DecodeError),
}

/// "N bytes", or "too large" when the size is unknown.
fn size(bytes: Option<usize>) -> String {
    bytes.map_or_else(|| "too large".to_string(), |n| format!("{n} bytes"))
}

impl RequestError {
    /// Restates prost's error for `message`: prost records the fields it was in as `Message.field` frames,
    /// innermost first, before the description; they are turned into one path from the top-level message
    /// (`CheckRequest.attributes.values: buffer underflow`). prost exposes the frames only through `Display`,
    /// so they are read back from its text; anything not shaped like a frame is kept as the description.
    fn malformed(message: &'static str, e: &prost::DecodeError) -> Self {
        let text = e.to_string();
        let mut rest = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&text);
        let mut frames = Vec::new();
        while let Some((head, tail)) = rest.split_once(": ")
            && let Some(frame) = frame(head)
        {
            frames.push(frame);
            rest = tail;
        }
        let mut path = frames
            .last()
            .map_or(message, |(outer, _)| *outer)
            .to_string();
        for (_, field) in frames.iter().rev() {
            path.push('.');
            path.push_str(field);
        }
        RequestError::Malformed {
            path,
            detail: rest.to_string(),
        }
    }

    fn into_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

/// A `Message.field` frame of prost's error text.
fn frame(s: &str) -> Option<(&str, &str)> {
    let ident =
        |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    s.split_once('.').filter(|(m, f)| ident(m) && ident(f))
}

/// Evaluates an encoded `ReportRequest` and answers how many bags were accepted.
pub fn report(state: &HubState, bytes: &[u8]) -> Result<mixer::ReportResponse, Status> {
    let wire = sextant_attributes::ReportWire::parse(bytes).map_err(|e| {
        // A Report refused whole counts as one invalid report: how many bags it meant to carry is unknown.
        state.metrics.reports("native", "invalid", 1);
        malformed_report(bytes, e).into_status()
    })?;
    if wire.len() > MAX_REPORT_BAGS {
        state
            .metrics
            .reports("native", "invalid", wire.len() as u64);
        return Err(Status::invalid_argument(format!(
            "ReportRequest has {} attribute bags; the most one Report may carry is {MAX_REPORT_BAGS}: send smaller batches",
            wire.len()
        )));
    }
    let mut decoded = DecodedReport::default();
    state.ingest_each("native", |visit| decoded = each_report_bag(&wire, visit));
    if decoded.rejected > 0 {
        state.metrics.reports("native", "invalid", decoded.rejected);
    }
    Ok(mixer::ReportResponse {
        accepted: decoded.accepted,
        rejected: decoded.rejected,
        errors: decoded.errors,
    })
}

/// Why `bytes` are not a `ReportRequest`. [`sextant_attributes::ReportWire`] reads only the top level and says
/// what was wrong but not in which field; prost, run again on this (refused, so rare) path only, names the
/// field. Its answer is used when it finds the bytes malformed too, which it does for every malformed top
/// level.
fn malformed_report(bytes: &[u8], wire: sextant_attributes::DecodeError) -> RequestError {
    match <mixer::ReportRequest as prost::Message>::decode(bytes) {
        Err(e) => RequestError::malformed("ReportRequest", &e),
        Ok(_) => RequestError::Report(wire),
    }
}

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
        Box::pin(async move { report(&state, request.get_ref()).map(Response::new) })
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

    fn check_error(hex: &str) -> String {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let e = <mixer::CheckRequest as prost::Message>::decode(bytes.as_slice())
            .expect_err("malformed");
        RequestError::malformed("CheckRequest", &e).to_string()
    }

    #[test]
    fn prost_errors_name_the_field_path_from_the_top() {
        assert_eq!(
            check_error("0aff01deadbeef"),
            "malformed CheckRequest.attributes: buffer underflow"
        );
        assert_eq!(
            check_error("0801"),
            "malformed CheckRequest.attributes: invalid wire type: Varint (expected LengthDelimited)"
        );
        // attributes { values { key: "ab", value: <claims 9 bytes, has 1> } }
        assert_eq!(
            check_error("0a090a070a02616212090a"),
            "malformed CheckRequest.attributes.values: buffer underflow"
        );
        // No field entered: the message is named.
        assert_eq!(
            check_error("07"),
            "malformed CheckRequest: invalid wire type value: 7"
        );
    }

    #[test]
    fn report_errors_name_the_field() {
        let e = sextant_attributes::ReportWire::parse(&[0x08, 0x01]).expect_err("wrong wire type");
        assert_eq!(
            malformed_report(&[0x08, 0x01], e).to_string(),
            "malformed ReportRequest.attributes: invalid wire type: Varint (expected LengthDelimited)"
        );
    }

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
