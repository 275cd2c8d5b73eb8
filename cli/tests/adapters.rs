//! The shipped adapters deliver to their backends, and misbehaving adapters are contained.
//!
//! zipkin and otlp post to a local HTTP sink (no Zipkin, Jaeger or OTel collector server is obtainable
//! here); what they send is decoded with the official schemas: zipkin.proto (Debian's zipkin-go package) and
//! the opentelemetry-proto Python types.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{HeldPort, HttpSink, Hub, peers, repo, scratch_config, wait_until};
use sextant_attributes::{Bag, Span, Time, Value};
use sextant_proto::mixer::{self, mixer_client::MixerClient};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn bag(i: i64) -> Bag {
    let mut b = Bag::new();
    let mut set = |k: &str, v: Value| {
        b.set_by_name(k, v).expect("vocabulary attribute");
    };
    set(
        "source.workload.name",
        Value::String("productpage-v1".into()),
    );
    set("destination.service.name", Value::String("reviews".into()));
    set("request.method", Value::String("GET".into()));
    set("request.url_path", Value::String(format!("/reviews/{i}")));
    set("request.id", Value::String(format!("req-{i}")));
    set(
        "request.headers",
        Value::StringMap(
            [(
                "traceparent".to_string(),
                format!("00-{TRACE}-00f067aa0ba902b7-01"),
            )]
            .into(),
        ),
    );
    set(
        "request.time",
        Value::Timestamp(Time {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
    );
    set(
        "response.duration",
        Value::Duration(Span {
            seconds: 0,
            nanos: 40_000_000,
        }),
    );
    set(
        "response.code",
        Value::Int64(if i == 0 { 503 } else { 200 }),
    );
    b
}

fn report(hub: &Hub, bags: &[Bag]) -> mixer::ReportResponse {
    let req = mixer::ReportRequest {
        attributes: bags.iter().map(sextant_attributes::to_compressed).collect(),
        default_words: Vec::new(),
        global_word_count: sextant_attributes::global_word_count(),
        repeated_attributes_semantics:
            mixer::report_request::RepeatedAttributesSemantics::IndependentEncoding as i32,
    };
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client = MixerClient::connect(format!("http://{}", hub.grpc))
                .await
                .expect("connect");
            client.report(req).await.expect("report").into_inner()
        })
}

fn check_allowed(hub: &Hub) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args([
            "check",
            "--hub",
            &hub.grpc.to_string(),
            "-a",
            "destination.service.name=reviews",
        ])
        .output()
        .expect("run sextant check");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    out.status.success() && json["code"] == 0
}

fn adapters_config(sink: SocketAddr, logs: &Path) -> String {
    format!(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: zipkin}}
spec:
  module: builtin:zipkin
  config: {{endpoint: "http://{sink}/api/v2/spans"}}
  allowedHosts: ["{sink}"]
  limits: {{flushInterval: 100ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: otlp}}
spec:
  module: builtin:otlp
  config: {{endpoint: "http://{sink}", service_name: bookinfo}}
  allowedHosts: ["{sink}"]
  limits: {{flushInterval: 100ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: logs}}
spec:
  module: builtin:logs
  config: {{name: access}}
  stdout: {logs}
  limits: {{flushInterval: 100ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: everything}}
spec:
  adapters: [zipkin, otlp, logs]
  metrics:
  - name: requests_total
    kind: COUNTER
    dimensions: {{code: response.code}}
  logs:
  - name: accesslog
    severity: 'response.code >= 500 ? "ERROR" : "INFO"'
    fields: {{path: request.url_path, code: response.code}}
  traces:
    tags: {{http.status_code: response.code}}
"#,
        logs = logs.display()
    )
}

fn bodies(dir: &Path, sink: &HttpSink, path: &str) -> Vec<std::path::PathBuf> {
    sink.on(path)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = dir.join(format!("{}-{i}", path.replace('/', "_")));
            std::fs::write(&f, &c.body).expect("write body");
            f
        })
        .collect()
}

