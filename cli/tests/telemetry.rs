//! The Report path end to end: native Reports and Envoy access logs → Telemetry rules → the prometheus
//! adapter (Wasm) → the hub's exposition → a real Prometheus 2.42 answering PromQL.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Backend, Envoy, Hub, Prometheus, get, scratch, wait_until};
use sextant_attributes::{Bag, Span, Value};
use sextant_proto::mixer::{self, mixer_client::MixerClient};

fn bag(code: i64, version: &str) -> Bag {
    let mut b = Bag::new();
    let mut set = |k: &str, v: Value| {
        b.set_by_name(k, v).expect("vocabulary attribute");
    };
    set("context.reporter.kind", Value::String("inbound".into()));
    set(
        "source.workload.name",
        Value::String("productpage-v1".into()),
    );
    set(
        "source.workload.namespace",
        Value::String("bookinfo".into()),
    );
    set(
        "destination.workload.name",
        Value::String(format!("reviews-{version}")),
    );
    set(
        "destination.service.host",
        Value::String("reviews.bookinfo.svc.cluster.local".into()),
    );
    set("destination.service.name", Value::String("reviews".into()));
    set(
        "destination.labels",
        Value::StringMap([("version".to_string(), version.to_string())].into()),
    );
    set("request.protocol", Value::String("http".into()));
    set("response.code", Value::Int64(code));
    set(
        "response.duration",
        Value::Duration(Span {
            seconds: 0,
            nanos: 12_000_000,
        }),
    );
    b
}

/// A delta-encoded Report: the first entry whole, then only what changes.
fn report(bags: &[Bag]) -> mixer::ReportRequest {
    let mut entries = Vec::new();
    let mut prev: Option<&Bag> = None;
    for b in bags {
        let entry = match prev {
            None => sextant_attributes::to_compressed(b),
            Some(p) => {
                let mut delta = Bag::new();
                for (id, v) in b.iter() {
                    if p.get(id) != Some(v) {
                        delta.set(id, v.clone()).expect("same type");
                    }
                }
                sextant_attributes::to_compressed(&delta)
            }
        };
        entries.push(entry);
        prev = Some(b);
    }
    mixer::ReportRequest {
        attributes: entries,
        default_words: Vec::new(),
        global_word_count: sextant_attributes::global_word_count(),
        repeated_attributes_semantics:
            mixer::report_request::RepeatedAttributesSemantics::DeltaEncoding as i32,
    }
}

fn send(hub: &Hub, req: mixer::ReportRequest) -> mixer::ReportResponse {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut client = MixerClient::connect(format!("http://{}", hub.grpc))
            .await
            .expect("connect");
        client.report(req).await.expect("report").into_inner()
    })
}

fn by_label(p: &Prometheus, query: &str, label: &str) -> HashMap<String, f64> {
    p.query(query)
        .into_iter()
        .map(|(l, v)| (l.get(label).cloned().unwrap_or_default(), v))
        .collect()
}

