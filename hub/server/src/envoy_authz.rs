//! `envoy.service.auth.v3.Authorization`: Envoy's ext_authz filter, mapped into the same attribute bag and the
//! same policies and rate limits as the native Check.
//!
//! Mapping: source/destination peer address → `*.ip`, `*.port`; peer principal, labels → `*.principal`,
//! `*.labels`; HTTP request → `request.headers` (lower-case), `request.path` (with query), `request.url_path`,
//! `request.query_params`, `request.host`, `request.method`, `request.scheme`, `request.id`, `request.size`,
//! `request.protocol`, `request.useragent`, `request.time`; TLS SNI → `connection.requested_server_name`.
//! Route `context_extensions` whose keys are string attributes (e.g. `destination.service.name`) set them,
//! which is how an Envoy route tells the hub which service it fronts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hub_policy::{Decision, HeaderAction, HeaderTarget};
use sextant_attributes::{AttrType, Bag, DESTINATION, PeerAttrs, SOURCE, Time, Value, attr};
use sextant_proto::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use sextant_proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    authorization_server::Authorization, check_response::HttpResponse,
};
use sextant_proto::envoy::r#type::v3::HttpStatus;
use sextant_proto::google::rpc::Status as RpcStatus;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::fill::{set, set_str};
use crate::state::HubState;

/// The ext_authz service.
pub struct AuthzService {
    state: Arc<HubState>,
}

impl AuthzService {
    /// A service deciding with `state`'s snapshot.
    pub fn new(state: Arc<HubState>) -> Self {
        AuthzService { state }
    }
}

/// An ext_authz request that decodes but lacks what the hub decides on. Envoy's HTTP filter always sends
/// `attributes.request.http` and both peers; its network (TCP) filter sends the peers and no `request`.
#[derive(Debug, PartialEq, thiserror::Error)]
enum InvalidRequest {
    /// No `attributes` at all.
    #[error("CheckRequest.attributes is missing: the hub decides on the request's attributes")]
    NoAttributes,
    /// A `request` without its HTTP part.
    #[error(
        "CheckRequest.attributes.request.http is missing (Envoy's HTTP ext_authz filter always sends it)"
    )]
    NoHttp,
    /// Neither an HTTP request nor the connection's peers.
    #[error(
        "CheckRequest.attributes has no request.http and no source or destination peer: nothing to decide on"
    )]
    Empty,
}

/// Checks that `req` carries what a decision needs.
fn validate(req: &CheckRequest) -> Result<(), InvalidRequest> {
    let attributes = req
        .attributes
        .as_ref()
        .ok_or(InvalidRequest::NoAttributes)?;
    match &attributes.request {
        Some(r) if r.http.is_none() => Err(InvalidRequest::NoHttp),
        // A network filter's check: decided on the peers.
        None if attributes.source.is_none() && attributes.destination.is_none() => {
            Err(InvalidRequest::Empty)
        }
        _ => Ok(()),
    }
}

fn peer(
    bag: &mut Bag,
    side: &PeerAttrs,
    p: &sextant_proto::envoy::service::auth::v3::attribute_context::Peer,
) {
    use sextant_proto::envoy::config::core::v3::{address::Address, socket_address::PortSpecifier};
    if let Some(Address::SocketAddress(sa)) = p.address.as_ref().and_then(|a| a.address.as_ref()) {
        if let Ok(ip) = sa.address.parse() {
            set(bag, side.ip, Value::Ip(ip));
        }
        if let Some(PortSpecifier::PortValue(port)) = sa.port_specifier {
            set(bag, side.port, Value::Int64(i64::from(port)));
        }
    }
    set_str(bag, side.principal, &p.principal);
    if !p.labels.is_empty() {
        set(bag, side.labels, Value::StringMap(p.labels.clone()));
    }
}

