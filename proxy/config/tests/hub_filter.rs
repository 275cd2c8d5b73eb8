//! The hub filter (`sextant.filters.http.mixer`) as pilot emits it: decoded with its defaults, its static
//! attributes checked against the vocabulary, and misplaced or malformed settings refused naming the field.

mod common;

use std::time::Duration;

use common::{listener_with, manager};
use prost::Message;
use proxy_config::listener::{self, HttpManager, Network};
use proxy_config::mixer::{self, OnFailure};
use sextant_proto::envoy::extensions::filters::http::cors::v3::Cors;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use sextant_proto::google::protobuf::{Any, Duration as PbDuration};
use sextant_proto::mixer::{AttributeValue, Attributes, FailurePolicy, attribute_value};
use sextant_proto::mixer_filter::Mixer;

fn text(v: &str) -> AttributeValue {
    AttributeValue {
        value: Some(attribute_value::Value::StringValue(v.into())),
    }
}

fn inbound() -> Mixer {
    Mixer {
        cluster: "outbound|9091||sextant-hub.sextant-system.svc.cluster.local".into(),
        attributes: Some(Attributes {
            values: [
                ("context.reporter.kind".to_string(), text("inbound")),
                ("destination.workload.name".to_string(), text("web")),
            ]
            .into(),
        }),
        check: true,
        report: true,
        ..Default::default()
    }
}

fn filter(m: &Mixer) -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: sextant_proto::MIXER_FILTER_NAME.into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(Any {
            type_url: sextant_proto::MIXER_FILTER_TYPE_URL.into(),
            value: m.encode_to_vec(),
        })),
        ..Default::default()
    }
}

fn decode(filters: Vec<hcm::HttpFilter>) -> Result<HttpManager, proxy_config::Error> {
    let mut m = manager();
    let router = m.http_filters.pop().expect("the router");
    m.http_filters = filters;
    m.http_filters.push(router);
    let l = listener::decode(&common::any(&listener_with(&m)))?;
    match &l.filter_chains[0].network {
        Network::Http(h) => Ok(h.clone()),
        Network::Tcp(_) => panic!("an HTTP chain"),
    }
}

fn refused(m: &Mixer) -> String {
    decode(vec![filter(m)]).expect_err("refused").to_string()
}

#[test]
fn pilots_filter_decodes_with_the_documented_defaults() {
    let hub = decode(vec![filter(&inbound())])
        .expect("decodes")
        .hub
        .expect("a hub filter");
    assert_eq!(hub.cluster, inbound().cluster);
    assert!(hub.check && hub.report);
    assert_eq!(hub.check_timeout, mixer::DEFAULT_CHECK_TIMEOUT);
    assert_eq!(hub.stale_ttl, mixer::DEFAULT_STALE_TTL);
    assert_eq!(hub.on_failure, OnFailure::Open);
    assert_eq!(hub.batch_entries, mixer::DEFAULT_BATCH_ENTRIES);
    assert_eq!(hub.buffer_entries, mixer::DEFAULT_BUFFER_ENTRIES);
    assert_eq!(
        hub.attributes.get_by_name("destination.workload.name"),
        Some(&sextant_attributes::Value::String("web".into()))
    );
    assert!(decode(vec![]).expect("decodes").hub.is_none());
}

#[test]
fn settings_are_read_and_bad_ones_refused_by_field() {
    let mut m = inbound();
    m.failure_policy = FailurePolicy::FailClose as i32;
    m.check_timeout = Some(PbDuration {
        seconds: 0,
        nanos: 50_000_000,
    });
    m.stale_ttl = Some(PbDuration::default());
    let hub = decode(vec![filter(&m)]).expect("decodes").hub.expect("hub");
    assert_eq!(hub.on_failure, OnFailure::Close);
    assert_eq!(hub.check_timeout, Duration::from_millis(50));
    assert_eq!(
        hub.stale_ttl,
        Duration::ZERO,
        "zero turns stale answers off"
    );

    let mut m = inbound();
    m.cluster.clear();
    assert!(
        refused(&m).contains("typed_config.cluster"),
        "{}",
        refused(&m)
    );

    let mut m = inbound();
    if let Some(a) = m.attributes.as_mut() {
        a.values
            .insert("destination.wrkload.name".into(), text("x"));
    }
    let e = refused(&m);
    assert!(
        e.contains(r#"attributes.values["destination.wrkload.name"]"#),
        "{e}"
    );

    let mut m = inbound();
    if let Some(a) = m.attributes.as_mut() {
        a.values.insert("destination.port".into(), text("eighty"));
    }
    assert!(refused(&m).contains("destination.port"), "{}", refused(&m));

    let mut m = inbound();
    m.check_timeout = Some(PbDuration::default());
    assert!(refused(&m).contains("check_timeout"), "{}", refused(&m));

    let mut m = inbound();
    m.report_batch_entries = 5_000_000;
    assert!(
        refused(&m).contains("report_batch_entries"),
        "{}",
        refused(&m)
    );
}

#[test]
fn the_filter_comes_once_and_before_cors() {
    let cors = hcm::HttpFilter {
        name: "envoy.filters.http.cors".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(common::any(
            &Cors::default(),
        ))),
        ..Default::default()
    };
    let e = decode(vec![cors, filter(&inbound())])
        .expect_err("after CORS")
        .to_string();
    assert!(e.contains("before the fault and CORS filters"), "{e}");
    assert!(decode(vec![filter(&inbound()), filter(&inbound())]).is_err());
}
