//! The Grafana dashboards of `deploy/grafana/` against the real thing: `sextant dev` (the bookinfo mesh with
//! its traffic) scraped by a real Prometheus as deploy/grafana/README.md says to scrape it — the hub's
//! adapter exposition (Istio's standard metrics), the hub's admin `/metrics`, pilot's `/metrics` and every
//! sidecar's `/stats/prometheus` with the pod's `app` and `version` labels — and every query of every panel
//! run through Prometheus's HTTP API. A user would notice: a dashboard that does not import (not JSON, a
//! panel without a title or query), a panel showing "No data" on a working mesh (a metric or label that does
//! not exist, a typo in PromQL, a selector that matches nothing), or a `$service` list that lacks a service.
//! Grafana itself is not available (see PEERS.md): its template variables are substituted here as Grafana
//! would, `$service` with `reviews` (three versions, callers and a callee, denials), `$__rate_interval`,
//! `$__interval` and `$__range` with durations.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use common::{Prometheus, ScrapeJob, TargetGroup, addrs_in, scratch, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const DASHBOARDS: &[&str] = &["mesh-overview.json", "service.json", "hub-internals.json"];
/// The sidecars' Prometheus port on their pod address (`STATS_PORT` in cli/src/dev/mesh.rs, Istio's 15090).
const SIDECAR_STATS_PORT: u16 = 15090;
/// What `$service` stands for: reviews has three versions, callers (productpage) and a callee (ratings).
const SERVICE: &str = "reviews";

/// One query of a dashboard, its template variables substituted.
struct Query {
    dashboard: &'static str,
    panel: String,
    legend: String,
    expr: String,
}

/// Grafana's substitution of the variables the dashboards use; a variable left over is reported by the
/// caller (Prometheus would refuse it anyway, less legibly).
fn substitute(expr: &str) -> String {
    expr.replace("${service}", SERVICE)
        .replace("$service", SERVICE)
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
}

/// The panels of a dashboard, those inside collapsed rows included.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// A query variable of a dashboard: `label_values(MATCHER, LABEL)`.
struct Variable {
    dashboard: &'static str,
    name: String,
    matcher: String,
    label: String,
}

/// Reads and checks every dashboard's structure; returns every query and query variable. Failures are
/// collected and reported together.
fn read_dashboards() -> (Vec<Query>, Vec<Variable>) {
    let dir = common::repo().join("deploy/grafana");
    let mut problems = Vec::new();
    let mut queries = Vec::new();
    let mut query_variables = Vec::new();
    for &name in DASHBOARDS {
        let text = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("cannot read deploy/grafana/{name}: {e}"));
        let d: serde_json::Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        if d["title"].as_str().is_none_or(str::is_empty) || d["uid"].as_str().is_none() {
            problems.push(format!("{name}: no title or uid"));
        }
        let variables = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let datasource = variables.iter().any(|v| {
            v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"
        });
        if !datasource {
            problems.push(format!(
                "{name}: no `datasource` template variable of type prometheus"
            ));
        }
        for v in variables.iter().filter(|v| v["type"] == "query") {
            let var = v["name"].as_str().unwrap_or_default().to_string();
            let query = v["query"]["query"].as_str().or(v["query"].as_str());
            let parsed = query
                .and_then(|q| q.trim().strip_prefix("label_values("))
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(','));
            match parsed {
                Some((matcher, label)) => query_variables.push(Variable {
                    dashboard: name,
                    name: var,
                    matcher: matcher.trim().to_string(),
                    label: label.trim().to_string(),
                }),
                None => problems.push(format!(
                    "{name}: variable {var:?} is not `label_values(METRIC, LABEL)`: {query:?}"
                )),
            }
        }
        let all = panels(&d);
        if all.is_empty() {
            problems.push(format!("{name}: no panels"));
        }
        for p in all {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            if title.trim().is_empty() {
                problems.push(format!("{name}: a panel without a title (id {})", p["id"]));
            }
            // A row only groups the panels below it: it has no query of its own.
            if p["type"] == "row" {
                continue;
            }
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!(
                    "{name}: panel {title:?} does not use the ${{datasource}} variable"
                ));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{name}: panel {title:?} has no target"));
            }
            for t in targets {
                let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                    problems.push(format!(
                        "{name}: panel {title:?}: target {} has no expr",
                        t["refId"]
                    ));
                    continue;
                };
                let expr = substitute(expr);
                if expr.contains('$') {
                    problems.push(format!(
                        "{name}: panel {title:?}: a variable is left in {expr:?}"
                    ));
                }
                queries.push(Query {
                    dashboard: name,
                    panel: title.clone(),
                    legend: t["legendFormat"].as_str().unwrap_or_default().to_string(),
                    expr,
                });
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboards are not well formed:\n{}",
        problems.join("\n")
    );
    (queries, query_variables)
}

