//! `envoy.service.accesslog.v3.AccessLogService`: Envoy's gRPC access-log sink (the `envoy.access_loggers.
//! http_grpc` / `tcp_grpc` loggers), mapped into attribute bags and fed to the same Telemetry rules as the
//! native Report.
//!
//! Mapping of an HTTP entry: method, scheme, authority, path (and `request.url_path`), user agent, request id,
//! the logged request headers (`additional_request_headers_to_log`) → `request.*`; body and header byte counts
//! → `request.size` / `request.total_size` / `response.size` / `response.total_size`; status →
//! `response.code`, `grpc-status` → `response.grpc_status`; start time and time to last downstream byte →
//! `request.time`, `response.duration`, `response.time`; downstream remote / local address → `source.*` /
//! `destination.*` ip and port; the peer certificate's URI SAN → `source.principal` and `connection.mtls`;
//! response flags → `context.proxy_error_code` (Envoy's short names). The upstream cluster, when named
//! Istio-style (`outbound|9080|v1|reviews.default.svc.cluster.local`), gives `destination.service.host`,
//! `.name` and `.namespace`. The stream's identifier gives the reporter: its `log_name` is `inbound` or
//! `outbound` (anything else: inbound), and the node's `cluster` and metadata `NAMESPACE` name the reporting
//! workload (the destination for inbound logs, the source for outbound). TCP entries set `context.protocol`
//! `tcp`, the byte counts `connection.received.bytes` / `connection.sent.bytes`, and `connection.event` from
//! the entry type (`open` when upstream connected, `continue` for periodic entries, `close` at the end).

use std::collections::HashMap;
use std::sync::Arc;

use sextant_attributes::{AttrId, Bag, DESTINATION, PeerAttrs, SOURCE, Span, Time, Value, attr};
use sextant_proto::envoy::config::core::v3::{
    Address, RequestMethod, address, socket_address::PortSpecifier,
};
use sextant_proto::envoy::data::accesslog::v3::{
    AccessLogCommon, AccessLogType, HttpAccessLogEntry, ResponseFlags, TcpAccessLogEntry,
    tls_properties::certificate_properties::subject_alt_name::San,
};
use sextant_proto::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
    access_log_service_server::AccessLogService,
    stream_access_logs_message::{Identifier, LogEntries},
};
use tonic::{Request, Response, Status, Streaming};

use crate::fill::{set, set_str};
use crate::state::HubState;

/// The access-log service.
pub struct AlsService {
    state: Arc<HubState>,
}

impl AlsService {
    /// A service feeding `state`'s telemetry.
    pub fn new(state: Arc<HubState>) -> Self {
        AlsService { state }
    }
}

