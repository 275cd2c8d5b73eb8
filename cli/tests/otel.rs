//! The mesh's own spans in a real Jaeger v1.75 (built by `.ci/peers`), over OTLP as an operator would point
//! the roles at it: `--otlp-endpoint` and the standard `OTEL_*` variables.
//!
//! - A Check made with a `traceparent` is a child span of the caller's span in that trace, with the policy,
//!   rule and decision as attributes, and the policy evaluation under it.
//! - With sampling off nothing is exported, even for a sampled caller.
//! - Pilot's push of each type to a proxy (a real Envoy) is a span naming the proxy, the type and its ACK;
//!   the configuration load is one too.
//! - A request with a `traceparent` through a `sextant proxy` sidecar that checks it with the hub: the
//!   proxy's Check call is in the request's trace, and the hub's Check span is its child; the proxy's
//!   configuration applies are spans too.
//! - The hub's metrics reach an OTLP collector (OTLP/HTTP, decoded with the official types) under the names
//!   its `/metrics` shows.
//! - A collector that never answers: Checks are all answered, the span queue stays within its bound and
//!   every span is counted as dropped.

mod common;

use std::time::Duration;

use common::{
    Backend, Envoy, HUB_HOST, HeldPort, HttpSink, Hub, Jaeger, PRODUCTPAGE_ID, PRODUCTPAGE_NODE,
    SextantProxy, ads_bootstrap, reviews_entry, scratch_config, start_pilot_env, start_pilot_with,
    wait_until,
};
use sextant_proto::mixer::{self, attribute_value::Value as V, mixer_client::MixerClient};

const WAIT: Duration = Duration::from_secs(60);

const POLICY: &str = r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: guard, namespace: shop}
spec:
  rules:
  - name: no-secrets
    when: 'destination.service.name == "secret"'
    action: DENY
"#;

/// Exports every 100 ms (the default waits 5 s for a batch).
const QUICK: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