fn python_lines(
    python: &Path,
    script: &str,
    args: &[std::ffi::OsString],
) -> Vec<serde_json::Value> {
    let out = Command::new(python)
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn zipkin_otlp_and_logs_adapters_deliver_what_the_official_schemas_accept() {
    let (dir, config) = scratch_config("adapters-deliver");
    let sink = HttpSink::start();
    let logs = dir.join("access.jsonl");
    std::fs::write(
        config.join("adapters.yaml"),
        adapters_config(sink.addr, &logs),
    )
    .expect("write");
    let hub = Hub::start(&config);

    let bags: Vec<Bag> = (0..5).map(bag).collect();
    let ack = report(&hub, &bags);
    assert_eq!(ack.accepted, 5, "{:?}", ack.errors);

    wait_until(
        Duration::from_secs(20),
        "zipkin spans, OTLP traces/metrics/logs and log lines",
        || {
            let spans: usize = sink
                .on("/api/v2/spans")
                .iter()
                .map(|c| {
                    serde_json::from_slice::<Vec<serde_json::Value>>(&c.body).map_or(0, |v| v.len())
                })
                .sum();
            spans == 5
                && !sink.on("/v1/traces").is_empty()
                && !sink.on("/v1/metrics").is_empty()
                && !sink.on("/v1/logs").is_empty()
                && std::fs::read_to_string(&logs).is_ok_and(|t| t.lines().count() == 5)
        },
    );

    // Zipkin: every field is a zipkin.proto field with the proto's type.
    let zipkin = sink.on("/api/v2/spans");
    assert!(zipkin.iter().all(|c| {
        c.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.contains("json"))
    }));
    let files: Vec<_> = bodies(&dir, &sink, "/api/v2/spans")
        .into_iter()
        .map(Into::into)
        .collect();
    let mut args = vec![peers().join("zipkin/zipkin.proto").into_os_string()];
    args.extend(files);
    let spans = python_lines(&peers().join("venv/bin/python"), "zipkin_check.py", &args);
    assert_eq!(spans.len(), 5);
    let failed = spans
        .iter()
        .find(|s| s["name"] == "GET /reviews/0")
        .expect("span of request 0");
    assert_eq!(failed["trace_id"], TRACE);
    assert_eq!(failed["parent_id"], "00f067aa0ba902b7");
    assert_eq!(failed["kind"], "SERVER");
    assert_eq!(failed["local"], "reviews");
    assert_eq!(failed["remote"], "productpage-v1");
    assert_eq!(failed["timestamp"], 1_700_000_000_000_000u64);
    assert_eq!(failed["duration"], 40_000);
    assert_eq!(failed["tags"]["http.status_code"], "503");
    assert!(
        failed["tags"].get("error").is_some(),
        "a 5xx span carries the error tag: {failed}"
    );

    // OTLP: the bodies parse as the official Export*ServiceRequest messages.
    let otel = peers().join("otel/bin/python");
    let decode = |kind: &str, path: &str| {
        let mut args = vec![std::ffi::OsString::from(kind)];
        args.extend(bodies(&dir, &sink, path).into_iter().map(Into::into));
        python_lines(&otel, "otlp_decode.py", &args)
    };
    let traces = decode("traces", "/v1/traces")
        .iter()
        .map(ToString::to_string)
        .collect::<String>();
    assert!(
        traces.contains("GET /reviews/3") && traces.contains("SPAN_KIND_SERVER"),
        "{traces}"
    );
    let metrics = decode("metrics", "/v1/metrics")
        .iter()
        .map(ToString::to_string)
        .collect::<String>();
    assert!(
        metrics.contains("requests_total") && metrics.contains("AGGREGATION_TEMPORALITY_DELTA"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bookinfo"),
        "the resource's service.name: {metrics}"
    );
    let logs_json = decode("logs", "/v1/logs")
        .iter()
        .map(ToString::to_string)
        .collect::<String>();
    assert!(
        logs_json.contains("accesslog") || logs_json.contains("/reviews/4"),
        "{logs_json}"
    );

    // logs: JSON lines naming the adapter, to the file the Adapter names.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&logs)
        .expect("log file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.iter().all(|l| l["adapter"] == "access"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["severity"] == "ERROR" && l["code"] == 503),
        "{lines:?}"
    );
}

/// The `faulty` test adapter written to `dir/faulty.wasm`.
fn faulty_module(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("faulty.wasm");
    std::fs::write(
        &path,
        hub_builtin_adapters::test_module("faulty").expect("faulty adapter built"),
    )
    .expect("write");
    path
}

#[test]
fn faulty_adapters_are_restarted_and_contained() {
    let (dir, config) = scratch_config("adapters-faults");
    let faulty = faulty_module(&dir);
    let logs = dir.join("ok.jsonl");
    // A port held for the test where nobody listens: the collector is down.
    let dead = HeldPort::hold();
    let dead = dead.port();
    let mut yaml = String::new();
    for mode in ["trap", "loop", "oom"] {
        yaml.push_str(&format!(
            r#"
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: {mode}}}
spec:
  module: {faulty}
  config: {{mode: {mode}}}
  limits: {{memory: 8Mi, timePerBatch: 200ms, flushInterval: 50ms}}
"#,
            faulty = faulty.display()
        ));
    }
    yaml.push_str(&format!(
        r#"
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: down}}
spec:
  module: builtin:zipkin
  config: {{endpoint: "http://127.0.0.1:{dead}/api/v2/spans", timeout_ms: 200}}
  allowedHosts: ["127.0.0.1:{dead}"]
  limits: {{flushInterval: 50ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: ok}}
