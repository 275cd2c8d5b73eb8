//! The Helm chart `deploy/helm/sextant` as an operator meets it: `helm lint` passes; values that cannot work
//! (no webhook CA bundle, one that is not a certificate) stop the install with what to give; what `helm
//! template` renders is accepted by a real API server (`kubectl apply --server-side --dry-run=server`); the
//! CRDs in the chart are the ones `sextant crds` generates from the Rust types; and the RBAC is least privilege:
//! the service accounts get exactly the permissions listed here (what the hub's and pilot's watchers, status
//! writer, Lease and TokenReview use), and those are enough: the hub and pilot, run with the chart's arguments
//! as its service accounts, list what they watch, and the hub writes a Policy's status.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Hub, get, peers, repo, scratch, start_pilot_with, wait_until};
use serde_json::Value;
use sextant_kube_harness::{Binaries, ControlPlane, Options};

const NAMESPACE: &str = "sextant-system";
const WAIT: Duration = Duration::from_secs(90);
const CRDS: &str = "deploy/helm/sextant/crds/policy.sextant.dev.yaml";

fn chart() -> PathBuf {
    repo().join("deploy/helm/sextant")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm ARGS` with its configuration, cache and data in `home` (never the user's).
fn helm(home: &Path, args: &[&str]) -> Output {
    Command::new(peers().join("helm/helm"))
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("run helm (built by .ci/peers)")
}

/// `helm template` of the chart into `sextant-system`, the CRDs included, with `args` (`--set K=V …`, split at
/// white space): the manifests, or what helm said.
fn render(home: &Path, args: &str) -> Result<String, String> {
    let chart = chart();
    let mut all = vec!["template", "sextant", chart.to_str().expect("a UTF-8 path")];
    all.extend(["--namespace", NAMESPACE, "--include-crds"]);
    all.extend(args.split_whitespace());
    let out = helm(home, &all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text(&out))
    }
}

/// Standard base64 of `bytes` (what a webhook's caBundle holds).
fn base64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

#[test]
fn crds_in_the_chart_are_the_ones_sextant_generates() {
    let out = Command::new(env!("CARGO_BIN_EXE_sextant"))
        .arg("crds")
        .output()
        .expect("run sextant crds");
    assert!(out.status.success(), "sextant crds: {}", text(&out));
    let generated = String::from_utf8_lossy(&out.stdout);
    let committed = std::fs::read_to_string(repo().join(CRDS)).unwrap_or_default();
    assert!(
        committed == generated,
        "{CRDS} is stale (the policy.sextant.dev types changed): run `sextant crds > {CRDS}` \
         (cargo run -p sextant-cli -- crds > {CRDS}) and commit it"
    );
}

#[test]
fn the_chart_lints_and_refuses_values_that_cannot_work() {
    let home = scratch("helm-lint");
    let chart = chart();
    let out = helm(
        &home,
        &["lint", "--strict", chart.to_str().expect("a UTF-8 path")],
    );
    assert!(out.status.success(), "helm lint --strict: {}", text(&out));
    assert!(text(&out).contains("0 chart(s) failed"), "{}", text(&out));

    // The webhooks need pilot's root; an install without it, or with something else, says what to give.
    let missing = render(&home, "").expect_err("no caBundle");
    assert!(
        missing.contains("webhooks.caBundle") && missing.contains("base64 -w0 root-cert.pem"),
        "{missing}"
    );
    let hello = format!("--set webhooks.caBundle={}", base64(b"hello"));
    let wrong = render(&home, &hello).expect_err("not a certificate");
    assert!(wrong.contains("not a PEM certificate"), "{wrong}");
    let no_ca = render(&home, "--set webhooks.caBundle=x --set pilot.caSecret=")
        .expect_err("webhooks without pilot's CA Secret");
    assert!(no_ca.contains("needs pilot.caSecret"), "{no_ca}");
    let hpa = "--set webhooks.enabled=false --set hub.hpa.enabled=true --set hub.hpa.minReplicas=4 \
               --set hub.hpa.maxReplicas=3";
    let hpa = render(&home, hpa).expect_err("min above max");
    assert!(hpa.contains("minReplicas <= maxReplicas"), "{hpa}");

    // values.schema.json: a misspelt value or a failure policy Kubernetes lacks is refused, not ignored.
    let typo = render(&home, "--set webhooks.enabled=false --set hub.replica=3").expect_err("typo");
    assert!(typo.contains("'replica' not allowed"), "{typo}");
    let policy = "--set webhooks.enabled=false --set webhooks.injection.failurePolicy=ignore";
    let policy = render(&home, policy).expect_err("no such failure policy");
    assert!(policy.contains("failurePolicy"), "{policy}");

    // Without webhooks, nothing asks for a bundle and no webhook is configured.
    let plain = render(&home, "--set webhooks.enabled=false").expect("renders");
    assert!(!plain.contains("WebhookConfiguration"), "{plain}");
    assert!(plain.contains("kind: CustomResourceDefinition"));
    assert!(
        !plain.contains("--redis-url") && !plain.contains("SEXTANT_REDIS_URL"),
        "no Redis unless given: {plain}"
    );

    assert!(
        !plain.contains("OTEL_"),
        "no OTLP export unless asked: {plain}"
    );

    // The components' own telemetry: the standard variables, the pod named on every span; a transport
    // the exporters lack is refused.
    let otel = render(
        &home,
        "--set webhooks.enabled=false --set otel.endpoint=http://collector.obs:4317 \
         --set otel.metrics=false",
    )
    .expect("renders");
    for env in [
        "name: OTEL_EXPORTER_OTLP_ENDPOINT\n              value: \"http://collector.obs:4317\"",
        "name: OTEL_METRICS_EXPORTER\n              value: none",
        "k8s.pod.name=$(POD_NAME)",
    ] {
        assert_eq!(
            otel.matches(env).count(),
            2,
            "hub and pilot get {env}: {otel}"
        );
    }
    let http = "--set webhooks.enabled=false --set otel.protocol=http";
    let http = render(&home, http).expect_err("no such protocol");
    assert!(http.contains("/otel/protocol"), "{http}");

    // GLOBAL rate limits: the replicas share the Redis given by URL, or by a Secret holding it.
    let url = render(
        &home,
        "--set webhooks.enabled=false --set hub.redis.url=redis://redis.data:6379",
    )
    .expect("renders");
    assert!(
        url.contains("- --redis-url=redis://redis.data:6379"),
        "{url}"
    );
    let secret = render(
        &home,
        "--set webhooks.enabled=false --set hub.redis.urlSecret.name=hub-redis",
    )
    .expect("renders");
    assert!(
        secret.contains("name: SEXTANT_REDIS_URL")
            && secret.contains("name: hub-redis")
            && secret.contains("key: url"),
        "{secret}"
    );
}

/// `kubectl ARGS` (split at white space) as the administrator with `stdin`.
fn kubectl(plane: &ControlPlane, args: &str, stdin: &str) -> Result<String, String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    plane.kubectl_with(&args, stdin).map_err(|e| e.to_string())
}

/// The objects of `kubectl … -o json` output: a List's items, or each object printed.
fn objects(json: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(json)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .flat_map(|v| match v["items"].as_array() {
            Some(items) if v["kind"] == "List" => items.clone(),
            _ => vec![v],
        })
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The strings of a JSON array (none when it is absent).
fn strings(v: &Value) -> Vec<String> {
    (v.as_array().into_iter().flatten())
        .map(|s| str_of(s).to_string())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the chart"))
}

/// The chart's container args for `deployment` after the subcommand, less those starting with one of `drop`.
fn args_of(objects: &[Value], deployment: &str, drop: &[&str]) -> Vec<String> {
    let pod = &find(objects, "Deployment", deployment)["spec"]["template"]["spec"];
    (strings(&pod["containers"][0]["args"]).into_iter().skip(1))
        .filter(|a| !drop.iter().any(|d| a.starts_with(d)))
        .collect()
}

/// One permission a service account holds: "ACCOUNT WHERE GROUP RESOURCE NAME VERB", WHERE `*` for the cluster
/// or a namespace, GROUP `core` for the core group, NAME `*` for any object.
fn grants(objects: &[Value]) -> BTreeSet<String> {
    let roles: Vec<&Value> = (objects.iter())
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .collect();
    let mut bound = BTreeSet::new();
    let mut out = BTreeSet::new();
    for binding in
        (objects.iter()).filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
    {
        let at = str_of(&binding["metadata"]["namespace"]);
        let reference = &binding["roleRef"];
        let role = (roles.iter())
            .find(|r| {
                r["kind"] == reference["kind"]
                    && r["metadata"]["name"] == reference["name"]
                    && (r["kind"] == "ClusterRole" || str_of(&r["metadata"]["namespace"]) == at)
            })
            .unwrap_or_else(|| panic!("binding {binding} names a role the chart lacks"));
        bound.insert(role.to_string());
        let at = if at.is_empty() { "*" } else { at };
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            assert_eq!(subject["kind"], "ServiceAccount", "{binding}");
            assert_eq!(subject["namespace"], NAMESPACE, "{binding}");
            let account = str_of(&subject["name"]);
            for rule in role["rules"].as_array().into_iter().flatten() {
                assert!(strings(&rule["nonResourceURLs"]).is_empty(), "{rule}");
                let mut names = strings(&rule["resourceNames"]);
                if names.is_empty() {
                    names.push("*".to_string());
                }
                for group in strings(&rule["apiGroups"]) {
                    let group = if group.is_empty() { "core" } else { &group };
                    for resource in strings(&rule["resources"]) {
                        for name in &names {
                            for verb in strings(&rule["verbs"]) {
                                out.insert(format!(
                                    "{account} {at} {group} {resource} {name} {verb}"
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    for role in roles {
        assert!(
            bound.contains(&role.to_string()),
            "{role} is bound to no one"
        );
    }
    out
}

/// What the hub and pilot use, and so all they may do; the hub's kinds in `hub_at` (`*`: every namespace).
fn needed(hub_at: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kind in ["policies", "ratelimits", "telemetries", "adapters"] {
        // The watchers list and watch; the status writer merge-patches /status.
        for verb in ["list", "watch"] {
            out.insert(format!(
                "sextant-hub {hub_at} policy.sextant.dev {kind} * {verb}"
            ));
        }
        out.insert(format!(
            "sextant-hub {hub_at} policy.sextant.dev {kind}/status * patch"
        ));
    }
    // The status Lease: made once, then read and renewed.
    let lease = format!("sextant-hub {NAMESPACE} coordination.k8s.io leases");
    out.insert(format!("{lease} * create"));
    out.insert(format!("{lease} sextant-hub-status get"));
    out.insert(format!("{lease} sextant-hub-status update"));
    for watched in [
        "core services",
        "core pods",
        "discovery.k8s.io endpointslices",
    ] {
        out.insert(format!("sextant-pilot * {watched} * list"));
        out.insert(format!("sextant-pilot * {watched} * watch"));
    }
    // Certificate requests authenticated by the API server.
    out.insert("sextant-pilot * authentication.k8s.io tokenreviews * create".to_string());
    // Istio's resources read, their status written by the Lease holder.
    for (group, kinds) in [
        (
            "networking.istio.io",
            &[
                "virtualservices",
                "destinationrules",
                "serviceentries",
                "workloadentries",
                "gateways",
                "sidecars",
            ][..],
        ),
        (
            "security.istio.io",
            &["authorizationpolicies", "peerauthentications"][..],
        ),
    ] {
        for kind in kinds {
            for verb in ["list", "watch"] {
                out.insert(format!("sextant-pilot * {group} {kind} * {verb}"));
            }
            out.insert(format!("sextant-pilot * {group} {kind}/status * patch"));
        }
    }
    let lease = format!("sextant-pilot {NAMESPACE} coordination.k8s.io leases");
    out.insert(format!("{lease} * create"));
    out.insert(format!("{lease} sextant-pilot-status get"));
    out.insert(format!("{lease} sextant-pilot-status update"));
    // The mesh root published into each namespace: that one ConfigMap.
    for verb in ["list", "watch"] {
        out.insert(format!("sextant-pilot * core namespaces * {verb}"));
    }
    for verb in ["list", "watch", "create", "patch"] {
        out.insert(format!(
            "sextant-pilot * core configmaps istio-ca-root-cert {verb}"
        ));
    }
    out
}

/// `kubectl auth can-i ARGS` as the chart's service account `account`: whether it may.
fn can(plane: &ControlPlane, account: &str, args: &str) -> bool {
    let out = (plane.kubectl().args(["auth", "can-i"]))
        .args(args.split_whitespace())
        .arg(format!("--as=system:serviceaccount:{NAMESPACE}:{account}"))
        .output()
        .expect("run kubectl auth can-i");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        answer == "yes" || answer == "no",
        "can-i {args}: {}",
        text(&out)
    );
    answer == "yes"
}

/// What the hub's account must be allowed (`kubectl auth can-i` arguments), and what it must not.
const HUB_MAY: &[&str] = &[
    "list policies.policy.sextant.dev -A",
    "watch ratelimits.policy.sextant.dev -A",
    "list telemetries.policy.sextant.dev -n shop",
    "watch adapters.policy.sextant.dev -n shop",
    "patch policies.policy.sextant.dev --subresource=status -n shop",
    "patch adapters.policy.sextant.dev --subresource=status -n shop",
    "create leases.coordination.k8s.io -n sextant-system",
    "get leases.coordination.k8s.io/sextant-hub-status -n sextant-system",
    "update leases.coordination.k8s.io/sextant-hub-status -n sextant-system",
];
const HUB_MAY_NOT: &[&str] = &[
    "delete policies.policy.sextant.dev -n shop",
    "update policies.policy.sextant.dev -n shop",
    "patch policies.policy.sextant.dev -n shop",
    "create policies.policy.sextant.dev -n shop",
    "update policies.policy.sextant.dev --subresource=status -n shop",
    "get secrets -n sextant-system",
    "list services -A",
    "update leases.coordination.k8s.io/someone-elses -n sextant-system",
    "delete leases.coordination.k8s.io/sextant-hub-status -n sextant-system",
    "create leases.coordination.k8s.io -n shop",
    "create tokenreviews.authentication.k8s.io",
    "watch namespaces",
    "update leases.coordination.k8s.io/sextant-pilot-status -n sextant-system",
    "patch configmaps/istio-ca-root-cert -n shop",
];
/// The same for pilot's account.
const PILOT_MAY: &[&str] = &[
    "list services -A",
    "watch pods -A",
    "list endpointslices.discovery.k8s.io -A",
    "watch endpointslices.discovery.k8s.io -n shop",
    "create tokenreviews.authentication.k8s.io",
    "watch namespaces",
    "update leases.coordination.k8s.io/sextant-pilot-status -n sextant-system",
    "patch configmaps/istio-ca-root-cert -n shop",
];
const PILOT_MAY_NOT: &[&str] = &[
    "get secrets -n sextant-system",
    "list secrets -A",
    "create pods -n shop",
    "delete services -n shop",
    "list configmaps -A",
    "get configmaps/kube-root-ca.crt -n shop",
    "patch configmaps/other -n shop",
    "update leases.coordination.k8s.io/sextant-hub-status -n sextant-system",
    "list policies.policy.sextant.dev -A",
    "create serviceaccounts --subresource=token -n shop",
    "patch mutatingwebhookconfigurations.admissionregistration.k8s.io",
];

/// A Policy in `shop`, as a user applies it.
const POLICY: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: Policy
metadata: {name: reviews-guard, namespace: shop}
spec:
  selector: 'destination.service.name == "reviews"'
  rules:
  - name: no-guests
    when: '"x-user" in request.headers && request.headers["x-user"] == "guest"'
    action: DENY
"#;

const DRY_RUN: &str = "apply --server-side --dry-run=server -o json -f -";

/// The workloads as the API server would store them: the hub's replicas, locked-down containers with probes
/// and their pod's name and namespace, webhooks that reach pilot's Service and trust `bundle`.
fn assert_workloads(applied: &[Value], bundle: &str) {
    assert_eq!(
        find(applied, "Deployment", "sextant-hub")["spec"]["replicas"],
        2
    );
    for name in ["sextant-hub", "sextant-pilot"] {
        let pod = &find(applied, "Deployment", name)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert!(container["readinessProbe"].is_object() && container["livenessProbe"].is_object());
        let env: Vec<&str> = (container["env"].as_array().into_iter().flatten())
            .map(|e| str_of(&e["name"]))
            .collect();
        assert!(
            env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"),
            "{env:?}"
        );
    }
    assert!(find(applied, "PodDisruptionBudget", "sextant-hub").is_object());
    for (kind, name, path, count) in [
        (
            "ValidatingWebhookConfiguration",
            "sextant-validation",
            "/validate",
            1,
        ),
        // Two: one namespace selector ANDs its terms, and either label injects.
        (
            "MutatingWebhookConfiguration",
            "sextant-injection",
            "/inject",
            2,
        ),
    ] {
        let webhooks = find(applied, kind, name)["webhooks"].as_array().cloned();
        let webhooks = webhooks.unwrap_or_default();
        assert_eq!(webhooks.len(), count, "{kind}");
        for webhook in webhooks {
            let client = &webhook["clientConfig"];
            assert_eq!(client["caBundle"], bundle, "{webhook}");
            assert_eq!(client["service"]["name"], "sextant-pilot");
            assert_eq!(client["service"]["port"], 443);
            assert_eq!(client["service"]["path"], path);
        }
    }
    let pilot = args_of(applied, "sextant-pilot", &[]);
    assert!(
        pilot.contains(&"--webhook-addr=0.0.0.0:15017".to_string())
            && pilot.contains(&format!(
                "--webhook-dns-names=sextant-pilot.{NAMESPACE}.svc"
            )),
        "pilot serves the webhooks on 15017 with a certificate for its Service: {pilot:?}"
    );
}

/// Asserts the chart grants exactly `expected`, naming what is over or under.
fn assert_grants(applied: &[Value], expected: &BTreeSet<String>) {
    let granted = grants(applied);
    assert!(
        granted == *expected,
        "granted beyond what is used: {:?}\nused but not granted: {:?}",
        granted.difference(expected).collect::<Vec<_>>(),
        expected.difference(&granted).collect::<Vec<_>>()
    );
}

#[test]
fn the_chart_installs_on_a_real_api_server_with_least_privilege() {
    let dir = scratch("helm-chart");
    let binaries = Binaries::from_peers(&peers()).unwrap_or_else(|e| panic!("{e}"));
    let plane = ControlPlane::start(&binaries, &dir.join("cluster"), &Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    for ns in [NAMESPACE, "shop"] {
        kubectl(&plane, &format!("create namespace {ns}"), "").unwrap_or_else(|e| panic!("{e}"));
    }

    // What `helm install` would send, taken by the API server (schemas, defaults, admission) without
    // storing it; the cluster's CA stands in for pilot's root.
    let root = plane.ca().to_str().expect("a UTF-8 path").to_string();
    let bundle = base64(
        std::fs::read_to_string(&root)
            .expect("a PEM root")
            .as_bytes(),
    );
    let manifests = render(&dir, &format!("--set webhooks.caBundle={bundle}"))
        .unwrap_or_else(|e| panic!("helm template: {e}"));
    let applied = kubectl(&plane, DRY_RUN, &manifests)
        .unwrap_or_else(|e| panic!("the rendered chart, dry-run: {e}"));
    let applied = objects(&applied);
    for crd in ["policies", "ratelimits", "telemetries", "adapters"] {
        find(
            &applied,
            "CustomResourceDefinition",
            &format!("{crd}.policy.sextant.dev"),
        );
    }
    for service in ["sextant-hub", "sextant-pilot"] {
        find(&applied, "Service", service);
    }
    assert_workloads(&applied, &bundle);
    assert_grants(&applied, &needed("*"));

    // One namespace's resources: a Role there instead of a ClusterRole; the autoscaler owns the replicas.
    // The root as PEM text (`--set-file`) ends up as the same bundle.
    let scoped = render(
        &dir,
        &format!(
            "--set-file webhooks.caBundle={root} --set hub.namespaceScope=shop --set hub.hpa.enabled=true"
        ),
    )
    .unwrap_or_else(|e| panic!("helm template: {e}"));
    let scoped = objects(
        &kubectl(&plane, DRY_RUN, &scoped)
            .unwrap_or_else(|e| panic!("the chart for one namespace, dry-run: {e}")),
    );
    assert_grants(&scoped, &needed("shop"));
    assert!(args_of(&scoped, "sextant-hub", &[]).contains(&"--namespace=shop".to_string()));
    let hpa = find(&scoped, "HorizontalPodAutoscaler", "sextant-hub");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "sextant-hub");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    let validation = find(
        &scoped,
        "ValidatingWebhookConfiguration",
        "sextant-validation",
    );
    assert_eq!(
        validation["webhooks"][0]["clientConfig"]["caBundle"],
        bundle.as_str()
    );

    // Installed for real (the webhooks aside: no pilot answers them here); the authorizer's word on what
    // each account may and may not do.
    let installed: Vec<&str> = (manifests.split("\n---\n"))
        .filter(|doc| !doc.contains("# Source: sextant/templates/webhooks.yaml"))
        .collect();
    kubectl(
        &plane,
        "apply --server-side -f -",
        &installed.join("\n---\n"),
    )
    .unwrap_or_else(|e| panic!("the chart, applied: {e}"));
    plane.crds_established().unwrap_or_else(|e| panic!("{e}"));
    for (account, may, may_not) in [
        ("sextant-hub", HUB_MAY, HUB_MAY_NOT),
        ("sextant-pilot", PILOT_MAY, PILOT_MAY_NOT),
    ] {
        for args in may {
            assert!(can(&plane, account, args), "{account} may {args}");
        }
        for args in may_not {
            assert!(!can(&plane, account, args), "{account} may not {args}");
        }
    }

    // Enough, not just allowed: the hub as its service account, with the chart's arguments, lists the
    // Policies, holds the Lease and writes a Policy's status.
    let account = |name: &str| {
        let groups = [
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{NAMESPACE}"),
        ];
        (plane.user(
            &format!("system:serviceaccount:{NAMESPACE}:{name}"),
            &groups,
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let ours = [
        "--kubernetes",
        "--grpc-addr=",
        "--admin-addr=",
        "--prometheus-addr=",
        "--adapter-cache=",
    ];
    let hub_args = args_of(&applied, "sextant-hub", &ours);
    let mut hub_args: Vec<&str> = hub_args.iter().map(String::as_str).collect();
    // In a pod, $POD_NAMESPACE says where the Lease is.
    hub_args.extend(["--lease-namespace", NAMESPACE]);
    let hub = Hub::start_kubernetes(&account("sextant-hub"), &hub_args);
    plane.apply(POLICY).unwrap_or_else(|e| panic!("{e}"));
    let accepted = "get policies.policy.sextant.dev -n shop reviews-guard \
                    -o jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}";
    wait_until(WAIT, "the hub to write the Policy's status", || {
        kubectl(&plane, accepted, "").is_ok_and(|s| s.trim() == "True")
    });
    let lease = kubectl(
        &plane,
        "get lease -n sextant-system sextant-hub-status -o json",
        "",
    )
    .unwrap_or_else(|e| panic!("the status Lease: {e}"));
    assert!(lease.contains("holderIdentity"), "{lease}");
    drop(hub);

    // Pilot as its service account, with the chart's arguments: Services, EndpointSlices and Pods listed
    // (it is ready), the chart's own Services among the mesh's.
    let (config, ca) = (dir.join("pilot-config"), dir.join("pilot-ca"));
    std::fs::create_dir_all(&config).expect("pilot's config dir");
    let ours = [
        "--config-dir=",
        "--ca-dir=",
        "--xds-addr=",
        "--secure-xds-addr=",
        "--monitoring-addr=",
        "--webhook-addr=",
    ];
    let pilot_args = args_of(&applied, "sextant-pilot", &ours);
    let mut args: Vec<&str> = pilot_args.iter().map(String::as_str).collect();
    let ca_dir = format!("--ca-dir={}", ca.display());
    let kubeconfig = format!("--kubeconfig={}", account("sextant-pilot").display());
    // In a pod, $POD_NAMESPACE says where the Lease is.
    args.extend([
        ca_dir.as_str(),
        kubeconfig.as_str(),
        "--webhook-addr=127.0.0.1:0",
        "--lease-namespace",
        NAMESPACE,
    ]);
    let (mut pilot, _xds, monitoring) = start_pilot_with(&config, "127.0.0.1:0", &args);
    wait_until(WAIT, "pilot to serve the hub's Service", || {
        get(monitoring, "/debug/config", &[]).is_some_and(|r| {
            r.body
                .contains("sextant-hub.sextant-system.svc.cluster.local")
        })
    });
    // And publishes its root where sidecars will mount it.
    let root = std::fs::read_to_string(ca.join("root-cert.pem")).expect("pilot's root");
    wait_until(WAIT, "pilot to publish its root in shop", || {
        kubectl(
            &plane,
            "get configmap istio-ca-root-cert -n shop -o jsonpath={.data.root-cert\\.pem}",
            "",
        )
        .is_ok_and(|pem| pem == root)
    });
    wait_until(WAIT, "pilot to hold its status Lease", || {
        kubectl(
            &plane,
            "get lease -n sextant-system sextant-pilot-status -o json",
            "",
        )
        .is_ok_and(|l| l.contains("holderIdentity"))
    });
    let log = pilot.log();
    assert!(!log.to_lowercase().contains("forbidden"), "{log}");
    assert!(pilot.alive());
}
