//! The native Report RPC, read from the request's bytes.
//!
//! tonic's generated Mixer service decodes a `ReportRequest` with prost before the handler runs: a hash map
//! per value type and a `String` per word, for every one of a Report's bags, only to be turned into bags and
//! dropped. [`MixerRoutes`] serves the Mixer service with the generated code for Check and sends Report to
//! [`ReportService`], whose codec hands over the message bytes; [`hub_attributes::ReportWire`] decodes them
//! one bag at a time straight into Telemetry.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::bytes::{Buf as _, Bytes};
use sextant_proto::mixer::{self, mixer_server::MixerServer};
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::codegen::{Body, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tower::Service;

use crate::native::{DecodedReport, MAX_REPORT_BAGS, MixerService, each_report_bag};
use crate::state::HubState;

/// The Report method's path.
const REPORT_PATH: &str = "/sextant.mixer.v1.Mixer/Report";

/// Evaluates an encoded `ReportRequest` and answers how many bags were accepted.
pub fn report(state: &HubState, bytes: &[u8]) -> Result<mixer::ReportResponse, Status> {
    let wire = hub_attributes::ReportWire::parse(bytes).map_err(|e| {
        state.metrics.rejected("native", "invalid");
        Status::invalid_argument(e.to_string())
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

/// The Report handler.
#[derive(Clone)]
struct ReportService(Arc<HubState>);

impl UnaryService<Bytes> for ReportService {
    type Response = mixer::ReportResponse;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Self::Response>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { report(&state, request.get_ref()).map(Response::new) })
    }
}

/// The Mixer service: Check through the generated code, Report through [`ReportService`].
#[derive(Clone)]
pub struct MixerRoutes {
    generated: MixerServer<MixerService>,
    state: Arc<HubState>,
    max_message_bytes: usize,
}

impl MixerRoutes {
    /// Serves Mixer with `state`; messages larger than `max_message_bytes` are refused.
    pub fn new(state: Arc<HubState>, max_message_bytes: usize) -> Self {
        MixerRoutes {
            generated: MixerServer::new(MixerService::new(state.clone()))
                .max_decoding_message_size(max_message_bytes),
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
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != REPORT_PATH {
            return self.generated.call(req);
        }
        let service = ReportService(self.state.clone());
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ReportCodec(PhantomData)).max_decoding_message_size(limit);
            Ok(grpc.unary(service, req).await)
        })
    }
}
