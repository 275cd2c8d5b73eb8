//! Listener filters (original destination, TLS and HTTP inspectors) and filter chain matches as Istio's
//! virtualInbound sends them: decoded, or refused naming the field.

mod common;

use std::time::Duration;

use common::{any, listener_with, manager};
use proxy_config::listener;
use sextant_proto::envoy::config::listener::v3 as lds;
use sextant_proto::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use sextant_proto::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use sextant_proto::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use sextant_proto::google::protobuf::{Any, Duration as PbDuration, UInt32Value};

fn filter(name: &str, config: Any) -> lds::ListenerFilter {
    lds::ListenerFilter {
        name: name.into(),
        config_type: Some(lds::listener_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

/// Istio's sniffing virtualInbound, cut down: per-port chains for HTTP (`http/1.1`, `h2c` over
/// `raw_buffer`) and for anything else on the port, and a default chain.
fn virtual_inbound() -> lds::Listener {
    let mut l = listener_with(&manager());
    l.name = "virtualInbound".into();
    l.listener_filters = vec![
        filter(listener::ORIGINAL_DST, any(&OriginalDst::default())),
        filter(listener::TLS_INSPECTOR, any(&TlsInspector::default())),
        filter(listener::HTTP_INSPECTOR, any(&HttpInspector::default())),
    ];
    l.continue_on_listener_filters_timeout = true;
    let http = l.filter_chains[0].clone();
    let mut tcp = l.filter_chains[0].clone();
    tcp.name = "0.0.0.0_9080_tcp".into();
    tcp.filter_chain_match = Some(lds::FilterChainMatch {
        destination_port: Some(UInt32Value { value: 9080 }),
        transport_protocol: "raw_buffer".into(),
        ..Default::default()
    });
    l.filter_chains = vec![
        lds::FilterChain {
            name: "0.0.0.0_9080_http".into(),
            filter_chain_match: Some(lds::FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                transport_protocol: "raw_buffer".into(),
                application_protocols: vec!["http/1.1".into(), "h2c".into()],
                ..Default::default()
            }),
            ..http.clone()
        },
        tcp,
    ];
    l.default_filter_chain = Some(http);
    l
}

#[test]
fn istios_sniffing_inbound_listener_decodes() {
    let l = listener::decode(&any(&virtual_inbound())).expect("supported");
    assert!(l.original_dst && l.tls_inspector && l.http_inspector);
    assert!(l.continue_on_timeout);
    assert_eq!(l.listener_filters_timeout, Some(Duration::from_secs(15)));
    let http = &l.filter_chains[0].matcher;
    assert_eq!(http.destination_port, Some(9080));
    assert_eq!(http.transport_protocol, "raw_buffer");
    assert_eq!(http.application_protocols, ["http/1.1", "h2c"]);
    assert_eq!(l.filter_chains[1].matcher.destination_port, Some(9080));
    assert!(l.filter_chains[1].matcher.application_protocols.is_empty());
    assert!(l.default_chain.is_some());

    let plain = listener::decode(&any(&listener_with(&manager()))).expect("supported");
    assert!(!plain.http_inspector && !plain.tls_inspector);
    assert_eq!(
        plain.filter_chains[0].matcher,
        listener::ChainMatch::default()
    );
}

#[test]
fn a_listener_filters_timeout_of_zero_means_none_as_in_envoy() {
    let mut l = virtual_inbound();
    l.listener_filters_timeout = Some(PbDuration {
        seconds: 0,
        nanos: 0,
    });
    let decoded = listener::decode(&any(&l)).expect("supported");
    assert_eq!(decoded.listener_filters_timeout, None);
    l.listener_filters_timeout = Some(PbDuration {
        seconds: 0,
        nanos: 100_000_000,
    });
    let decoded = listener::decode(&any(&l)).expect("supported");
    assert_eq!(
        decoded.listener_filters_timeout,
        Some(Duration::from_millis(100))
    );
}

#[test]
fn a_destination_port_outside_envoys_range_is_refused_by_path() {
    for port in [0, 65536] {
        let mut l = virtual_inbound();
        if let Some(m) = l.filter_chains[1].filter_chain_match.as_mut() {
            m.destination_port = Some(UInt32Value { value: port });
        }
        let e = listener::decode(&any(&l)).expect_err("out of range");
        assert_eq!(
            e.path, "filter_chains[1].filter_chain_match.destination_port",
            "{e}"
        );
        assert!(e.reason.contains(&port.to_string()), "{e}");
    }
}

#[test]
fn filter_chain_match_fields_not_implemented_are_refused_by_path() {
    let mut l = virtual_inbound();
    if let Some(m) = l.filter_chains[0].filter_chain_match.as_mut() {
        m.source_ports = vec![40000];
    }
    let e = listener::decode(&any(&l)).expect_err("source_ports");
    assert_eq!(e.path, "filter_chains[0].filter_chain_match.source_ports");
}

#[test]
fn an_http_inspector_that_sets_anything_or_is_something_else_is_refused() {
    // HttpInspector has no fields: field 1 (varint 1) is none Envoy defines.
    let mut l = virtual_inbound();
    let mut packed = any(&HttpInspector::default());
    packed.value = vec![0x08, 0x01];
    l.listener_filters[2] = filter(listener::HTTP_INSPECTOR, packed);
    let e = listener::decode(&any(&l)).expect_err("unknown field");
    assert_eq!(e.path, "listener_filters[2].typed_config", "{e}");
    assert!(e.reason.contains("field number 1"), "{e}");

    // The inspector's name over another filter's configuration.
    let mut l = virtual_inbound();
    l.listener_filters[2] = filter(listener::HTTP_INSPECTOR, any(&TlsInspector::default()));
    let e = listener::decode(&any(&l)).expect_err("wrong type");
    assert_eq!(e.path, "listener_filters[2]", "{e}");
    assert!(e.reason.contains("not implemented"), "{e}");

    // A predicate without a rule.
    let mut l = virtual_inbound();
    l.listener_filters[2].filter_disabled = Some(lds::ListenerFilterChainMatchPredicate::default());
    let e = listener::decode(&any(&l)).expect_err("filter_disabled");
    assert_eq!(e.path, "listener_filters[2].filter_disabled", "{e}");
}

fn ports(start: i32, end: i32) -> lds::ListenerFilterChainMatchPredicate {
    use lds::listener_filter_chain_match_predicate::Rule;
    lds::ListenerFilterChainMatchPredicate {
        rule: Some(Rule::DestinationPortRange(
            sextant_proto::envoy::r#type::v3::Int32Range { start, end },
        )),
    }
}

#[test]
fn an_inspector_left_out_by_destination_port_decodes_as_pilot_sends_it() {
    use lds::listener_filter_chain_match_predicate::{MatchSet, Rule};
    // Pilot's virtualInbound: the HTTP inspector for the sniffed ports 8080 and 9000-9001 only.
    let mut l = virtual_inbound();
    l.listener_filters[2].filter_disabled = Some(lds::ListenerFilterChainMatchPredicate {
        rule: Some(Rule::NotMatch(Box::new(
            lds::ListenerFilterChainMatchPredicate {
                rule: Some(Rule::OrMatch(MatchSet {
                    rules: vec![ports(8080, 8081), ports(9000, 9002)],
                })),
            },
        ))),
    });
    let decoded = listener::decode(&any(&l)).expect("supported");
    let disabled = decoded.http_inspector_disabled.expect("a predicate");
    for (port, left_out) in [
        (8080, false),
        (9000, false),
        (9001, false),
        (9002, true),
        (5432, true),
    ] {
        assert_eq!(disabled.matches(port), left_out, "port {port}");
    }
    assert_eq!(decoded.tls_inspector_disabled, None);

    // and_match, any_match; a set of one rule is refused as Envoy refuses it.
    let mut l = virtual_inbound();
    l.listener_filters[1].filter_disabled = Some(lds::ListenerFilterChainMatchPredicate {
        rule: Some(Rule::AndMatch(MatchSet {
            rules: vec![
                lds::ListenerFilterChainMatchPredicate {
                    rule: Some(Rule::AnyMatch(true)),
                },
                ports(1, 100),
            ],
        })),
    });
    let decoded = listener::decode(&any(&l)).expect("supported");
    let tls = decoded.tls_inspector_disabled.expect("a predicate");
    assert!(tls.matches(99) && !tls.matches(100));
    let mut l = virtual_inbound();
    l.listener_filters[1].filter_disabled = Some(lds::ListenerFilterChainMatchPredicate {
        rule: Some(Rule::OrMatch(MatchSet {
            rules: vec![ports(1, 100)],
        })),
    });
    let e = listener::decode(&any(&l)).expect_err("one rule");
    assert_eq!(
        e.path, "listener_filters[1].filter_disabled.or_match.rules",
        "{e}"
    );
    // The original destination is always read.
    let mut l = virtual_inbound();
    l.listener_filters[0].filter_disabled = Some(ports(1, 2));
    let e = listener::decode(&any(&l)).expect_err("original_dst");
    assert_eq!(e.path, "listener_filters[0].filter_disabled", "{e}");
}
