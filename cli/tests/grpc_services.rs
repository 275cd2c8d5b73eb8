//! gRPC health and server reflection on the hub's gRPC port.

mod common;

use common::{Hub, repo};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[test]
fn health_and_reflection_are_served() {
    let hub = Hub::start(&repo().join("examples/policies"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.grpc)).expect("url").connect().await.expect("connect");
        let mut health = HealthClient::new(channel.clone());
        for service in ["sextant.mixer.v1.Mixer", "envoy.service.auth.v3.Authorization", "envoy.service.ratelimit.v3.RateLimitService"] {
            let status = health.check(HealthCheckRequest { service: service.into() }).await.expect("health").into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service}");
        }
        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
        let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection").into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) = responses.message().await.expect("response").and_then(|r| r.message_response) else {
            panic!("no service list")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"sextant.mixer.v1.Mixer".to_string()), "{names:?}");
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::FileContainingSymbol("sextant.mixer.v1.CheckRequest".into())) };
        let mut responses = reflection.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection").into_inner();
        let found = responses.message().await.expect("response").and_then(|r| r.message_response);
        assert!(matches!(found, Some(MessageResponse::FileDescriptorResponse(f)) if !f.file_descriptor_proto.is_empty()));
    });
}
