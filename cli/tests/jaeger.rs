//! Traces to a real Jaeger: Jaeger v1.75 all-in-one (built from the Go module proxy by `.ci/peers`) with its
//! OTLP/HTTP receiver and query API, and `sextant dev --otlp-endpoint … --jaeger-url …`. The hub's OTLP adapter
//! sends each sidecar's span; a user looking in Jaeger finds every bookinfo service, and in one trace the
//! reviews server span as the child of productpage's client span, which is the child of productpage's server
//! span; the dashboard's link leads to Jaeger's UI.

mod common;

use std::time::Duration;

use common::{Jaeger, get_json, scratch, start_dev, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// The service of span `s` in a Jaeger API trace.
fn service<'a>(trace: &'a serde_json::Value, s: &serde_json::Value) -> &'a str {
    s["processID"]
        .as_str()
        .and_then(|p| trace["processes"][p]["serviceName"].as_str())
        .unwrap_or("")
}

/// Whether `trace` holds a span of `child` whose parent (CHILD_OF) is a span of `parent` with `kind`.
fn child_of(trace: &serde_json::Value, child: &str, parent: &str, kind: &str) -> bool {
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let kind_of = |s: &serde_json::Value| {
        s["tags"].as_array().and_then(|tags| {
            tags.iter()
                .find(|t| t["key"] == "span.kind")
                .and_then(|t| t["value"].as_str().map(str::to_string))
        })
    };
    spans
        .iter()
        .filter(|s| service(trace, s) == child)
        .any(|s| {
            s["references"].as_array().is_some_and(|refs| {
                refs.iter().any(|r| {
                    r["refType"] == "CHILD_OF"
                        && spans.iter().any(|p| {
                            p["spanID"] == r["spanID"]
                                && service(trace, p) == parent
                                && kind_of(p).as_deref() == Some(kind)
                        })
                })
            })
        })
}

#[test]
fn the_mesh_traces_land_in_jaeger_with_their_parents() {
    let dir = scratch("jaeger");
    let jaeger = Jaeger::start(&dir);
    let api = jaeger.api;
    let jaeger_ui = format!("http://{api}");
    let otlp_endpoint = jaeger.otlp_http();
    let mut dev = start_dev(
        &dir,
        &dir.join("config"),
        180,
        60,
        &[
            "--otlp-endpoint",
            &otlp_endpoint,
            "--jaeger-url",
            &jaeger_ui,
        ],
    );
    let line = dev.proc.wait_for_line("dashboard    http://", WAIT);
    assert!(
        line.contains(&format!("?jaeger={jaeger_ui}")),
        "the dashboard links to Jaeger: {line}"
    );

    // Every bookinfo service reports its spans.
    wait_until(WAIT, "Jaeger to know every bookinfo service", || {
        let services = get_json(api, "/api/services");
        let known = |s: &str| {
            services["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == s))
        };
        ["productpage", "details", "reviews", "ratings"]
            .iter()
            .all(|s| known(s))
    });
    // And their parents: reviews' server span under productpage's client span, itself under productpage's
    // server span (each sidecar's span, as the hub reported it).
    let mut last = serde_json::Value::Null;
    let joined = common::eventually(WAIT, || {
        last = get_json(api, "/api/traces?service=reviews&limit=50&lookback=1h");
        last["data"].as_array().is_some_and(|traces| {
            traces.iter().any(|t| {
                child_of(t, "reviews", "productpage", "client")
                    && child_of(t, "productpage", "productpage", "server")
            })
        })
    });
    assert!(
        joined,
        "no trace joins reviews to productpage in Jaeger: {last}"
    );

    let status = dev.proc.stop_with("INT");
    assert!(status.success(), "sextant dev exited {status}");
    drop(jaeger);
}