spec:
  module: builtin:logs
  stdout: {logs}
  limits: {{flushInterval: 50ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: fanout}}
spec:
  adapters: [trap, loop, oom, down, ok]
  metrics:
  - {{name: requests_total, kind: COUNTER}}
  logs:
  - {{name: access, fields: {{path: request.url_path}}}}
  traces: {{}}
"#,
        logs = logs.display()
    ));
    std::fs::write(config.join("adapters.yaml"), yaml).expect("write");
    let mut hub = Hub::start(&config);

    for round in 0..4 {
        let bags: Vec<Bag> = (0..10).map(|i| bag(round * 10 + i)).collect();
        assert_eq!(report(&hub, &bags).accepted, 10);
        assert!(check_allowed(&hub), "Check answers while adapters fail");
    }
    wait_until(
        Duration::from_secs(30),
        "the healthy adapter to deliver every record",
        || std::fs::read_to_string(&logs).is_ok_and(|t| t.lines().count() == 40),
    );
    let restarts = |adapter: &str| {
        hub.metrics()
            .lines()
            .filter(|l| {
                l.starts_with("sextant_hub_adapter_restarts_total{")
                    && l.contains(&format!("adapter=\"default/{adapter}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    wait_until(
        Duration::from_secs(30),
        "each faulty adapter to be restarted",
        || ["trap", "loop", "oom"].iter().all(|a| restarts(a) >= 1.0),
    );
    wait_until(
        Duration::from_secs(30),
        "the adapter whose backend is down to drop after retries",
        || {
            hub.metrics().lines().any(|l| {
                l.starts_with("sextant_hub_adapter_records_dropped_total{")
                    && l.contains("adapter=\"default/down\"")
                    && !l.ends_with(" 0")
            })
        },
    );
    // The query API says what went wrong last with each, and nothing for the healthy one.
    let health = common::get_json(hub.admin, "/api/v1/adapters");
    let last_error = |adapter: &str| {
        let all = health["adapters"].as_array().cloned().unwrap_or_default();
        let a = all
            .iter()
            .find(|a| a["adapter"] == format!("default/{adapter}"))
            .unwrap_or_else(|| panic!("{adapter} in /api/v1/adapters: {health}"))
            .clone();
        a["last_error"]["message"].as_str().map(str::to_string)
    };
    for (adapter, kind) in [("trap", "trap"), ("loop", "deadline"), ("oom", "memory")] {
        let message = last_error(adapter).unwrap_or_default();
        assert!(
            message.starts_with(&format!("instance discarded ({kind})")),
            "{adapter}'s last error: {message:?}"
        );
    }
    let down = last_error("down").unwrap_or_default();
    assert!(down.contains("batch failed"), "down's last error: {down:?}");
    assert_eq!(last_error("ok"), None, "{health}");
    // The default prometheus adapter is unaffected by its neighbours.
    assert!(check_allowed(&hub));
    assert!(hub.proc.alive());
}

#[test]
fn a_wasm_file_that_is_not_a_component_is_refused_and_the_running_config_stays() {
    let (dir, config) = scratch_config("adapters-not-a-component");
    let hub = Hub::start(&config);
    let before = hub.revision();
    // A core module: valid Wasm, but not a component.
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    let yaml = format!(
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {{name: core}}\nspec:\n  module: {}\n",
        dir.join("core.wasm").display()
    );
    hub.write_config("core.yaml", &yaml, false);
    assert_eq!(
        hub.revision(),
        before,
        "the previous configuration keeps serving"
    );
    let debug = common::get(hub.admin, "/debug/config", &[])
        .expect("debug config")
        .body;
    assert!(
        debug.contains("core.yaml:5") && debug.contains("not a valid Wasm component"),
        "{debug}"
    );
    assert!(check_allowed(&hub));
}

/// A module file rebuilt in place (same path, new stamp) is noticed without any change to the resources and
/// loaded again.
#[test]
fn a_rebuilt_module_file_is_loaded_again() {
    let (dir, config) = scratch_config("adapters-rebuilt");
    let module = faulty_module(&dir);
    let hub = Hub::start(&config);
    let yaml = format!(
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Adapter\nmetadata: {{name: rebuilt}}\nspec:\n  module: {}\n  config: {{mode: ok}}\n",
        module.display()
    );
    hub.write_config("rebuilt.yaml", &yaml, true);
    let loaded = hub.revision();
    // "Rebuilt": the same bytes with a new modification time.
    let file = std::fs::File::options()
        .write(true)
        .open(&module)
        .expect("open the module");
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .expect("touch the module");
    drop(file);
    wait_until(
        Duration::from_secs(30),
        "the hub to load the rebuilt module",
        || hub.revision() > loaded,
    );
    assert!(check_allowed(&hub));
}

/// Hot reload under load: while Reports flow, the logs adapter's resource changes (a new instance takes over)
/// twice. Delivery semantics (docs/adapters.md): every record accepted by an adapter's queue is delivered by
/// the instance that accepted it, the replaced one draining its queue; nothing is lost or doubled when no
/// queue overflows. So the lines written equal the records reported, and all three instances wrote some.
#[test]
fn hot_reload_of_an_adapter_under_load_loses_nothing() {
    let (dir, config) = scratch_config("adapters-reload");
    let out = dir.join("lines.jsonl");
    let adapter = |name: &str| {
        format!(
            r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: sink}}
spec:
  module: builtin:logs
  config: {{name: {name}}}
  stdout: {out}
  limits: {{flushInterval: 20ms, batchSize: 50, queueLength: 100000}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: access}}
spec:
  adapters: [sink]
  logs:
  - {{name: access, fields: {{path: request.url_path}}}}
"#,
            out = out.display()
        )
    };
    std::fs::write(config.join("sink.yaml"), adapter("first")).expect("write");
    let hub = Hub::start(&config);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let grpc = hub.grpc;
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let mut client = MixerClient::connect(format!("http://{grpc}"))
                    .await
                    .expect("connect");
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bags: Vec<Bag> = (0..20).map(|k| bag(i * 20 + k)).collect();
                    let req = mixer::ReportRequest {
                        attributes: bags.iter().map(sextant_attributes::to_compressed).collect(),
                        default_words: Vec::new(),
                        global_word_count: sextant_attributes::global_word_count(),
                        repeated_attributes_semantics: 1,
                    };
                    let ack = client.report(req).await.expect("report").into_inner();
                    sent.fetch_add(ack.accepted, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
    };
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    };
    wait_until(Duration::from_secs(20), "records to flow", || lines() > 100);
    hub.write_config("sink.yaml", &adapter("second"), true);
    let after_first = lines();
    wait_until(
        Duration::from_secs(20),
        "the second instance to write",
        || lines() > after_first + 100,
    );
    hub.write_config("sink.yaml", &adapter("third"), true);
    let after_second = lines();
    wait_until(
        Duration::from_secs(20),
        "the third instance to write",
        || lines() > after_second + 100,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("load thread");
    let total = sent.load(std::sync::atomic::Ordering::Relaxed);
    wait_until(
        Duration::from_secs(20),
        "every accepted record to be written",
        || lines() >= total,
    );
    let text = std::fs::read_to_string(&out).expect("lines");
    let mut by_instance = std::collections::HashMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json line");
        *by_instance
            .entry(v["adapter"].as_str().unwrap_or_default().to_string())
            .or_insert(0u64) += 1;
    }
    assert_eq!(
        lines(),
        total,
        "no record lost or doubled across two reloads: {by_instance:?}"
    );
    for name in ["first", "second", "third"] {
        assert!(
            by_instance.get(name).copied().unwrap_or(0) > 0,
            "{name} wrote nothing: {by_instance:?}"
        );
    }
    assert_eq!(
        hub.metrics()
            .lines()
            .filter(
                |l| l.starts_with("sextant_hub_adapter_records_dropped_total{")
                    && !l.ends_with(" 0")
            )
            .count(),
        0,
        "no drops"
    );
}

