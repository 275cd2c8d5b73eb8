//! The hub for Envoy sidecars, through its stock filters and the hub's Envoy front doors: ext_authz on
//! inbound requests (the hub's `envoy.service.auth.v3.Authorization`, which reads route
//! `context_extensions` whose keys are string attributes), and a gRPC access log on inbound and outbound
//! ones (the hub's `envoy.service.accesslog.v3.AccessLogService`, which tells the reporter by the log name
//! `inbound` / `outbound`).

use std::time::Duration;

use pilot_xds::build;
use prost::{Message, Name};
use sextant_proto::envoy::config::accesslog::v3::{AccessLog, access_log};
use sextant_proto::envoy::config::core::v3::{ApiVersion, GrpcService, grpc_service};
use sextant_proto::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig,
};
use sextant_proto::envoy::extensions::filters::http::ext_authz::v3::{
    CheckSettings, ExtAuthz, ExtAuthzPerRoute, ext_authz,
};
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use sextant_proto::google::protobuf::Any;

use super::attributes::{AttrValue, Attributes, length_delimited};
use super::service::Hub;

/// The name Envoy knows the external authorization filter by.
pub const EXT_AUTHZ_FILTER: &str = "envoy.filters.http.ext_authz";
/// The name Envoy knows the gRPC HTTP access logger by.
pub const HTTP_GRPC_ACCESS_LOG: &str = "envoy.access_loggers.http_grpc";
/// How long a request waits for the hub's answer (Istio's Mixer default); then it goes on.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(200);

/// Envoy's gRPC client of the hub. Its `:authority` is the hub's `HOST:PORT`: by default Envoy would send
/// the cluster's name, whose `|` is no valid authority (the hub's HTTP/2 server resets such a stream).
fn grpc(hub: &Hub<'_>, timeout: Option<Duration>) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: hub.cluster.clone(),
                authority: hub.authority(),
                ..Default::default()
            },
        )),
        timeout: timeout.map(crate::policy::duration),
        ..Default::default()
    }
}

/// ext_authz asking the `hub`, with the peer's certificate; without an answer (the hub away or
/// slow) the request goes on, as the hub's own default failure policy (FAIL_OPEN) says.
pub fn ext_authz(hub: &Hub<'_>) -> HttpFilter {
    let config = ExtAuthz {
        services: Some(ext_authz::Services::GrpcService(grpc(
            hub,
            Some(CHECK_TIMEOUT),
        ))),
        transport_api_version: ApiVersion::V3 as i32,
        failure_mode_allow: true,
        include_peer_certificate: true,
        ..Default::default()
    };
    build::http_filter(EXT_AUTHZ_FILTER, build::any(&config))
}

/// The per-route ext_authz settings carrying the string attributes among `attributes` whose names start
/// with `destination.` as `context_extensions` (written in name order: equal attributes, equal bytes).
pub fn per_route(attributes: &Attributes) -> Any {
    let mut settings = Vec::new();
    for (name, v) in attributes {
        if let (true, AttrValue::String(s)) = (name.starts_with("destination."), v) {
            CheckSettings {
                context_extensions: std::iter::once((name.to_string(), s.clone())).collect(),
                ..Default::default()
            }
            .encode(&mut settings)
            .expect("a Vec grows as needed");
        }
    }
    // `ExtAuthzPerRoute.check_settings` is field 2.
    let mut value = Vec::new();
    length_delimited(2, &settings, &mut value);
    Any {
        type_url: ExtAuthzPerRoute::type_url(),
        value,
    }
}

/// A TCP gRPC access log named `log_name` to the `hub`'s access-log service (on a `tcp_proxy`).
pub fn tcp_access_log(log_name: &str, hub: &Hub<'_>) -> AccessLog {
    let config =
        sextant_proto::envoy::extensions::access_loggers::grpc::v3::TcpGrpcAccessLogConfig {
            common_config: Some(CommonGrpcAccessLogConfig {
                log_name: log_name.to_string(),
                grpc_service: Some(grpc(hub, None)),
                transport_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            }),
        };
    AccessLog {
        name: TCP_GRPC_ACCESS_LOG.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(build::any(&config))),
        ..Default::default()
    }
}

/// Envoy's TCP gRPC access logger.
const TCP_GRPC_ACCESS_LOG: &str = "envoy.access_loggers.tcp_grpc";

/// A gRPC access log named `log_name` to the `hub`'s access-log service.
pub fn access_log(log_name: &str, hub: &Hub<'_>) -> AccessLog {
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: log_name.to_string(),
            grpc_service: Some(grpc(hub, None)),
            transport_api_version: ApiVersion::V3 as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    AccessLog {
        name: HTTP_GRPC_ACCESS_LOG.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(build::any(&config))),
        ..Default::default()
    }
}