#[tonic::async_trait]
impl AccessLogService for AlsService {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        // Envoy sends the identifier on the first message of a stream only.
        let mut reporter: Option<Reporter> = None;
        while let Some(msg) = stream.message().await? {
            if let Some(id) = &msg.identifier {
                reporter = Some(Reporter::of(id));
            }
            let r = reporter.get_or_insert_with(Reporter::default);
            let bags = bags_of(&msg, r);
            self.state.ingest("envoy_als", bags);
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

/// Who sent a log stream.
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    outbound: bool,
    workload: String,
    namespace: String,
    uid: String,
}

impl Reporter {
    /// The reporter named by a stream's identifier.
    pub fn of(id: &Identifier) -> Self {
        let node = id.node.as_ref();
        let meta = |k: &str| {
            node.and_then(|n| n.metadata.as_ref())
                .and_then(|m| m.fields.get(k))
                .and_then(|v| match &v.kind {
                    Some(sextant_proto::google::protobuf::value::Kind::StringValue(s)) => {
                        Some(s.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        };
        Reporter {
            outbound: id.log_name.starts_with("outbound"),
            workload: node.map(|n| n.cluster.clone()).unwrap_or_default(),
            namespace: meta("NAMESPACE"),
            uid: node.map(|n| n.id.clone()).unwrap_or_default(),
        }
    }
}

/// The bags of one message: one per log entry.
pub fn bags_of(msg: &StreamAccessLogsMessage, reporter: &Reporter) -> Vec<Bag> {
    match &msg.log_entries {
        Some(LogEntries::HttpLogs(h)) => {
            h.log_entry.iter().map(|e| http_bag(e, reporter)).collect()
        }
        Some(LogEntries::TcpLogs(t)) => t.log_entry.iter().map(|e| tcp_bag(e, reporter)).collect(),
        None => Vec::new(),
    }
}

fn set_int(bag: &mut Bag, id: AttrId, v: u64) {
    set(bag, id, Value::Int64(i64::try_from(v).unwrap_or(i64::MAX)));
}

fn common(bag: &mut Bag, c: &AccessLogCommon, r: &Reporter) {
    set_str(
        bag,
        attr!("context.reporter.kind", String),
        if r.outbound { "outbound" } else { "inbound" },
    );
    set_str(bag, attr!("context.reporter.uid", String), &r.uid);
    let side = if r.outbound { &SOURCE } else { &DESTINATION };
    set_str(bag, side.workload_name, &r.workload);
    set_str(bag, side.workload_namespace, &r.namespace);
    address(bag, &SOURCE, c.downstream_remote_address.as_ref());
    address(bag, &DESTINATION, c.downstream_local_address.as_ref());
    if let Some(t) = &c.start_time {
        set(
            bag,
            attr!("request.time", Timestamp),
            Value::Timestamp(Time {
                seconds: t.seconds,
                nanos: t.nanos,
            }),
        );
    }
    if let Some(flags) = &c.response_flags {
        set_str(
            bag,
            attr!("context.proxy_error_code", String),
            &response_flags(flags),
        );
    }
    if let Some(tls) = &c.tls_properties {
        let principal = tls.peer_certificate_properties.as_ref().and_then(|p| {
            p.subject_alt_name.iter().find_map(|s| match &s.san {
                Some(San::Uri(u)) => Some(u.clone()),
                _ => None,
            })
        });
        set(
            bag,
            attr!("connection.mtls", Bool),
            Value::Bool(principal.is_some()),
        );
        if let Some(p) = principal {
            set_str(bag, attr!("source.principal", String), &p);
        }
        set_str(
            bag,
            attr!("connection.requested_server_name", String),
            &tls.tls_sni_hostname,
        );
    }
    // Istio cluster names: direction|port|subset|host.
    let mut parts = c.upstream_cluster.split('|');
    if let (Some(_), Some(_), Some(_), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        set_str(bag, attr!("destination.service.host", String), host);
        let mut labels = host.split('.');
        if let Some(name) = labels.next() {
            set_str(bag, attr!("destination.service.name", String), name);
        }
        if let Some(ns) = labels.next() {
            set_str(bag, attr!("destination.service.namespace", String), ns);
        }
    }
}

fn address(bag: &mut Bag, side: &PeerAttrs, a: Option<&Address>) {
    if let Some(address::Address::SocketAddress(sa)) = a.and_then(|a| a.address.as_ref()) {
        if let Ok(ip) = sa.address.parse() {
            set(bag, side.ip, Value::Ip(ip));
        }
        if let Some(PortSpecifier::PortValue(port)) = sa.port_specifier {
            set_int(bag, side.port, u64::from(port));
        }
    }
}

fn http_bag(e: &HttpAccessLogEntry, r: &Reporter) -> Bag {
    let mut bag = Bag::new();
    let c = e.common_properties.clone().unwrap_or_default();
    common(&mut bag, &c, r);
    let mut protocol = match e.protocol_version {
        3 | 4 => "http2", // HTTP2, HTTP3
        _ => "http",
    };
    if let Some(req) = &e.request {
        if let Ok(m) = RequestMethod::try_from(req.request_method)
            && m != RequestMethod::MethodUnspecified
        {
            set_str(&mut bag, attr!("request.method", String), m.as_str_name());
        }
        set_str(&mut bag, attr!("request.scheme", String), &req.scheme);
        set_str(&mut bag, attr!("request.host", String), &req.authority);
        set_str(&mut bag, attr!("request.path", String), &req.path);
        set_str(
            &mut bag,
            attr!("request.url_path", String),
            req.path.split('?').next().unwrap_or_default(),
        );
        set_str(
            &mut bag,
            attr!("request.useragent", String),
            &req.user_agent,
        );
        set_str(&mut bag, attr!("request.id", String), &req.request_id);
        set_int(
            &mut bag,
            attr!("request.size", Int64),
            req.request_body_bytes,
        );
        set_int(
            &mut bag,
            attr!("request.total_size", Int64),
            req.request_headers_bytes + req.request_body_bytes,
        );
        let headers: HashMap<String, String> = req
            .request_headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        if headers
            .get("content-type")
            .is_some_and(|ct| ct.starts_with("application/grpc"))
        {
            protocol = "grpc";
        }
        if !headers.is_empty() {
            set(
                &mut bag,
                attr!("request.headers", StringMap),
                Value::StringMap(headers),
            );
        }
    }
    set_str(&mut bag, attr!("request.protocol", String), protocol);
    set_str(
        &mut bag,
        attr!("context.protocol", String),
        if protocol == "grpc" { "grpc" } else { "http" },
    );
    if let Some(resp) = &e.response {
        if let Some(code) = resp.response_code {
            set_int(
                &mut bag,
                attr!("response.code", Int64),
                u64::from(code.value),
            );
        }
        set_int(
            &mut bag,
            attr!("response.size", Int64),
            resp.response_body_bytes,
        );
        set_int(
            &mut bag,
            attr!("response.total_size", Int64),
            resp.response_headers_bytes + resp.response_body_bytes,
        );
        let grpc_status = resp
            .response_trailers
            .get("grpc-status")
            .or_else(|| resp.response_headers.get("grpc-status"));
        if let Some(s) = grpc_status {
            set_str(&mut bag, attr!("response.grpc_status", String), s);
        }
        if !resp.response_headers.is_empty() {
            let h = resp
                .response_headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect();
            set(
                &mut bag,
                attr!("response.headers", StringMap),
                Value::StringMap(h),
            );
        }
    }
    if let Some(d) = &c.time_to_last_downstream_tx_byte {
        set(
            &mut bag,
            attr!("response.duration", Duration),
            Value::Duration(Span {
                seconds: d.seconds,
                nanos: d.nanos,
            }),
        );
        if let Some(t) = &c.start_time {
            let total = i64::from(t.nanos) + i64::from(d.nanos);
            let time = Time {
                seconds: t.seconds + d.seconds + total.div_euclid(1_000_000_000),
                nanos: i32::try_from(total.rem_euclid(1_000_000_000)).unwrap_or(0),
            };
            set(
                &mut bag,
                attr!("response.time", Timestamp),
                Value::Timestamp(time),
            );
        }
    }
    bag
}

fn tcp_bag(e: &TcpAccessLogEntry, r: &Reporter) -> Bag {
    let mut bag = Bag::new();
    let c = e.common_properties.clone().unwrap_or_default();
    common(&mut bag, &c, r);
    set_str(&mut bag, attr!("context.protocol", String), "tcp");
    let event = match AccessLogType::try_from(c.access_log_type) {
        Ok(AccessLogType::TcpUpstreamConnected | AccessLogType::TcpConnectionStart) => "open",
        Ok(AccessLogType::TcpPeriodic) => "continue",
        _ => "close",
    };
    set_str(&mut bag, attr!("connection.event", String), event);
    if !c.stream_id.is_empty() {
        set_str(&mut bag, attr!("connection.id", String), &c.stream_id);
    }
    if let Some(p) = &e.connection_properties {
        set_int(
            &mut bag,
            attr!("connection.received.bytes", Int64),
            p.received_bytes,
        );
        set_int(
            &mut bag,
            attr!("connection.sent.bytes", Int64),
            p.sent_bytes,
        );
    }
    if let Some(d) = &c.duration {
        set(
            &mut bag,
            attr!("connection.duration", Duration),
            Value::Duration(Span {
                seconds: d.seconds,
                nanos: d.nanos,
            }),
        );
    }
    bag
}

/// Envoy's short names of the flags that are set (`%RESPONSE_FLAGS%`), comma-separated; `-` for none.
pub fn response_flags(f: &ResponseFlags) -> String {
    let named = [
        (f.failed_local_healthcheck, "LH"),
        (f.no_healthy_upstream, "UH"),
        (f.upstream_request_timeout, "UT"),
        (f.local_reset, "LR"),
        (f.upstream_remote_reset, "UR"),
        (f.upstream_connection_failure, "UF"),
        (f.upstream_connection_termination, "UC"),
        (f.upstream_overflow, "UO"),
        (f.no_route_found, "NR"),
        (f.delay_injected, "DI"),
        (f.fault_injected, "FI"),
        (f.rate_limited, "RL"),
        (f.unauthorized_details.is_some(), "UAEX"),
        (f.rate_limit_service_error, "RLSE"),
        (f.downstream_connection_termination, "DC"),
        (f.upstream_retry_limit_exceeded, "URX"),
        (f.stream_idle_timeout, "SI"),
        (f.invalid_envoy_request_headers, "IH"),
        (f.downstream_protocol_error, "DPE"),
        (f.upstream_max_stream_duration_reached, "UMSDR"),
        (f.response_from_cache_filter, "RFCF"),
        (f.no_filter_config_found, "NFCF"),
        (f.duration_timeout, "DT"),
        (f.upstream_protocol_error, "UPE"),
        (f.no_cluster_found, "NC"),
        (f.overload_manager, "OM"),
    ];
    let set: Vec<&str> = named
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "-".to_string()
    } else {
        set.join(",")
    }
}