/// `sextant check` against `hub` for a request to `service` at `path`: (exit ok, the printed JSON).
fn check(hub: &Hub, service: &str, path: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args([
            "check",
            "--hub",
            &hub.grpc.to_string(),
            "-a",
            &format!("destination.service.name={service}"),
            "-a",
            &format!("request.path={path}"),
        ])
        .output()
        .expect("run sextant check");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sextant check printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Policy adapters on the Check path: a policy names Wasm adapters whose `check` decides (the faulty test
/// adapter denies configured attribute values; it stands in for an external policy backend), a crashing one
/// follows its policy's failure policy, and a policy naming an adapter that cannot check is refused.
#[test]
fn policy_adapters_decide_checks_and_fail_as_their_policy_says() {
    let (dir, config) = scratch_config("adapters-policy");
    let faulty = faulty_module(&dir);
    let yaml = format!(
        r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: gate}}
spec:
  module: {faulty}
  config: {{deny: {{request.path: /admin}}, validForMs: 2000}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: broken}}
spec:
  module: {faulty}
  config: {{mode: trap}}
  limits: {{timePerBatch: 200ms}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: gated}}
spec:
  selector: destination.service.name == "reviews"
  adapters: [gate]
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: open}}
spec:
  selector: destination.service.name == "ratings"
  failurePolicy: FAIL_OPEN
  adapters: [broken]
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {{name: closed}}
spec:
  selector: destination.service.name == "details"
  failurePolicy: FAIL_CLOSE
  adapters: [broken]