/// What is wrong with `q`'s answer now, if anything: a Prometheus error, no series, or only NaN (Grafana
/// draws nothing for NaN: a quantile or ratio of nothing).
fn failure(prometheus: &Prometheus, q: &Query) -> Option<String> {
    match prometheus.try_query(&q.expr) {
        Err(e) => Some(format!("error {e}")),
        Ok(series) if series.is_empty() => Some("no series".to_string()),
        Ok(series) if series.iter().all(|(_, v)| v.is_nan()) => {
            Some(format!("only NaN ({} series)", series.len()))
        }
        Ok(_) => None,
    }
}

/// The value of a one-series query, 0 when it has none.
fn scalar(prometheus: &Prometheus, promql: &str) -> f64 {
    prometheus.query(promql).first().map_or(0.0, |(_, v)| *v)
}

#[test]
fn every_dashboard_query_answers_on_the_dev_mesh() {
    // The files first: a dashboard that does not parse fails before anything starts.
    let (queries, variables) = read_dashboards();

    let dir = scratch("grafana");
    // The demo's behaviour with reviews-v3 failing half of its requests instead of 5 %, so that 5xx
    // answers appear within seconds (the defaults make one every half minute or so); the rest as the
    // defaults (examples/dev/apps.yaml).
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("create the config dir");
    std::fs::write(
        config.join("apps.yaml"),
        "reviews-v1: {latency_ms: 5}\nreviews-v2: {latency_ms: 20}\nreviews-v3: {latency_ms: 60, error_percent: 50}\nratings-v1: {latency_ms: 2}\ndetails-v1: {latency_ms: 3}\n",
    )
    .expect("write apps.yaml");
    let common::DevMesh {
        proc: mut dev,
        admin: hub_admin,
        metrics: adapters,
        ..
    } = common::start_dev(&dir, &config, 10, 80, &[]);
    let line = dev.wait_for_line("  pilot ", WAIT);
    let [pilot] = addrs_in(&line)[..] else {
        panic!("pilot's line names one address: {line}");
    };
    // `sidecars  ratings-v1 http://IP:15000/stats, details-v1 http://IP:15000/stats, …`: each sidecar's
    // Prometheus stats are on the same pod address, port 15090.
    let line = dev.wait_for_line("  sidecars ", WAIT);
    let words: Vec<&str> = line.split_whitespace().collect();
    let sidecars: Vec<(String, String, SocketAddr)> = words
        .windows(2)
        .filter_map(|w| {
            let admin = addrs_in(w[1]).first().copied()?;
            let (app, version) = w[0].rsplit_once('-')?;
            Some((
                app.to_string(),
                version.to_string(),
                SocketAddr::new(admin.ip(), SIDECAR_STATS_PORT),
            ))
        })
        .collect();
    assert_eq!(sidecars.len(), 6, "six sidecars in {line}");

    // One Prometheus with a job per exposition, named and labelled as deploy/grafana/README.md asks (the
    // dashboards select sidecars by `app` and check the jobs' `up`): one server, as in a real deployment,
    // so that queries joining the hub's and the sidecars' metrics are tested as they will run.
    let job = |name: &str, path: &str, groups: Vec<TargetGroup>| ScrapeJob {
        name: name.to_string(),
        path: path.to_string(),
        groups,
    };
    let sidecar_groups = sidecars
        .iter()
        .map(|(app, version, addr)| {
            let labels = vec![
                ("app".to_string(), app.clone()),
                ("version".to_string(), version.clone()),
                ("namespace".to_string(), "bookinfo".to_string()),
            ];
            (vec![*addr], labels)
        })
        .collect();
    let prometheus = Prometheus::start_jobs(&[
        job(
            "sextant-hub-adapters",
            "/metrics",
            vec![(vec![adapters], vec![])],
        ),
        job("sextant-hub", "/metrics", vec![(vec![hub_admin], vec![])]),
        job("pilot", "/metrics", vec![(vec![pilot], vec![])]),
        job("envoy-stats", "/stats/prometheus", sidecar_groups),
    ]);
    // Target discovery batches every 5 s (PEERS.md).
    wait_until(WAIT, "Prometheus to scrape all nine targets", || {
        scalar(&prometheus, "count(up == 1)") == 9.0
    });

    // Pilot pushes at start, before Prometheus scraped it: a configuration change makes the pushes its
    // panels rate. A ServiceEntry nobody calls, imported by every sidecar (`bookinfo/*`), changes CDS.
    let cds = "sum(pilot_xds_pushes_total{type=\"cds\"})";
    let before = scalar(&prometheus, cds);
    std::fs::write(
        config.join("mesh/zz-dashboards.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: dashboards-probe, namespace: bookinfo}\nspec:\n  hosts: [dashboards-probe.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{number: 443, name: tls, protocol: TLS}]\n",
    )
    .expect("write a ServiceEntry");
    wait_until(WAIT, "Prometheus to see pilot push the change", || {
        scalar(&prometheus, cds) > before
    });

    // The demo's traffic in Prometheus, rates and all: every answer the dashboards break out (200, the
    // guest's 403, the bot's 429, reviews-v3's 503) at two scrapes or more, and the sidecars' stats.
    wait_until(WAIT, "the demo's traffic to be scraped", || {
        ["200", "403", "429", "503"].iter().all(|code| {
            scalar(
                &prometheus,
                &format!(
                    "sum(increase(istio_requests_total{{reporter=\"destination\",response_code=\"{code}\"}}[1m]))"
                ),
            ) > 0.0
        }) && scalar(
            &prometheus,
            "sum(rate(envoy_cluster_hub_check_cache_hit{app=\"reviews\"}[1m]))",
        ) > 0.0
    });

    // Every query, until each has an answer (a rate needs samples in its window) or the time is up; then
    // every one still failing is reported, with its dashboard and panel.
    let mut failing: HashMap<usize, String> = HashMap::new();
    let all_answer = common::eventually(Duration::from_secs(20), || {
        failing = queries
            .iter()
            .enumerate()
            .filter_map(|(i, q)| failure(&prometheus, q).map(|f| (i, f)))
            .collect();
        failing.is_empty()
    });
    if !all_answer {
        let mut report: Vec<String> = failing
            .iter()
            .map(|(i, f)| {
                let q = &queries[*i];
                format!(
                    "{} / {:?} ({}): {f}\n    {}",
                    q.dashboard,
                    q.panel,
                    q.legend,
                    q.expr.replace('\n', " ")
                )
            })
            .collect();
        report.sort();
        panic!(
            "{} of {} dashboard queries answer nothing on the dev mesh:\n{}",
            report.len(),
            queries.len(),
            report.join("\n")
        );
    }

    // The query variables (the service dashboard's `service`: `label_values(istio_requests_total,
    // destination_service_name)`) list every bookinfo service, so the one substituted above is offered.
    assert!(
        !variables.is_empty(),
        "service.json has its `service` variable"
    );
    for v in &variables {
        let values: BTreeSet<String> = prometheus
            .label_values(&v.matcher, &v.label)
            .into_iter()
            .collect();
        for s in ["productpage", "details", "reviews", "ratings"] {
            assert!(
                values.contains(s),
                "{}: `${}` would not offer {s}: {values:?}",
                v.dashboard,
                v.name
            );
        }
    }

    let status = dev.stop_with("INT");
    assert!(
        status.success(),
        "sextant dev exited {status}:\n{}",
        dev.log()
    );
}
