//! One bad resource never takes the mesh down (Istio's rule), through `sextant pilot` and a real Envoy 1.40:
//! pilot starts ready with an invalid resource among twenty-one valid ones and Envoy routes the valid ones;
//! fixing the invalid one brings it in; breaking a valid one leaves it out while the others change freely;
//! a route to a subset of a left-out DestinationRule answers 503; of two resources with one name the later
//! file's is left out; a file that is not YAML leaves out only itself. What is left out is on
//! `/debug/config` and in `pilot_config_rejected`; documents of Istio kinds pilot does not read are warned
//! about once per file and kind and counted; `sextant validate` says the same and fails only for errors.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    Backend, HeldPort, Plane, call, get, get_json, scratch_config, start_pilot, wait_until,
    write_atomically,
};

/// The services with a ServiceEntry, a DestinationRule and a VirtualService each (18 resources).
const ROUTED: [&str; 6] = ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-f"];

const WAIT: Duration = Duration::from_secs(60);

fn service_entry(name: &str, port: u16, v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {p1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {p2}}}, labels: {{version: v2}}}}
"#,
        p1 = v1.port(),
        p2 = v2.port()
    )
}

/// A DestinationRule with subsets v1 and v2; `broken`: v2 has no labels (invalid).
fn destination_rule(name: &str, broken: bool) -> String {
    let v2 = if broken {
        "{name: v2}"
    } else {
        "{name: v2, labels: {version: v2}}"
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {name}\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {v2}]\n"
    )
}

/// A VirtualService sending everything to `subset`; `broken`: an unknown retry condition (invalid).
fn virtual_service(name: &str, subset: &str, broken: bool) -> String {
    let retries = if broken {
        "    retries: {attempts: 1, retryOn: sometimes}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}, subset: {subset}}}\n{retries}"
    )
}

fn gateway() -> &'static str {
    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
}

/// The bodies (or statuses, when not 200) of a few calls to `host`.
fn answers(listener: SocketAddr, host: &str, calls: usize) -> BTreeSet<String> {
    (0..calls)
        .map(|_| match call(listener, host, "/") {
            Some((200, body)) => body,
            Some((status, _)) => status.to_string(),
            None => "no answer".to_string(),
        })
        .collect()
}

/// Waits until `host` answers only `want` (a body, or a status when not 200).
fn wait_for_only(listener: SocketAddr, host: &str, want: &str) {
    let want_set = BTreeSet::from([want.to_string()]);
    let mut last = BTreeSet::new();
    let what = format!("{host} to answer only {want}");
    wait_until(WAIT, &what, || {
        last = answers(listener, host, 6);
        last == want_set
    });
}

/// Waits until `host` is balanced over both versions (no VirtualService applies to it).
fn wait_for_both(listener: SocketAddr, host: &str) {
    let both = BTreeSet::from(["v1".to_string(), "v2".to_string()]);
    wait_until(WAIT, &format!("{host} to reach v1 and v2"), || {
        answers(listener, host, 8) == both
    });
}

fn metrics(monitoring: SocketAddr) -> String {
    get(monitoring, "/metrics", &[])
        .map(|r| r.body)
        .unwrap_or_default()
}

fn metric(monitoring: SocketAddr, series: &str) -> Option<f64> {
    metrics(monitoring).lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `/debug/config`'s rejected list as (kind, namespace/name, file:line).
fn rejected(monitoring: SocketAddr) -> Vec<(String, String, String)> {
    let config = get_json(monitoring, "/debug/config");
    config["rejected"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let at = r["at"].as_str().unwrap_or_default();
            let file = Path::new(at.split(':').next().unwrap_or_default())
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let line = at.rsplit(':').next().unwrap_or_default();
            (
                r["kind"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                ),
                format!("{file}:{line}"),
            )
        })
        .collect()
}

fn wait_for_rejected(monitoring: SocketAddr, want: &[(&str, &str, &str)]) {
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(k, n, at)| (k.to_string(), n.to_string(), at.to_string()))
        .collect();
    let mut last = Vec::new();
    wait_until(WAIT, &format!("/debug/config to list {want:?}"), || {
        last = rejected(monitoring);
        last == want
    });
}