#[test]
fn reports_reach_prometheus_as_istio_standard_metrics() {
    let dir = scratch("telemetry-report");
    let hub = Hub::start(&dir);
    let prometheus = Prometheus::start(&[hub.prometheus]);

    let mut bags: Vec<Bag> = (0..30).map(|_| bag(200, "v1")).collect();
    bags.extend((0..10).map(|_| bag(503, "v2")));
    let ack = send(&hub, report(&bags));
    assert_eq!((ack.accepted, ack.rejected), (40, 0), "{:?}", ack.errors);

    let query = r#"sum by (response_code) (istio_requests_total{destination_service_name="reviews",reporter="destination"})"#;
    wait_until(
        Duration::from_secs(30),
        "Prometheus to have the request counts",
        || {
            let got = by_label(&prometheus, query, "response_code");
            got.get("200") == Some(&30.0) && got.get("503") == Some(&10.0)
        },
    );
    // The labels a dashboard groups by, as Istio names them.
    let series = prometheus.query(r#"istio_requests_total{response_code="503"}"#);
    assert_eq!(series.len(), 1, "{series:?}");
    let labels = &series[0].0;
    for (k, v) in [
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", "bookinfo"),
        ("destination_workload", "reviews-v2"),
        ("destination_service", "reviews.bookinfo.svc.cluster.local"),
        ("destination_version", "v2"),
        ("request_protocol", "http"),
        ("response_flags", "-"),
        ("source_principal", "unknown"),
        ("grpc_response_status", "unknown"),
        ("connection_security_policy", "unknown"),
    ] {
        assert_eq!(
            labels.get(k).map(String::as_str),
            Some(v),
            "{k} in {labels:?}"
        );
    }
    let count = prometheus.query(
        r#"sum(istio_request_duration_milliseconds_count{destination_service_name="reviews"})"#,
    );
    assert_eq!(count.first().map(|s| s.1), Some(40.0), "{count:?}");
    let le = prometheus.query(r#"sum(istio_request_duration_milliseconds_bucket{le="25"})"#);
    assert_eq!(
        le.first().map(|s| s.1),
        Some(40.0),
        "12 ms lands under le=25: {le:?}"
    );

    // The hub counts what it took in.
    assert_eq!(
        hub.metric(r#"sextant_hub_reports_total{front_door="native",result="accepted"}"#),
        Some(40.0)
    );
}

#[test]
fn a_report_with_a_bad_entry_is_acknowledged_for_what_was_accepted() {
    let dir = scratch("telemetry-bad-report");
    let hub = Hub::start(&dir);
    let mut req = report(&[bag(200, "v1"), bag(201, "v1"), bag(202, "v1")]);
    // Entry 1 names a word that does not exist; with delta encoding entry 2 builds on it.
    req.attributes[1].strings.insert(-99, -98);
    let ack = send(&hub, req);
    assert_eq!((ack.accepted, ack.rejected), (1, 2), "{:?}", ack.errors);
    assert!(
        ack.errors.iter().any(|e| e.contains("attributes[1]")),
        "{:?}",
        ack.errors
    );
    assert!(
        ack.errors.iter().any(|e| e.contains("follow a rejected")),
        "{:?}",
        ack.errors
    );
    // Independent encoding: only the bad entry is lost.
    let mut req = report(&[bag(200, "v1"), bag(200, "v1")]);
    req.repeated_attributes_semantics =
        mixer::report_request::RepeatedAttributesSemantics::IndependentEncoding as i32;
    req.attributes[0].strings.insert(-99, -98);
    let ack = send(&hub, req);
    assert_eq!((ack.accepted, ack.rejected), (1, 1), "{:?}", ack.errors);
    assert_eq!(
        hub.metric(r#"sextant_hub_reports_total{front_door="native",result="invalid"}"#),
        Some(3.0)
    );
}

const ALS_ENVOY: &str = r#"
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
node: {id: reviews-v1-abc, cluster: reviews-v1, metadata: {NAMESPACE: bookinfo}}
static_resources:
  listeners:
  - name: inbound
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
          generate_request_id: true
          access_log:
          - name: envoy.access_loggers.http_grpc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig
              common_config:
                log_name: inbound
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: hub}}
                buffer_flush_interval: 0.1s
              additional_request_headers_to_log: [x-user]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/missing"}
                direct_response: {status: 404}
              - match: {prefix: "/"}
                route: {cluster: "inbound|9080||reviews.bookinfo.svc.cluster.local"}
  clusters:
  - name: "inbound|9080||reviews.bookinfo.svc.cluster.local"
    type: STATIC
    load_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: BACKEND}}}}]}]}
  - name: hub
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: hub, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: HUB}}}}]}]}
"#;

#[test]
fn envoy_access_logs_become_metrics_in_prometheus() {
    let dir = scratch("telemetry-als");
    let hub = Hub::start(&dir);
    let prometheus = Prometheus::start(&[hub.prometheus]);
    let backend = Backend::start();
    let config = ALS_ENVOY
        .replace("BACKEND", &backend.addr.port().to_string())
        .replace("HUB", &hub.grpc.port().to_string());
    let envoy = Envoy::start(&dir, &config);
    let front = envoy.listener("inbound");
    for _ in 0..12 {
        assert_eq!(
            get(front, "/reviews/1", &[("x-user", "jason")]).map(|r| r.status),
            Some(200)
        );
    }
    for _ in 0..3 {
        assert_eq!(get(front, "/missing", &[]).map(|r| r.status), Some(404));
    }
    let query = r#"sum by (response_code) (istio_requests_total{destination_service_name="reviews",destination_workload="reviews-v1",destination_workload_namespace="bookinfo"})"#;
    // The direct responses have no upstream cluster, so no destination service: they count under `unknown`.
    let unknown =
        r#"sum by (response_code) (istio_requests_total{destination_service_name="unknown"})"#;
    // Both in one wait: the 404s' access logs may reach the hub, and Prometheus's scrape, after the 200s'.
    let (mut served, mut missing) = Default::default();
    wait_until(
        Duration::from_secs(60),
        "Envoy's traffic as metrics in Prometheus",
        || {
            served = by_label(&prometheus, query, "response_code");
            missing = by_label(&prometheus, unknown, "response_code");
            served.get("200") == Some(&12.0) && missing.get("404") == Some(&3.0)
        },
    );
    eprintln!("reviews: {served:?}, unknown: {missing:?}");
    assert_eq!(
        hub.metric(r#"sextant_hub_reports_total{front_door="envoy_als",result="accepted"}"#),
        Some(15.0)
    );
    drop(envoy);
}