"#,
        faulty = faulty.display()
    );
    std::fs::write(config.join("policy.yaml"), yaml).expect("write");
    let hub = Hub::start(&config);

    let denied = check(&hub, "reviews", "/admin");
    assert_eq!(denied["code"], 7, "PERMISSION_DENIED: {denied}");
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("request.path")),
        "the adapter's reason reaches the caller: {denied}"
    );
    let allowed = check(&hub, "reviews", "/reviews/1");
    assert_eq!(allowed["code"], 0, "{allowed}");
    let ttl = allowed["valid_duration_ms"].as_f64().unwrap_or(0.0);
    assert!(
        ttl > 0.0 && ttl <= 2000.0,
        "cacheable for the adapter's validity at most: {allowed}"
    );
    assert!(
        allowed["referenced"].to_string().contains("request.path"),
        "the decision depends on what the adapter saw: {allowed}"
    );
    let others = check(&hub, "productpage", "/admin");
    assert_eq!(
        others["code"], 0,
        "policies that do not apply ask no adapter: {others}"
    );

    let open = check(&hub, "ratings", "/");
    assert_eq!(
        open["code"], 0,
        "FAIL_OPEN lets a request through when its adapter traps: {open}"
    );
    let closed = check(&hub, "details", "/");
    assert_eq!(
        closed["code"], 14,
        "FAIL_CLOSE answers UNAVAILABLE: {closed}"
    );
    assert_eq!(
        closed["valid_duration_ms"].as_f64().unwrap_or(0.0),
        0.0,
        "{closed}"
    );
    let hits = hub.metrics();
    assert!(
        hits.lines()
            .any(|l| l.contains("adapter:default/gate") && l.contains("DENY")),
        "adapter decisions are counted per policy: {hits}"
    );

    // A policy may only name adapters that implement check: the running configuration stays.
    let before = hub.revision();
    hub.write_config(
        "bad.yaml",
        "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {name: bad}\nspec:\n  adapters: [sextant-system/prometheus]\n",
        false,
    );
    assert_eq!(hub.revision(), before);
    let debug = common::get(hub.admin, "/debug/config", &[])
        .expect("debug config")
        .body;
    assert!(
        debug.contains("bad.yaml:5")
            && debug.contains("adapter sextant-system/prometheus does not implement check"),
        "{debug}"
    );
    assert_eq!(check(&hub, "reviews", "/admin")["code"], 7);
}

#[test]
fn sigterm_delivers_the_reports_the_adapters_still_hold_then_exits() {
    let (dir, config) = scratch_config("drain");
    let logs = dir.join("access.jsonl");
    // A batch is delivered when full (10 000) or after an hour: only the drain delivers these.
    std::fs::write(
        config.join("logs.yaml"),
        format!(
            r#"
apiVersion: policy.sextant.dev/v1alpha1
kind: Adapter
metadata: {{name: logs}}
spec:
  module: builtin:logs
  stdout: {logs}
  limits: {{flushInterval: 1h, batchSize: 10000}}
---
apiVersion: policy.sextant.dev/v1alpha1
kind: Telemetry
metadata: {{name: access}}
spec:
  adapters: [logs]
  logs:
  - {{name: access, fields: {{path: request.url_path}}}}
"#,
            logs = logs.display()
        ),
    )
    .expect("write");
    let mut hub = Hub::start_with(
        &config,
        &["--no-default-telemetry", "--drain-timeout", "20s"],
    );
    let bags: Vec<Bag> = (0..50).map(bag).collect();
    assert_eq!(report(&hub, &bags).accepted, 50);
    let delivered = || {
        std::fs::read_to_string(&logs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(delivered(), 0, "held until the flush interval");
    let status = hub.proc.terminate();
    assert!(status.success(), "{status:?}\n{}", hub.proc.log());
    assert_eq!(delivered(), 50, "{}", hub.proc.log());
    assert!(
        hub.proc.log().contains("adapter drained"),
        "{}",
        hub.proc.log()
    );
}
