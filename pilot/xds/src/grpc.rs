//! The ADS gRPC service written out rather than generated, for one reason: memory. The generated server
//! encodes a stream's responses into one buffer per stream, which keeps the capacity of the largest response
//! it ever sent (a full push of thousands of clusters: megabytes per proxy, for as long as the proxy stays
//! connected). Here each response is framed into a buffer of its own, freed once HTTP/2 has sent it.
//! Requests are read the same way: from a buffer let go of once it is empty (tonic's decoder too keeps the
//! capacity of the largest request, and Envoy's EDS requests name every cluster).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use crate::framing::{Requests, respond};
use crate::server::AdsServer;
use crate::source::SnapshotSource;

/// The service's gRPC name.
const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

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

impl<S> AdsServer<S> {
    /// The gRPC service, to add to a tonic server.
    pub fn into_service(self) -> AdsService<S> {
        AdsService::new(self)
    }
}