fn validate(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("validate")
        .arg(dir)
        .arg("--no-default-telemetry")
        .output()
        .expect("run sextant validate");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_bad_resource_is_left_out_and_the_rest_is_served() {
    let (dir, config) = scratch_config("pilot-isolation");
    let (v1, v2) = (Backend::answering("v1"), Backend::answering("v2"));
    // One port for every service: Envoy binds it on 127.0.0.1 (no interception) and routes by host.
    let held = HeldPort::hold();
    let port = held.port();
    for name in ROUTED {
        let text = [
            service_entry(name, port, v1.addr, v2.addr),
            destination_rule(name, false),
            virtual_service(name, "v2", false),
        ]
        .join("---\n");
        std::fs::write(config.join(format!("{name}.yaml")), text).expect("write");
    }
    // svc-g: a ServiceEntry and a DestinationRule; its VirtualService is the one invalid resource (22 in
    // all, 21 valid).
    std::fs::write(
        config.join("svc-g.yaml"),
        [
            service_entry("svc-g", port, v1.addr, v2.addr),
            destination_rule("svc-g", false),
        ]
        .join("---\n"),
    )
    .expect("write");
    std::fs::write(config.join("gateway.yaml"), gateway()).expect("write");
    let broken = config.join("broken.yaml");
    std::fs::write(&broken, virtual_service("svc-g", "v2", true)).expect("write");

    // Pilot starts ready (start_pilot waits for /ready) and serves the 20 valid resources.
    let (pilot, xds, monitoring) = start_pilot(&config, "127.0.0.1:0");
    let ready = get(monitoring, "/ready", &[]).expect("ready").body;
    assert!(ready.contains("1 resources left out"), "{ready}");
    let envoy = Plane::Envoy.start(
        &dir.join("envoy"),
        xds,
        "GRPC",
        common::PRODUCTPAGE_NODE,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
    );
    let listener = held.addr;
    for name in ROUTED {
        wait_for_only(listener, name, "v2");
    }
    // Envoy ACKed every type at the version sent: nothing of what pilot served was refused.
    wait_until(WAIT, "Envoy to ACK every type", || {
        let sync = get_json(monitoring, "/debug/syncz");
        let Some(p) = sync.as_array().and_then(|a| a.first()) else {
            return false;
        };
        let types = p["types"].as_object().cloned().unwrap_or_default();
        ["cds", "eds", "lds", "rds"].iter().all(|t| {
            types
                .get(*t)
                .is_some_and(|s| s["acked"] == s["sent"] && s["last_nack"].is_null())
        })
    });
    // svc-g's VirtualService is left out: its service is balanced over both versions.
    wait_for_both(listener, "svc-g");
    wait_for_rejected(
        monitoring,
        &[("VirtualService", "default/svc-g", "broken.yaml:9")],
    );
    let config_json = get_json(monitoring, "/debug/config");
    let error = config_json["rejected"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("spec.http[0].retries.retryOn: unknown retry condition \"sometimes\""),
        "{config_json:#}"
    );
    assert_eq!(config_json["virtual_services"], 6, "{config_json:#}");
    assert_eq!(
        metric(
            monitoring,
            "pilot_config_rejected{kind=\"VirtualService\",namespace=\"default\",name=\"svc-g\"}"
        ),
        Some(1.0)
    );
    assert!(
        metric(monitoring, "pilot_config_reloads_total{result=\"partial\"}")
            .is_some_and(|n| n >= 1.0),
        "{}",
        metrics(monitoring)
    );
    assert!(
        pilot
            .log()
            .contains("broken.yaml:9: VirtualService default/svc-g"),
        "the log names the resource left out with file:line:\n{}",
        pilot.log()
    );

    // Fixing it brings it in.
    write_atomically(&broken, &virtual_service("svc-g", "v1", false));
    wait_for_only(listener, "svc-g", "v1");
    wait_for_rejected(monitoring, &[]);
    assert!(
        !metrics(monitoring).contains("pilot_config_rejected{"),
        "{}",
        metrics(monitoring)
    );
    assert!(
        metric(monitoring, "pilot_config_reloads_total{result=\"success\"}")
            .is_some_and(|n| n >= 1.0)
    );

    // Breaking a valid one leaves it out (its service falls back to the default route) while the others
    // change freely.
    let a = config.join("svc-a.yaml");
    let a_text = [
        service_entry("svc-a", port, v1.addr, v2.addr),
        destination_rule("svc-a", false),
        virtual_service("svc-a", "v2", true),
    ]
    .join("---\n");
    write_atomically(&a, &a_text);
    wait_for_both(listener, "svc-a");
    let b_text = [
        service_entry("svc-b", port, v1.addr, v2.addr),
        destination_rule("svc-b", false),
        virtual_service("svc-b", "v1", false),
    ]
    .join("---\n");
    write_atomically(&config.join("svc-b.yaml"), &b_text);
    wait_for_only(listener, "svc-b", "v1");
    wait_for_rejected(
        monitoring,
        &[("VirtualService", "default/svc-a", "svc-a.yaml:28")],
    );

    // A route to a subset of a left-out DestinationRule answers 503, as in Istio; the VirtualService
    // stays, so fixing the rule brings the route back.
    let c = config.join("svc-c.yaml");
    let c_text = |broken: bool| {
        [
            service_entry("svc-c", port, v1.addr, v2.addr),
            destination_rule("svc-c", broken),
            virtual_service("svc-c", "v2", false),
        ]
        .join("---\n")
    };
    write_atomically(&c, &c_text(true));
    wait_for_only(listener, "svc-c", "503");
    let listed = rejected(monitoring);
    assert!(
        listed.contains(&(
            "DestinationRule".into(),
            "default/svc-c".into(),
            "svc-c.yaml:18".into()
        )),
        "{listed:?}"
    );
    write_atomically(&c, &c_text(false));
    wait_for_only(listener, "svc-c", "v2");

    // Of two resources with one name, the later (by file path) is left out: svc-d keeps its route.
    write_atomically(
        &config.join("zz-duplicate.yaml"),
        &virtual_service("svc-d", "v1", false),
    );
    wait_for_rejected(
        monitoring,
        &[
            ("VirtualService", "default/svc-a", "svc-a.yaml:28"),
            ("VirtualService", "default/svc-d", "zz-duplicate.yaml:3"),
        ],
    );
    assert_eq!(answers(listener, "svc-d", 6), BTreeSet::from(["v2".into()]));

    // A file that is not YAML leaves out only itself.
    write_atomically(&config.join("garbage.yaml"), "kind: [\n");
    wait_until(WAIT, "the file to be listed", || {
        rejected(monitoring).iter().any(|(k, n, at)| {
            k == "file" && n.ends_with("garbage.yaml") && at.starts_with("garbage.yaml:")
        })
    });
    write_atomically(
        &config.join("svc-e.yaml"),
        &[
            service_entry("svc-e", port, v1.addr, v2.addr),
            destination_rule("svc-e", false),
            virtual_service("svc-e", "v1", false),
        ]
        .join("---\n"),
    );
    wait_for_only(listener, "svc-e", "v1");
    assert_eq!(answers(listener, "svc-f", 6), BTreeSet::from(["v2".into()]));

    // Envoy refused nothing pilot sent through all of it.
    assert_eq!(envoy.rejected_updates(), 0);

    // `sextant validate` names the same resources and fails for them.
    std::fs::remove_file(config.join("garbage.yaml")).expect("remove");
    let (code, stderr) = validate(&config);
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        "svc-a.yaml:28: VirtualService default/svc-a: spec.http[0].retries.retryOn",
        "zz-duplicate.yaml:3: VirtualService default/svc-d is defined twice",
    ] {
        assert!(stderr.contains(want), "{want} in:\n{stderr}");
    }
    drop(envoy);
    drop(pilot);
}