/// Builds the attribute bag of an ext_authz request.
pub fn bag_of(ctx: AttributeContext) -> Bag {
    let mut bag = Bag::new();
    if let Some(s) = &ctx.source {
        peer(&mut bag, &SOURCE, s);
    }
    if let Some(d) = &ctx.destination {
        peer(&mut bag, &DESTINATION, d);
    }
    if let Some(tls) = &ctx.tls_session {
        set_str(
            &mut bag,
            attr!("connection.requested_server_name", String),
            &tls.sni,
        );
    }
    if let Some(req) = ctx.request {
        if let Some(t) = req.time {
            set(
                &mut bag,
                attr!("request.time", Timestamp),
                Value::Timestamp(Time {
                    seconds: t.seconds,
                    nanos: t.nanos,
                }),
            );
        }
        if let Some(http) = req.http {
            let mut headers: HashMap<String, String> = http.headers;
            if let Some(map) = http.header_map {
                for h in map.headers {
                    let v = if h.raw_value.is_empty() {
                        h.value
                    } else {
                        String::from_utf8_lossy(&h.raw_value).into_owned()
                    };
                    headers
                        .entry(h.key)
                        .and_modify(|e| {
                            e.push(',');
                            e.push_str(&v)
                        })
                        .or_insert(v);
                }
            }
            let (url_path, query) = http.path.split_once('?').unwrap_or((&http.path, ""));
            set_str(&mut bag, attr!("request.url_path", String), url_path);
            if !query.is_empty() {
                let mut params = HashMap::new();
                for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                    params
                        .entry(k.into_owned())
                        .or_insert_with(|| v.into_owned());
                }
                set(
                    &mut bag,
                    attr!("request.query_params", StringMap),
                    Value::StringMap(params),
                );
            }
            set_str(&mut bag, attr!("request.path", String), &http.path);
            set_str(&mut bag, attr!("request.host", String), &http.host);
            set_str(&mut bag, attr!("request.method", String), &http.method);
            set_str(&mut bag, attr!("request.scheme", String), &http.scheme);
            set_str(&mut bag, attr!("request.id", String), &http.id);
            if http.size >= 0 {
                set(
                    &mut bag,
                    attr!("request.size", Int64),
                    Value::Int64(http.size),
                );
            }
            let grpc = headers
                .get("content-type")
                .is_some_and(|c| c.starts_with("application/grpc"));
            let protocol = if grpc {
                "grpc"
            } else if http.protocol.starts_with("HTTP/2") || http.protocol.starts_with("HTTP/3") {
                "http2"
            } else {
                "http"
            };
            set_str(&mut bag, attr!("request.protocol", String), protocol);
            set_str(
                &mut bag,
                attr!("context.protocol", String),
                if grpc { "grpc" } else { "http" },
            );
            if let Some(ua) = headers.get("user-agent") {
                set_str(&mut bag, attr!("request.useragent", String), ua);
            }
            set(
                &mut bag,
                attr!("request.headers", StringMap),
                Value::StringMap(headers),
            );
        }
    }
    for (k, v) in ctx.context_extensions {
        if let Some(id) = sextant_attributes::lookup(&k).filter(|id| id.ty() == AttrType::String) {
            set(&mut bag, id, Value::String(v));
        }
    }
    bag
}

fn header(name: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

fn append_action(a: HeaderAction) -> HeaderAppendAction {
    match a {
        HeaderAction::Append => HeaderAppendAction::AppendIfExistsOrAdd,
        _ => HeaderAppendAction::OverwriteIfExistsOrAdd,
    }
}

/// The ext_authz response for a decision.
pub fn to_authz_response(d: &Decision) -> CheckResponse {
    let status = Some(RpcStatus {
        code: d.code,
        message: d.message.clone(),
        details: Vec::new(),
    });
    let http = if d.allowed() {
        let mut ok = OkHttpResponse::default();
        for h in &d.headers {
            match (h.target, h.action) {
                (HeaderTarget::Request, HeaderAction::Remove) => {
                    ok.headers_to_remove.push(h.name.clone())
                }
                (HeaderTarget::Request, a) => {
                    ok.headers.push(header(&h.name, &h.value, append_action(a)))
                }
                (HeaderTarget::Response, HeaderAction::Remove) => {}
                (HeaderTarget::Response, a) => {
                    ok.response_headers_to_add
                        .push(header(&h.name, &h.value, append_action(a)))
                }
            }
        }
        HttpResponse::OkResponse(ok)
    } else {
        let mut headers: Vec<HeaderValueOption> = d
            .headers
            .iter()
            .filter(|h| h.action != HeaderAction::Remove)
            .map(|h| header(&h.name, &h.value, append_action(h.action)))
            .collect();
        if let Some(wait) = d.retry_after {
            headers.push(header(
                "retry-after",
                &crate::native::retry_after_secs(wait),
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            ));
        }
        headers.push(header(
            "content-type",
            "text/plain",
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
        HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(d.http_status),
            }),
            headers,
            body: d.message.clone(),
        })
    };
    CheckResponse {
        status,
        http_response: Some(http),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let span = crate::trace::check(
            "envoy_ext_authz",
            "envoy.service.auth.v3.Authorization/Check",
            request.metadata(),
        );
        let result = self.check_in(request, &span).instrument(span.clone()).await;
        crate::trace::answered(&span, &result);
        result
    }
}

impl AuthzService {
    /// A Check, inside its span.
    async fn check_in(
        &self,
        request: Request<CheckRequest>,
        span: &tracing::Span,
    ) -> Result<Response<CheckResponse>, Status> {
        let start = Instant::now();
        let caller = crate::caller::identity_of(request.extensions());
        let mut request = request.into_inner();
        if let Err(e) = validate(&request) {
            self.state.metrics.rejected("envoy_ext_authz", "invalid");
            return Err(Status::invalid_argument(e.to_string()));
        }
        let Some(snap) = self.state.snapshot() else {
            self.state
                .metrics
                .rejected("envoy_ext_authz", "unavailable");
            return Err(Status::unavailable("no valid configuration is loaded yet"));
        };
        let mut bag = bag_of(request.attributes.take().unwrap_or_default());
        if let Some(identity) = &caller {
            let (mode, metrics) = (self.state.caller_identity(), &self.state.metrics);
            crate::caller::apply(&mut bag, identity, mode, "ext_authz", metrics)
                .inspect_err(|_| metrics.rejected("envoy_ext_authz", "denied_caller"))?;
        }
        let decision = hub_policy::check_with(&snap, &bag, &[], &self.state.telemetry).await;
        self.state
            .metrics
            .decision("envoy_ext_authz", &decision, start.elapsed().as_secs_f64());
        crate::trace::decided(span, &decision);
        self.state.decided(&bag, &decision);
        Ok(Response::new(to_authz_response(&decision)))
    }
}
