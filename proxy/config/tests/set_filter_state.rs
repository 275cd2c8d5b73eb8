//! The set-filter-state HTTP filter as pilot sends it for mesh mTLS (Istio's ALPN for HTTP): an empty
//! configuration in the connection manager and the ALPN list as a route's per-route configuration, decoded;
//! anything the proxy does not implement refused naming the field.

mod common;

use common::{any, listener_with, manager};
use proxy_config::filter_state::{APPLICATION_PROTOCOLS, SET_FILTER_STATE, SetFilterState};
use proxy_config::{listener, route};
use sextant_proto::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use sextant_proto::envoy::config::route::v3 as rds;
use sextant_proto::envoy::extensions::filters::common::set_filter_state::v3::{
    FilterStateValue, filter_state_value,
};
use sextant_proto::envoy::extensions::filters::http::set_filter_state::v3::Config;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::google::protobuf::Any;

/// Pilot's value: `text` for `envoy.network.application_protocols`, shared with the upstream once.
fn value(text: &str) -> FilterStateValue {
    FilterStateValue {
        key: Some(filter_state_value::Key::ObjectKey(
            APPLICATION_PROTOCOLS.into(),
        )),
        value: Some(filter_state_value::Value::FormatString(
            SubstitutionFormatString {
                format: Some(substitution_format_string::Format::TextFormatSource(
                    DataSource {
                        specifier: Some(data_source::Specifier::InlineString(text.into())),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
        )),
        shared_with_upstream: filter_state_value::SharedWithUpstream::Once as i32,
        ..Default::default()
    }
}

fn config(values: Vec<FilterStateValue>) -> Any {
    any(&Config {
        on_request_headers: values,
        ..Default::default()
    })
}

/// The connection manager with the filter (configured with `values`) before the router.
fn manager_with(values: Vec<FilterStateValue>) -> hcm::HttpConnectionManager {
    let mut m = manager();
    m.http_filters.insert(
        0,
        hcm::HttpFilter {
            name: SET_FILTER_STATE.into(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(config(values))),
            ..Default::default()
        },
    );
    m
}

/// A route configuration whose one route forwards to `cluster` with `per_route` as its set-filter-state
/// configuration.
fn routes(per_route: Any) -> rds::RouteConfiguration {
    rds::RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![rds::VirtualHost {
            name: "web".into(),
            domains: vec!["*".into()],
            routes: vec![rds::Route {
                r#match: Some(rds::RouteMatch {
                    path_specifier: Some(rds::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(rds::route::Action::Route(rds::RouteAction {
                    cluster_specifier: Some(rds::route_action::ClusterSpecifier::Cluster(
                        "outbound|9080||web".into(),
                    )),
                    ..Default::default()
                })),
                typed_per_filter_config: [(SET_FILTER_STATE.to_string(), per_route)].into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn forward(r: &route::RouteConfig) -> &route::Forward {
    match &r.virtual_hosts[0].routes[0].action {
        route::Action::Forward(f) => f,
        other => panic!("{other:?}"),
    }
}

fn http(l: &listener::Listener) -> &listener::HttpManager {
    match &l.filter_chains[0].network {
        listener::Network::Http(h) => h,
        other => panic!("{other:?}"),
    }
}

#[test]
fn pilots_alpn_override_decodes_in_the_manager_and_per_route() {
    let l = listener::decode(&any(&listener_with(&manager_with(Vec::new())))).expect("supported");
    assert_eq!(http(&l).filter_state, Some(SetFilterState::default()));
    let without = listener::decode(&any(&listener_with(&manager()))).expect("supported");
    assert_eq!(http(&without).filter_state, None);

    let r = route::decode(&any(&routes(config(vec![value(
        "istio-http/1.1,istio,http/1.1",
    )]))))
    .expect("supported");
    let values = *forward(&r).filter_state.clone().expect("per-route values");
    assert_eq!(
        values.application_protocols.as_deref(),
        Some(
            &[
                "istio-http/1.1".to_string(),
                "istio".into(),
                "http/1.1".into()
            ][..]
        )
    );
    // The route's values come after the listener's: the route's list wins, the listener's stays otherwise.
    let listener_level = SetFilterState {
        application_protocols: Some(vec!["a".to_string()].into()),
    };
    assert_eq!(listener_level.then(Some(&values)), values);
    assert_eq!(listener_level.then(None), listener_level);
    assert_eq!(
        listener_level.then(Some(&SetFilterState::default())),
        listener_level
    );
}

#[test]
fn what_the_proxy_cannot_honour_is_refused_by_path() {
    let at = "virtual_hosts[0].routes[0].typed_per_filter_config[\"envoy.filters.http.set_filter_state\"]";
    let refused =
        |v: FilterStateValue| route::decode(&any(&routes(config(vec![v])))).expect_err("refused");

    let mut other_key = value("x");
    other_key.key = Some(filter_state_value::Key::ObjectKey(
        "envoy.network.upstream_server_name".into(),
    ));
    let e = refused(other_key);
    assert_eq!(
        e.path,
        format!("{at}.on_request_headers[0].object_key"),
        "{e}"
    );
    assert!(e.reason.contains("not implemented"), "{e}");

    let mut kept = value("istio-h2");
    kept.shared_with_upstream = filter_state_value::SharedWithUpstream::None as i32;
    let e = refused(kept);
    assert_eq!(
        e.path,
        format!("{at}.on_request_headers[0].shared_with_upstream"),
        "{e}"
    );

    let e = refused(value("%REQ(x-alpn)%"));
    assert!(e.path.ends_with("inline_string"), "{e}");
    assert!(e.reason.contains("command operators"), "{e}");

    let e = refused(value("h2,,http/1.1"));
    assert!(e.reason.contains("comma-separated"), "{e}");

    // Fields outside the subset, by name.
    let mut read_only = value("h2");
    #[expect(
        deprecated,
        reason = "the field Envoy deprecated is refused, which is what is checked"
    )]
    {
        read_only.read_only = true;
    }
    let e = refused(read_only);
    assert!(e.path.ends_with("read_only"), "{e}");
    let mut skip = value("h2");
    skip.skip_if_empty = true;
    let e = refused(skip);
    assert!(e.path.ends_with("skip_if_empty"), "{e}");
    let e = route::decode(&any(&routes(any(&Config {
        on_request_headers: vec![value("h2")],
        clear_route_cache: true,
    }))))
    .expect_err("clear_route_cache");
    assert!(e.path.ends_with("clear_route_cache"), "{e}");

    // The filter's name over another configuration.
    let e = route::decode(&any(&routes(any(&manager())))).expect_err("wrong type");
    assert!(e.reason.contains("set_filter_state.v3.Config"), "{e}");
    // Twice in one manager.
    let mut twice = manager_with(Vec::new());
    twice.http_filters.insert(0, twice.http_filters[0].clone());
    let e = listener::decode(&any(&listener_with(&twice))).expect_err("twice");
    assert!(e.reason.contains("comes once"), "{e}");
}