fn check_request(service: &str) -> mixer::CheckRequest {
    mixer::CheckRequest {
        attributes: Some(mixer::Attributes {
            values: [(
                "destination.service.name".to_string(),
                mixer::AttributeValue {
                    value: Some(V::StringValue(service.into())),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

/// Makes `n` Checks of `service` on `hub`, each with `traceparent` if given; returns their codes.
fn checks(hub: &Hub, service: &str, n: usize, traceparent: Option<&str>) -> Vec<i32> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client = MixerClient::connect(format!("http://{}", hub.grpc))
                .await
                .expect("connect");
            let mut codes = Vec::with_capacity(n);
            for _ in 0..n {
                let mut req = tonic::Request::new(check_request(service));
                if let Some(tp) = traceparent {
                    req.metadata_mut()
                        .insert("traceparent", tp.parse().expect("ascii"));
                }
                let answer = client.check(req).await.expect("check").into_inner();
                codes.push(
                    answer
                        .precondition
                        .map_or(-1, |p| p.status.map_or(0, |s| s.code)),
                );
            }
            codes
        })
}

fn metric(hub: &Hub, series: &str) -> f64 {
    hub.metric(series).unwrap_or(0.0)
}

#[test]
fn a_check_with_a_traceparent_is_a_child_span_with_its_decision() {
    let (dir, config) = scratch_config("otel-check");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("policy");
    let jaeger = Jaeger::start(&dir);
    let hub = Hub::start_env(
        &config,
        &["--otlp-endpoint", &jaeger.otlp_grpc()],
        &[QUICK, ("OTEL_SERVICE_NAME", "hub-under-test")],
    );
    // The caller's span: trace and span id as a sidecar would send them, sampled.
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let codes = checks(&hub, "secret", 1, Some(&format!("00-{trace}-{parent}-01")));
    assert_eq!(codes, [7], "the policy denies (PERMISSION_DENIED)");

    let mut spans = Vec::new();
    wait_until(WAIT, "the Check's spans in Jaeger", || {
        spans = jaeger.trace(trace);
        spans.iter().any(|s| s.name() == "policy.evaluate")
            && spans
                .iter()
                .any(|s| s.name() == "istio.mixer.v1.Mixer/Check")
    });
    let check = spans
        .iter()
        .find(|s| s.name() == "istio.mixer.v1.Mixer/Check")
        .expect("the Check span");
    assert_eq!(
        check.service, "hub-under-test",
        "OTEL_SERVICE_NAME names it"
    );
    assert_eq!(
        check.parent(),
        Some(parent),
        "the Check is a child of the caller's span: {:?}",
        check.json
    );
    assert_eq!(check.tag("span.kind").as_deref(), Some("server"));
    assert_eq!(check.tag("sextant.decision").as_deref(), Some("deny"));
    assert_eq!(
        check.tag("rpc.grpc.status_code").as_deref(),
        Some("0"),
        "a denial is an answer, not a failed call"
    );
    assert_eq!(check.tag("sextant.code").as_deref(), Some("7"));
    assert_eq!(check.tag("sextant.policy").as_deref(), Some("shop/guard"));
    assert_eq!(check.tag("sextant.rule").as_deref(), Some("no-secrets"));
    let evaluate = spans
        .iter()
        .find(|s| s.name() == "policy.evaluate")
        .expect("the evaluation span");
    assert_eq!(
        evaluate.parent(),
        Some(check.id()),
        "evaluation inside the Check"
    );
    assert!(
        evaluate
            .tag("sextant.expressions_evaluated")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1),
        "{:?}",
        evaluate.json
    );
    assert!(metric(&hub, "sextant_hub_otel_spans_exported_total") >= 2.0);
}

#[test]
fn sampling_off_exports_nothing_even_for_a_sampled_caller() {
    let (dir, config) = scratch_config("otel-off");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("policy");
    let jaeger = Jaeger::start(&dir);
    let off = Hub::start_env(
        &config,
        &["--otlp-endpoint", &jaeger.otlp_grpc()],
        &[
            QUICK,
            ("OTEL_SERVICE_NAME", "hub-sampling-off"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ],
    );
    // The same calls to a hub that samples, over OTLP/HTTP: once its spans are in, the other's would be.
    let on = Hub::start_env(
        &config,
        &[
            "--otlp-endpoint",
            &jaeger.otlp_http(),
            "--otlp-protocol",
            "http/protobuf",
        ],
        &[QUICK, ("OTEL_SERVICE_NAME", "hub-sampling-on")],
    );
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    assert_eq!(checks(&off, "shop", 20, Some(traceparent)), [0; 20]);
    assert_eq!(checks(&on, "shop", 20, Some(traceparent)), [0; 20]);
    wait_until(WAIT, "the sampling hub's spans in Jaeger", || {
        jaeger.services().iter().any(|s| s == "hub-sampling-on")
    });
    assert!(
        !jaeger.services().iter().any(|s| s == "hub-sampling-off"),
        "a hub with sampling off sent spans: {:?}",
        jaeger.services()
    );
    assert_eq!(metric(&off, "sextant_hub_otel_spans_exported_total"), 0.0);
    assert!(
        !off.metrics()
            .contains("sextant_hub_otel_spans_dropped_total{"),
        "nothing was even queued"
    );
}

#[test]
fn a_collector_that_never_answers_costs_no_request_and_every_span_is_counted() {
    let (_dir, config) = scratch_config("otel-dead");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("policy");
    // Accepts connections (the kernel does) and never answers: each export waits for its timeout.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener never accepting");
    let hung_at = hung.local_addr().expect("its address");
    let hub = Hub::start_env(
        &config,
        &["--otlp-endpoint", &format!("http://{hung_at}")],
        &[
            QUICK,
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
        ],
    );
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.extend(checks(&hub, "secret", 50, None));
        let queued = metric(&hub, "sextant_hub_otel_span_queue");
        assert!(
            queued <= 64.0,
            "the queue holds at most its bound: {queued}"
        );
    }
    assert!(
        codes.iter().all(|c| *c == 7),
        "every Check answered as without tracing"
    );
    let dropped = |reason: &str| {
        metric(
            &hub,
            &format!("sextant_hub_otel_spans_dropped_total{{reason=\"{reason}\"}}"),
        )
    };
    wait_until(WAIT, "every span counted as dropped", || {
        let (full, failed) = (dropped("queue_full"), dropped("export_failed"));
        // Each Check makes at least two spans (the Check and its evaluation).
        full > 0.0 && failed > 0.0 && full + failed >= 1000.0
    });
    assert_eq!(metric(&hub, "sextant_hub_otel_spans_exported_total"), 0.0);
    assert!(metric(&hub, "sextant_hub_otel_export_failures_total") >= 1.0);
    drop(hung);
}

#[test]
fn pilot_pushes_are_spans_naming_the_proxy_the_type_and_its_ack() {
    let (dir, config) = scratch_config("otel-pilot");
    std::fs::write(config.join("reviews.yaml"), reviews_entry(9080, 9081)).expect("config");
    let jaeger = Jaeger::start(&dir);
    let (_pilot, xds, _monitoring) = start_pilot_env(
        &config,
        "127.0.0.1:0",
        &["--otlp-endpoint", &jaeger.otlp_grpc()],
        &[QUICK, ("OTEL_TRACES_SAMPLER", "always_on")],
    );
    let _envoy = Envoy::start(&dir, &ads_bootstrap(xds, "GRPC", PRODUCTPAGE_NODE));

    let acked_cds = |span: &serde_json::Value| {
        let tag = |k: &str| {
            span["tags"]
                .as_array()
                .and_then(|tags| tags.iter().find(|t| t["key"] == k))
                .map(|t| t["value"].clone())
        };
        tag("sextant.proxy") == Some(PRODUCTPAGE_ID.into())
            && tag("sextant.type") == Some("cds".into())
            && tag("sextant.answer") == Some("ACK".into())
            && tag("sextant.bytes")
                .and_then(|b| b.as_i64().or_else(|| b.as_str()?.parse().ok()))
                .is_some_and(|b| b > 0)
    };
    let mut pushes = Vec::new();
    let found = common::eventually(WAIT, || {
        pushes = jaeger.traces("sextant-pilot", "xds.push");
        pushes
            .iter()
            .flat_map(|t| t["spans"].as_array().cloned().unwrap_or_default())
            .any(|s| acked_cds(&s))
    });
    assert!(
        found,
        "no ACKed cds push to {PRODUCTPAGE_ID} in Jaeger; services {:?}, pushes {pushes:?}",
        jaeger.services()
    );
    assert!(
        !jaeger
            .traces("sextant-pilot", "pilot.config.load")
            .is_empty(),
        "the configuration load is a span too"
    );
}

#[test]
fn a_traced_request_through_a_sidecar_carries_its_hub_check_into_the_trace() {
    let (dir, config) = scratch_config("otel-proxy");
    let hub_config = dir.join("hub-config");
    std::fs::create_dir_all(&hub_config).expect("hub config");
    std::fs::write(
        hub_config.join("policy.yaml"),
        POLICY.replace("destination.service.name", "request.url_path"),
    )
    .expect("policy");
    let jaeger = Jaeger::start(&dir);
    let hub = Hub::start_env(
        &hub_config,
        &["--otlp-endpoint", &jaeger.otlp_grpc()],
        &[QUICK, ("OTEL_METRICS_EXPORTER", "none")],
    );
    let app = Backend::answering("the workload");
    let (ingress, hub_port) = (HeldPort::hold(), HeldPort::hold());
    std::fs::write(
        config.join("mesh.yaml"),
        common::web_mesh(ingress.port(), app.addr)
            + &common::hub_service(hub_port.port(), hub.grpc),
    )
    .expect("mesh");
    let hub_service = format!("{HUB_HOST}:{}", hub_port.port());
    let (_pilot, xds, _monitoring) =
        start_pilot_with(&config, "127.0.0.1:0", &["--hub-service", &hub_service]);
    let otlp = jaeger.otlp_http();
    let _web = SextantProxy::start(
        &dir,
        xds,
        "sidecar~127.0.0.1~web-1.shop~shop.svc.cluster.local",
        &[
            ("POD_NAMESPACE", "shop"),
            ("SERVICE_ACCOUNT", "web"),
            ("ISTIO_META_INTERCEPTION_MODE", "NONE"),
            ("ISTIO_METAJSON_LABELS", r#"{"app": "web"}"#),
            QUICK,
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
        &["--otlp-endpoint", &otlp, "--otlp-protocol", "http/protobuf"],
    );

    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let at = format!("http://127.0.0.1:{}/hello", ingress.port());
    let mut last = String::new();
    let answered = common::eventually(WAIT, || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-i", "--max-time", "5"])
            .args([
                "-H",
                &format!("traceparent: 00-{trace}-a3ce929d0e0e4737-01"),
            ])
            .arg(&at)
            .output()
            .expect("curl (installed by .ci/peers)");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        last.starts_with("HTTP/1.1 200")
    });
    assert!(answered, "the sidecar did not answer 200: {last}");

    let mut spans = Vec::new();
    let joined = common::eventually(WAIT, || {
        spans = jaeger.trace(trace);
        let check = |service: &str| {
            spans
                .iter()
                .find(|s| s.service == service && s.name() == "istio.mixer.v1.Mixer/Check")
        };
        match (check("sextant-proxy"), check("sextant-hub")) {
            (Some(client), Some(server)) => {
                client.tag("span.kind").as_deref() == Some("client")
                    && server.parent() == Some(client.id())
                    && server.tag("sextant.decision").as_deref() == Some("allow")
            }
            _ => false,
        }
    });
    assert!(
        joined,
        "the hub's Check is not the child of the sidecar's Check call in the request's trace: {:?}",
        spans
            .iter()
            .map(|s| (&s.service, s.name(), s.parent()))
            .collect::<Vec<_>>()
    );
    assert!(
        !jaeger
            .traces("sextant-proxy", "proxy.config.apply")
            .is_empty(),
        "the sidecar's configuration applies are spans"
    );
}

/// The metric `name` of an OTLP metrics request (protobuf's JSON form).
fn otlp_metric<'a>(request: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    request["resourceMetrics"]
        .as_array()?
        .iter()
        .flat_map(|r| r["scopeMetrics"].as_array().into_iter().flatten())
        .flat_map(|s| s["metrics"].as_array().into_iter().flatten())
        .find(|m| m["name"] == name)
}

#[test]
fn the_hubs_metrics_reach_an_otlp_collector_under_their_prometheus_names() {
    let (_dir, config) = scratch_config("otel-metrics");
    std::fs::write(config.join("policy.yaml"), POLICY).expect("policy");
    // Records what it is sent; the official opentelemetry-proto types decode it below.
    let sink = HttpSink::start();
    let hub = Hub::start_env(
        &config,
        &[
            "--otlp-endpoint",
            &format!("http://{}", sink.addr),
            "--otlp-protocol",
            "http/protobuf",
        ],
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ],
    );
    assert_eq!(checks(&hub, "secret", 3, None), [7; 3]);
    assert!(
        hub.metrics().contains("sextant_hub_checks_total{"),
        "the name on /metrics"
    );
    let python = common::peers().join("otel/bin/python");
    let decoder = common::repo().join("tests/python/otlp_decode.py");
    let mut last = serde_json::Value::Null;
    let exported = common::eventually(WAIT, || {
        let Some(body) = sink.on("/v1/metrics").pop() else {
            return false;
        };
        let file = config.join("metrics.pb");
        std::fs::write(&file, &body.body).expect("body");
        let out = std::process::Command::new(&python)
            .arg(&decoder)
            .arg("metrics")
            .arg(&file)
            .output()
            .expect("python");
        assert!(
            out.status.success(),
            "not an ExportMetricsServiceRequest: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = serde_json::from_slice(&out.stdout).expect("JSON");
        otlp_metric(&last, "sextant_hub_checks").is_some_and(|m| {
            let points = m["sum"]["dataPoints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total: f64 = points.iter().filter_map(|p| p["asDouble"].as_f64()).sum();
            m["sum"]["isMonotonic"] == true
                && m["sum"]["aggregationTemporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"
                && total >= 3.0
        })
    });
    assert!(
        exported,
        "no cumulative sextant_hub_checks of 3 Checks: {last}"
    );
    let histogram = otlp_metric(&last, "sextant_hub_check_duration_seconds")
        .expect("the Check latency histogram");
    assert!(
        histogram["histogram"]["dataPoints"][0]["explicitBounds"]
            .as_array()
            .is_some_and(|b| !b.is_empty()),
        "{histogram}"
    );
    assert!(
        last["resourceMetrics"][0]["resource"]["attributes"]
            .as_array()
            .is_some_and(|a| a.iter().any(
                |kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == "sextant-hub"
            )),
        "{last}"
    );
}
