//! The supported subset of Envoy's API, as fields: every field set anywhere in a resource (inside packed `Any`
//! payloads too) must be one the proxy implements, or the resource is refused naming the field. Checking the
//! decoded descriptor tree, rather than each typed struct by hand, means a field added to Envoy's API later is
//! refused without anyone remembering to add a check.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use prost_reflect::{DynamicMessage, ReflectMessage, Value};
use sextant_proto::google::protobuf::Any;

/// Messages whose every field is understood wherever they appear (well-known wrappers and plain values).
const LEAVES: &[&str] = &[
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
    "google.protobuf.UInt32Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.BoolValue",
    "google.protobuf.DoubleValue",
    "google.protobuf.StringValue",
    "envoy.type.v3.Percent",
    "envoy.type.v3.FractionalPercent",
];

/// Per message, the fields the proxy implements. A message reached but not listed is refused as a whole.
const FIELDS: &[(&str, &[&str])] = &[
    // Listeners
    (
        "envoy.config.listener.v3.Listener",
        &[
            "name",
            "address",
            "filter_chains",
            "default_filter_chain",
            "bind_to_port",
            "traffic_direction",
            "use_original_dst",
            "listener_filters",
            "continue_on_listener_filters_timeout",
            "listener_filters_timeout",
        ],
    ),
    ("envoy.config.core.v3.Address", &["socket_address"]),
    (
        "envoy.config.core.v3.SocketAddress",
        &["address", "port_value"],
    ),
    (
        "envoy.config.listener.v3.FilterChain",
        &["name", "filter_chain_match", "filters", "transport_socket"],
    ),
    (
        "envoy.config.listener.v3.FilterChainMatch",
        &[
            "destination_port",
            "server_names",
            "transport_protocol",
            "application_protocols",
        ],
    ),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    (
        "envoy.config.listener.v3.ListenerFilter",
        &["name", "typed_config", "filter_disabled"],
    ),
    (
        "envoy.config.listener.v3.ListenerFilterChainMatchPredicate",
        &[
            "or_match",
            "and_match",
            "not_match",
            "any_match",
            "destination_port_range",
        ],
    ),
    (
        "envoy.config.listener.v3.ListenerFilterChainMatchPredicate.MatchSet",
        &["rules"],
    ),
    (
        "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
        &[],
    ),
    (
        "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
        &[],
    ),
    (
        "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
        &[],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        &[
            "stat_prefix",
            "rds",
            "http_filters",
            "use_remote_address",
            "strip_any_host_port",
        ],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.Rds",
        &["config_source", "route_config_name"],
    ),
    (
        "envoy.config.core.v3.ConfigSource",
        &["ads", "resource_api_version"],
    ),
    ("envoy.config.core.v3.AggregatedConfigSource", &[]),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter",
        &["name", "typed_config"],
    ),
    ("envoy.extensions.filters.http.router.v3.Router", &[]),
    // Sextant's hub filter: every field (the proxy is its only reader).
    (
        "sextant.filters.http.mixer.v1.Mixer",
        &[
            "cluster",
            "attributes",
            "check",
            "report",
            "check_timeout",
            "failure_policy",
            "stale_ttl",
            "report_batch_entries",
            "report_flush_interval",
            "report_buffer_entries",
        ],
    ),
    ("sextant.mixer.v1.Attributes", &["values"]),
    (
        "sextant.mixer.v1.AttributeValue",
        &[
            "string_value",
            "int64_value",
            "double_value",
            "bool_value",
            "bytes_value",
            "timestamp_value",
            "duration_value",
            "string_map_value",
        ],
    ),
    ("sextant.mixer.v1.StringMap", &["entries"]),
    ("envoy.extensions.filters.http.cors.v3.Cors", &[]),
    (
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        &["delay", "abort"],
    ),
    (
        "envoy.extensions.filters.common.fault.v3.FaultDelay",
        &["fixed_delay", "percentage"],
    ),
    (
        "envoy.extensions.filters.http.fault.v3.FaultAbort",
        &["http_status", "percentage"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        &["stat_prefix", "cluster", "weighted_clusters"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster",
        &["clusters"],
    ),
    (
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight",
        &["name", "weight"],
    ),
    // Network and HTTP RBAC (the subset pilot emits for AuthorizationPolicy; `header` and `url_path` are
    // refused by value in a network filter)
    (
        "envoy.extensions.filters.http.rbac.v3.RBAC",
        &["rules", "rules_stat_prefix"],
    ),
    ("envoy.type.matcher.v3.PathMatcher", &["path"]),
    (
        "envoy.extensions.filters.network.rbac.v3.RBAC",
        &["stat_prefix", "rules", "enforcement_type"],
    ),
    ("envoy.config.rbac.v3.RBAC", &["action", "policies"]),
    (
        "envoy.config.rbac.v3.Policy",
        &["permissions", "principals"],
    ),
    (
        "envoy.config.rbac.v3.Permission",
        &[
            "any",
            "destination_port",
            "destination_port_range",
            "destination_ip",
            "requested_server_name",
            "header",
            "url_path",
            "and_rules",
            "or_rules",
            "not_rule",
        ],
    ),
    ("envoy.config.rbac.v3.Permission.Set", &["rules"]),
    (
        "envoy.config.rbac.v3.Principal",
        &[
            "any",
            "authenticated",
            "source_ip",
            "direct_remote_ip",
            "remote_ip",
            "header",
            "url_path",
            "and_ids",
            "or_ids",
            "not_id",
        ],
    ),
    ("envoy.config.rbac.v3.Principal.Set", &["ids"]),
    (
        "envoy.config.rbac.v3.Principal.Authenticated",
        &["principal_name"],
    ),
    (
        "envoy.config.core.v3.CidrRange",
        &["address_prefix", "prefix_len"],
    ),
    ("envoy.type.v3.Int32Range", &["start", "end"]),
    // Routes
    (
        "envoy.config.route.v3.RouteConfiguration",
        &["name", "virtual_hosts", "validate_clusters"],
    ),
    (
        "envoy.config.route.v3.VirtualHost",
        &[
            "name",
            "domains",
            "routes",
            "include_request_attempt_count",
            "require_tls",
        ],
    ),
    (
        "envoy.config.route.v3.Route",
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "typed_per_filter_config",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
        ],
    ),
    (
        "envoy.config.route.v3.RouteMatch",
        &[
            "prefix",
            "path",
            "safe_regex",
            "case_sensitive",
            "headers",
            "query_parameters",
        ],
    ),
    (
        "envoy.config.route.v3.HeaderMatcher",
        &["name", "string_match", "present_match", "invert_match"],
    ),
    (
        "envoy.config.route.v3.QueryParameterMatcher",
        &["name", "string_match", "present_match"],
    ),
    (
        "envoy.type.matcher.v3.StringMatcher",
        &[
            "exact",
            "prefix",
            "suffix",
            "contains",
            "safe_regex",
            "ignore_case",
        ],
    ),
    ("envoy.type.matcher.v3.RegexMatcher", &["regex"]),
    (
        "envoy.config.route.v3.RouteAction",
        &[
            "cluster",
            "weighted_clusters",
            "prefix_rewrite",
            "host_rewrite_literal",
            "timeout",
            "retry_policy",
            "request_mirror_policies",
            "hash_policy",
        ],
    ),
    (
        "envoy.config.route.v3.WeightedCluster",
        &["clusters", "total_weight"],
    ),
    (
        "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        &[
            "name",
            "weight",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy",
        &[
            "retry_on",
            "num_retries",
            "per_try_timeout",
            "retriable_status_codes",
            "retry_host_predicate",
            "host_selection_retry_max_attempts",
            "retry_back_off",
        ],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryHostPredicate",
        &["name", "typed_config"],
    ),
    (
        "envoy.config.route.v3.RetryPolicy.RetryBackOff",
        &["base_interval", "max_interval"],
    ),
    (
        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
        &[],
    ),
    (
        "envoy.config.route.v3.RouteAction.RequestMirrorPolicy",
        &["cluster", "runtime_fraction"],
    ),
    (
        "envoy.config.core.v3.RuntimeFractionalPercent",
        &["default_value", "runtime_key"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy",
        &[
            "header",
            "cookie",
            "connection_properties",
            "query_parameter",
            "terminal",
        ],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Header",
        &["header_name"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.Cookie",
        &["name", "path", "ttl"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties",
        &["source_ip"],
    ),
    (
        "envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter",
        &["name"],
    ),
    (
        "envoy.config.route.v3.RedirectAction",
        &[
            "host_redirect",
            "port_redirect",
            "response_code",
            "path_redirect",
            "scheme_redirect",
            "https_redirect",
            "prefix_rewrite",
            "strip_query",
        ],
    ),
    (
        "envoy.config.route.v3.DirectResponseAction",
        &["status", "body"],
    ),
    (
        "envoy.config.core.v3.DataSource",
        &["inline_string", "inline_bytes", "filename"],
    ),
    (
        "envoy.config.core.v3.HeaderValueOption",
        &["header", "append_action"],
    ),
    ("envoy.config.core.v3.HeaderValue", &["key", "value"]),
    (
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        &[
            "allow_origin_string_match",
            "allow_methods",
            "allow_headers",
            "expose_headers",
            "max_age",
            "allow_credentials",
        ],
    ),
    // Clusters
    (
        "envoy.config.cluster.v3.Cluster",
        &[
            "name",
            "type",
            "eds_cluster_config",
            "connect_timeout",
            "lb_policy",
            "least_request_lb_config",
            "ring_hash_lb_config",
            "maglev_lb_config",
            "outlier_detection",
            "common_lb_config",
            "circuit_breakers",
            "typed_extension_protocol_options",
            "load_assignment",
            "transport_socket",
            "upstream_bind_config",
        ],
    ),
    ("envoy.config.core.v3.BindConfig", &["source_address"]),
    (
        "envoy.config.cluster.v3.Cluster.EdsClusterConfig",
        &["eds_config", "service_name"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.LeastRequestLbConfig",
        &["choice_count"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.RingHashLbConfig",
        &["minimum_ring_size", "maximum_ring_size", "hash_function"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.MaglevLbConfig",
        &["table_size"],
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig",
        &["healthy_panic_threshold"],
    ),
    (
        "envoy.config.cluster.v3.OutlierDetection",
        &[
            "consecutive_5xx",
            "enforcing_consecutive_5xx",
            "consecutive_gateway_failure",
            "enforcing_consecutive_gateway_failure",
            "interval",
            "base_ejection_time",
            "max_ejection_time",
            "max_ejection_percent",
            "enforcing_success_rate",
        ],
    ),
    ("envoy.config.cluster.v3.CircuitBreakers", &["thresholds"]),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        &[
            "priority",
            "max_connections",
            "max_pending_requests",
            "max_requests",
            "max_retries",
            "track_remaining",
        ],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        &["explicit_http_config", "common_http_protocol_options"],
    ),
    (
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig",
        &["http_protocol_options", "http2_protocol_options"],
    ),
    ("envoy.config.core.v3.Http1ProtocolOptions", &[]),
    ("envoy.config.core.v3.Http2ProtocolOptions", &[]),
    (
        "envoy.config.core.v3.HttpProtocolOptions",
        &[
            "idle_timeout",
            "max_requests_per_connection",
            "max_connection_duration",
        ],
    ),
    // Endpoints
    (
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        &["cluster_name", "endpoints"],
    ),
    (
        "envoy.config.endpoint.v3.LocalityLbEndpoints",
        &["locality", "load_balancing_weight", "lb_endpoints"],
    ),
    (
        "envoy.config.core.v3.Locality",
        &["region", "zone", "sub_zone"],
    ),
    (
        "envoy.config.endpoint.v3.LbEndpoint",
        &["endpoint", "load_balancing_weight", "health_status"],
    ),
    ("envoy.config.endpoint.v3.Endpoint", &["address"]),
    // Secrets
    (
        "envoy.extensions.transport_sockets.tls.v3.Secret",
        &["name", "tls_certificate", "validation_context"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.TlsCertificate",
        &["certificate_chain", "private_key"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext",
        &["trusted_ca", "match_typed_subject_alt_names"],
    ),
    (
        "envoy.config.core.v3.TransportSocket",
        &["name", "typed_config"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        &["common_tls_context", "sni"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        &["common_tls_context", "require_client_certificate"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext",
        &[
            "tls_certificates",
            "tls_certificate_sds_secret_configs",
            "validation_context",
            "combined_validation_context",
            "validation_context_sds_secret_config",
            "alpn_protocols",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.CommonTlsContext.CombinedCertificateValidationContext",
        &[
            "default_validation_context",
            "validation_context_sds_secret_config",
        ],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig",
        &["name", "sds_config"],
    ),
    (
        "envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher",
        &["san_type", "matcher"],
    ),
];

static ALLOWED: LazyLock<HashMap<&'static str, HashSet<&'static str>>> = LazyLock::new(|| {
    FIELDS
        .iter()
        .map(|(message, fields)| (*message, fields.iter().copied().collect()))
        .collect()
});

/// A field or message outside the supported subset: where it is (a path of field names from the resource)
/// and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The path to it, e.g. `filter_chains[0].filters[0].typed_config.codec_type`.
    pub path: String,
    /// What is not supported.
    pub reason: String,
}

/// Checks that every field set in `any` (a resource, or a packed payload) is in the supported subset.
pub fn check(any: &Any) -> Result<(), Unsupported> {
    let mut path = String::new();
    check_any(&any.type_url, &any.value, &mut path)
}

fn check_any(type_url: &str, value: &[u8], path: &mut String) -> Result<(), Unsupported> {
    let fail = |path: &str, reason: String| Unsupported {
        path: path.to_string(),
        reason,
    };
    let pool = sextant_proto::json::envoy_descriptors().map_err(|e| fail(path, e.to_string()))?;
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    if name == SET_FILTER_STATE_CONFIG {
        return check_set_filter_state(value, path);
    }
    let Some(descriptor) = pool.get_message_by_name(name) else {
        return Err(fail(path, format!("type {type_url} is not supported")));
    };
    let message = DynamicMessage::decode(descriptor, value)
        .map_err(|e| fail(path, format!("{name} does not decode: {e}")))?;
    check_message(&message, path)
}

fn check_message(message: &DynamicMessage, path: &mut String) -> Result<(), Unsupported> {
    let descriptor = message.descriptor();
    let name = descriptor.full_name();
    if let Some(unknown) = message.unknown_fields().next() {
        return Err(Unsupported {
            path: path.clone(),
            reason: format!(
                "{name} has field number {} that Envoy's v3 API does not define",
                unknown.number()
            ),
        });
    }
    if LEAVES.contains(&name) {
        return Ok(());
    }
    if name == "google.protobuf.Any" {
        let type_url = message.get_field_by_name("type_url");
        let value = message.get_field_by_name("value");
        let (Some(Value::String(type_url)), Some(Value::Bytes(value))) =
            (type_url.as_deref(), value.as_deref())
        else {
            return Err(Unsupported {
                path: path.clone(),
                reason: "malformed Any".into(),
            });
        };
        return check_any(type_url, value, path);
    }
    let Some(allowed) = ALLOWED.get(name) else {
        return Err(Unsupported {
            path: path.clone(),
            reason: format!("{name} is not supported"),
        });
    };
    for (field, value) in message.fields() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field.name());
        if !allowed.contains(field.name()) {
            return Err(Unsupported {
                path: path.clone(),
                reason: format!(
                    "field {name}.{} is not implemented by sextant proxy",
                    field.name()
                ),
            });
        }
        check_value(value, path)?;
        path.truncate(len);
    }
    Ok(())
}

fn check_value(value: &Value, path: &mut String) -> Result<(), Unsupported> {
    match value {
        Value::Message(m) => check_message(m, path),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let len = path.len();
                match key {
                    prost_reflect::MapKey::String(k) => path.push_str(&format!("[{k:?}]")),
                    other => path.push_str(&format!("[{other:?}]")),
                }
                check_value(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The set-filter-state filter's configuration, whose descriptors the embedded set (sextant-proto's
/// `ENVOY_PROTOS`) does not hold: checked against its prost type instead, with the same rule — only the
/// fields `filter_state.rs` implements (`on_request_headers[].object_key`, `factory_key`,
/// `shared_with_upstream`, `format_string.text_format_source`) may be set.
const SET_FILTER_STATE_CONFIG: &str = "envoy.extensions.filters.http.set_filter_state.v3.Config";

fn check_set_filter_state(value: &[u8], path: &mut String) -> Result<(), Unsupported> {
    use prost::Message;
    use sextant_proto::envoy::extensions::filters::http::set_filter_state::v3::Config;
    let fail = |at: &str, reason: String| Unsupported {
        path: if path.is_empty() {
            at.to_string()
        } else {
            format!("{path}.{at}")
        },
        reason,
    };
    let config = Config::decode(value).map_err(|e| {
        fail(
            "",
            format!("{SET_FILTER_STATE_CONFIG} does not decode: {e}"),
        )
    })?;
    // Protobuf encoders write known fields in field order; bytes prost does not write back were fields
    // Envoy's API does not define.
    if config.encode_to_vec() != value {
        return Err(fail(
            "",
            format!("{SET_FILTER_STATE_CONFIG} has fields Envoy's v3 API does not define"),
        ));
    }
    let not_implemented = |at: String, field: &str| {
        Err(fail(
            &at,
            format!("field {field} is not implemented by sextant proxy"),
        ))
    };
    if config.clear_route_cache {
        return not_implemented("clear_route_cache".into(), "Config.clear_route_cache");
    }
    for (i, v) in config.on_request_headers.iter().enumerate() {
        let at = |f: &str| format!("on_request_headers[{i}].{f}");
        #[expect(
            deprecated,
            reason = "refused: Envoy deprecated it and the proxy does not implement it"
        )]
        let read_only = v.read_only;
        if read_only {
            return not_implemented(at("read_only"), "FilterStateValue.read_only");
        }
        if v.skip_if_empty {
            return not_implemented(at("skip_if_empty"), "FilterStateValue.skip_if_empty");
        }
        use sextant_proto::envoy::extensions::filters::common::set_filter_state::v3::filter_state_value;
        let Some(filter_state_value::Value::FormatString(f)) = &v.value else {
            continue;
        };
        let set = [
            ("omit_empty_values", f.omit_empty_values),
            ("content_type", !f.content_type.is_empty()),
            ("formatters", !f.formatters.is_empty()),
            ("json_format_options", f.json_format_options.is_some()),
        ];
        if let Some((field, _)) = set.iter().find(|(_, set)| *set) {
            return not_implemented(
                at(&format!("format_string.{field}")),
                &format!("SubstitutionFormatString.{field}"),
            );
        }
    }
    Ok(())
}