const LEGACY: &str = "apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata: {name: deny-all}\nspec:\n  match: 'true'\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt-a}\nspec: {}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt-b}\nspec: {}\n---\napiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: default}\nspec:\n  configPatches: []\n";

#[test]
fn documents_pilot_does_not_read_are_warned_about_and_counted() {
    let (_dir, config) = scratch_config("pilot-unread");
    let v = Backend::answering("v1");
    let held = HeldPort::hold();
    std::fs::write(
        config.join("svc.yaml"),
        service_entry("svc-a", held.port(), v.addr, v.addr),
    )
    .expect("write");
    let legacy = config.join("legacy.yaml");
    std::fs::write(&legacy, LEGACY).expect("write");
    let (pilot, _xds, monitoring) = start_pilot(&config, "127.0.0.1:0");
    for (series, want) in [
        (
            "pilot_config_unread_documents{group=\"config.istio.io\",kind=\"rule\"}",
            1.0,
        ),
        (
            "pilot_config_unread_documents{group=\"security.istio.io\",kind=\"RequestAuthentication\"}",
            2.0,
        ),
        (
            "pilot_config_unread_documents{group=\"networking.istio.io\",kind=\"EnvoyFilter\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric(monitoring, series), Some(want), "{series}");
    }
    // Not an error: nothing is left out, the reload is a success.
    assert!(rejected(monitoring).is_empty());
    let unread = get_json(monitoring, "/debug/config")["unread"].clone();
    assert_eq!(unread.as_array().map(Vec::len), Some(3), "{unread:#}");
    let warning = "legacy.yaml:7: security.istio.io/RequestAuthentication is not read by Sextant (2 documents): RequestAuthentication is not enforced yet";
    let log = pilot.log();
    assert!(log.contains(warning), "{log}");
    assert!(log.contains("legacy.yaml:1: config.istio.io/rule is not read by Sextant: Mixer's config.istio.io kinds are not read"), "{log}");
    assert!(log.contains("legacy.yaml:17: networking.istio.io/EnvoyFilter is not read by Sextant: EnvoyFilter is not supported"), "{log}");

    // Once per file and kind: another reload (another file changed) does not warn again.
    write_atomically(
        &config.join("svc.yaml"),
        &service_entry("svc-b", held.port(), v.addr, v.addr),
    );
    wait_until(WAIT, "the change to load", || {
        get_json(monitoring, "/debug/config")["services"]
            .to_string()
            .contains("svc-b")
    });
    assert_eq!(pilot.log().matches(warning).count(), 1, "{}", pilot.log());

    // `sextant validate`: the same warnings, and success, since nothing is an error.
    let (code, stderr) = validate(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {}", legacy.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "security.istio.io/RequestAuthentication is not read by Sextant (2 documents)"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("warning: ").count(), 3, "{stderr}");
    // With an error besides, it fails.
    std::fs::write(
        config.join("bad.yaml"),
        virtual_service("svc-b", "v1", true),
    )
    .expect("write");
    let (code, stderr) = validate(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("warning: ").count(), 3, "{stderr}");
    drop(pilot);
}
