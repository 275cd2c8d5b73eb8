//! Sextant's sidecar injector, as istiod's `/inject` webhook and `istioctl kube-inject` do it: a Pod (or the
//! Pod template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob) gets
//!
//! - the `sextant-init` init container (`sextant proxy-init`, istio-init's flags; NET_ADMIN and NET_RAW only),
//!   which captures the pod's TCP for the sidecar, shaped by Istio's `traffic.sidecar.istio.io/*`
//!   annotations;
//! - the `sextant-proxy` container (`sextant proxy`, uid 1337, read-only, no capabilities) that gets its
//!   configuration from pilot and its certificate with the pod's service-account token, projected with
//!   pilot's audience, checking pilot against the mesh root Istio publishes in every namespace (the
//!   `istio-ca-root-cert` ConfigMap); the pod's identity through the downward API (`POD_NAME`,
//!   `POD_NAMESPACE`, `INSTANCE_IP`, `SERVICE_ACCOUNT`) and its labels as node metadata; resources from
//!   `sidecar.istio.io/proxyCPU`… annotations;
//! - its application probes rewritten to the sidecar's status port ([`probes`]);
//! - Istio's bookkeeping: the `sidecar.istio.io/status` annotation (injecting twice changes nothing),
//!   `security.istio.io/tlsMode` and the canonical service labels, the default container for kubectl,
//!   Prometheus scrape annotations.
//!
//! Nothing is removed or replaced but the rewritten probes. A Pod labelled or annotated
//! `sidecar.istio.io/inject: "false"`, or on the host network, is left alone. Everything is pure: JSON in,
//! JSON (and the JSON Patch from one to the other) out.

pub mod probes;
pub mod settings;

use serde_json::{Map, Value, json};

pub use settings::Settings;

/// The injected proxy container.
pub const SIDECAR: &str = "sextant-proxy";
/// The injected init container.
pub const INIT: &str = "sextant-init";
/// The annotation saying what was injected (Istio's); its presence makes injection a no-op.
pub const STATUS: &str = "sidecar.istio.io/status";
/// The uid (and gid) the proxy runs as, whose traffic proxy-init lets through.
pub const PROXY_UID: i64 = 1337;
/// The proxy's Prometheus port.
pub const STATS_PORT: u16 = 15090;
/// The ConfigMap holding the mesh root (`root-cert.pem`) in each namespace, as Istio names it.
pub const ROOT_CERT_CONFIG_MAP: &str = "istio-ca-root-cert";
/// Where the sidecar finds the mesh root.
pub const ROOT_CERT_DIR: &str = "/var/run/secrets/istio";
/// Where the sidecar finds its service-account token.
pub const TOKEN_DIR: &str = "/var/run/secrets/tokens";
/// The token's audience Istio's agent asks for, and pilot's default.
pub const DEFAULT_AUDIENCE: &str = "istio-ca";

/// The injected volumes.
const TOKEN_VOLUME: &str = "sextant-token";
const ROOT_VOLUME: &str = "sextant-ca-root";

/// What the injector puts in a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The image of both containers, whose entrypoint is the `sextant` binary.
    pub image: String,
    /// Its pull policy (`None`: Kubernetes' default).
    pub pull_policy: Option<String>,
    /// Pilot's secure xDS and certificate address, `https://sextant-pilot.sextant-system.svc:15012`.
    pub xds_address: String,
    /// The name pilot's certificate carries.
    pub pilot_san: String,
    /// The audience of the projected service-account token (pilot's `--token-audience`).
    pub token_audience: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// The sidecar's resources when the Pod's annotations say nothing: (`requests`|`limits`, `cpu`|`memory`,
    /// quantity).
    pub resources: Vec<(&'static str, &'static str, String)>,
}

impl Options {
    /// Istio's defaults with `image`, pilot at `xds_address`: the token for `istio-ca`, pilot's certificate
    /// for `istiod.istio-system.svc`, trust domain `cluster.local`, 100m CPU and 128Mi requested, 2 CPUs
    /// and 1Gi at most.
    pub fn new(image: &str, xds_address: &str) -> Options {
        Options {
            image: image.to_string(),
            pull_policy: None,
            xds_address: xds_address.to_string(),
            pilot_san: "istiod.istio-system.svc".to_string(),
            token_audience: DEFAULT_AUDIENCE.to_string(),
            trust_domain: "cluster.local".to_string(),
            resources: vec![
                ("requests", "cpu", "100m".into()),
                ("requests", "memory", "128Mi".into()),
                ("limits", "cpu", "2".into()),
                ("limits", "memory", "1Gi".into()),
            ],
        }
    }
}

/// Why a Pod cannot be injected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InjectError {
    /// The object is not shaped as a Pod.
    #[error("not a Pod: {0}")]
    NotAPod(String),
    /// An annotation (or label) holds a value that cannot work.
    #[error("{key}: {value:?}: {why}")]
    Annotation {
        /// The annotation.
        key: String,
        /// Its value.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// Why a Pod was left as it was.
#[derive(Clone, Debug, PartialEq)]
pub enum Skipped {
    /// `sidecar.istio.io/inject: "false"`, as a label or an annotation.
    OptedOut(&'static str),
    /// It has been injected already.
    AlreadyInjected,
    /// It runs on the host's network, which proxy-init must not touch.
    HostNetwork,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::OptedOut(at) => write!(f, "opted out ({} {at})", settings::INJECT),
            Skipped::AlreadyInjected => write!(f, "already injected ({STATUS})"),
            Skipped::HostNetwork => write!(f, "on the host network"),
        }
    }
}

/// What injecting a Pod came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The injected Pod, and the JSON Patch (RFC 6902) that makes it from the original.
    Injected {
        /// The Pod with its sidecar.
        pod: Value,
        /// The operations from the original to it.
        patch: json_patch::Patch,
    },
    /// Left alone, and why.
    Skipped(Skipped),
}

/// Injects `pod`, a Pod or a Pod template (`metadata` and `spec`).
pub fn inject(pod: &Value, options: &Options) -> Result<Outcome, InjectError> {
    inject_in(pod, options, "")
}

/// [`inject`], the workload named `workload` when the Pod's metadata name none (a workload's template).
fn inject_in(pod: &Value, options: &Options, workload: &str) -> Result<Outcome, InjectError> {
    let meta = &pod["metadata"];
    let settings = settings::read(&meta["labels"], &meta["annotations"])?;
    if let Some(at) = settings.opted_out {
        return Ok(Outcome::Skipped(Skipped::OptedOut(at)));
    }
    let spec = pod
        .get("spec")
        .and_then(Value::as_object)
        .ok_or_else(|| InjectError::NotAPod("no spec".into()))?;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| InjectError::NotAPod("spec.containers is empty or missing".into()))?;
    let named = |list: Option<&Value>| {
        list.and_then(Value::as_array)
            .is_some_and(|l| l.iter().any(|c| c["name"] == SIDECAR || c["name"] == INIT))
    };
    if meta["annotations"].get(STATUS).is_some()
        || named(Some(&spec["containers"]))
        || named(spec.get("initContainers"))
    {
        return Ok(Outcome::Skipped(Skipped::AlreadyInjected));
    }
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        return Ok(Outcome::Skipped(Skipped::HostNetwork));
    }
    let app_containers: Vec<String> = containers
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();

    let mut injected = pod.clone();
    let probers = if settings.rewrite_probes {
        injected["spec"]["containers"]
            .as_array_mut()
            .map(|c| probes::rewrite(c))
            .unwrap_or_default()
    } else {
        Map::new()
    };
    let workload = Some(workload_name(meta))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| workload.to_string());
    let labels = add_labels(&mut injected["metadata"], &workload);
    let sidecar = sidecar(
        options,
        &settings,
        &workload,
        &labels,
        &app_containers,
        &probers,
    );
    let spec = &mut injected["spec"];
    let mut init = Vec::new();
    if settings.intercept {
        init.push(init_container(options, &settings));
    }
    if settings.native_sidecar {
        let mut native = sidecar;
        native["restartPolicy"] = json!("Always");
        init.push(native);
    } else {
        push(spec, "containers", vec![sidecar]);
    }
    push(spec, "initContainers", init);
    push(
        spec,
        "volumes",
        vec![
            json!({"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
                "audience": options.token_audience, "expirationSeconds": 43200, "path": "istio-token"}}]}}),
            json!({"name": ROOT_VOLUME, "configMap": {"name": ROOT_CERT_CONFIG_MAP}}),
        ],
    );
    add_annotations(&mut injected["metadata"], &settings, &app_containers);
    let patch = json_patch::diff(pod, &injected);
    Ok(Outcome::Injected {
        pod: injected,
        patch,
    })
}

/// The kinds whose Pod template [`inject_object`] injects, and where the template is.
const TEMPLATES: [(&str, &[&str]); 7] = [
    ("Deployment", &["spec", "template"]),
    ("StatefulSet", &["spec", "template"]),
    ("DaemonSet", &["spec", "template"]),
    ("ReplicaSet", &["spec", "template"]),
    ("ReplicationController", &["spec", "template"]),
    ("Job", &["spec", "template"]),
    ("CronJob", &["spec", "jobTemplate", "spec", "template"]),
];

/// Injects a resource as `istioctl kube-inject` does: a Pod, a workload's Pod template, or each item of a
/// `List`; other kinds are returned unchanged. The outcome of each Pod (or template) injected or skipped,
/// by `Kind namespace/name`.
pub fn inject_object(
    object: &mut Value,
    options: &Options,
) -> Result<Vec<(String, Outcome)>, InjectError> {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    if kind == "List" {
        let mut all = Vec::new();
        if let Some(items) = object["items"].as_array_mut() {
            for item in items {
                all.extend(inject_object(item, options)?);
            }
        }
        return Ok(all);
    }
    let name = format!(
        "{kind} {}/{}",
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default"),
        object["metadata"]["name"].as_str().unwrap_or_default()
    );
    let path: &[&str] = match kind.as_str() {
        "Pod" => &[],
        _ => match TEMPLATES.iter().find(|(k, _)| *k == kind) {
            Some((_, path)) => path,
            None => return Ok(Vec::new()),
        },
    };
    let workload = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut target = &mut *object;
    for key in path {
        target = &mut target[*key];
    }
    let outcome = inject_in(target, options, &workload).map_err(|e| match e {
        InjectError::NotAPod(why) => InjectError::NotAPod(format!("{name}: {why}")),
        e => e,
    })?;
    if let Outcome::Injected { pod, .. } = &outcome {
        *target = pod.clone();
    }
    Ok(vec![(name, outcome)])
}

/// Appends `items` to the array `spec[field]` (made when missing).
fn push(spec: &mut Value, field: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    if !spec[field].is_array() {
        spec[field] = json!([]);
    }
    if let Some(list) = spec[field].as_array_mut() {
        list.extend(items);
    }
}

/// The workload a Pod belongs to, as Istio names it: a Deployment's name from its ReplicaSet's, a CronJob's
/// from its Job's, else the controller's, the Pod's, or its generated name's prefix.
pub fn workload_name(meta: &Value) -> String {
    let owners = meta["ownerReferences"].as_array();
    let owner = owners.and_then(|o| {
        o.iter()
            .find(|r| r["controller"] == true)
            .or_else(|| o.first())
    });
    if let Some(owner) = owner {
        let name = owner["name"].as_str().unwrap_or_default();
        let strip = |suffix: &str| name.strip_suffix(suffix).map(str::to_string);
        match owner["kind"].as_str() {
            Some("ReplicaSet") => {
                if let Some(hash) = meta["labels"]["pod-template-hash"].as_str()
                    && let Some(deployment) = strip(&format!("-{hash}"))
                {
                    return deployment;
                }
            }
            Some("Job") => {
                // A CronJob's Jobs are named CRONJOB-<scheduled minute>.
                if let Some((cron, time)) = name.rsplit_once('-')
                    && !time.is_empty()
                    && time.chars().all(|c| c.is_ascii_digit())
                {
                    return cron.to_string();
                }
            }
            _ => {}
        }
        if !name.is_empty() {
            return name.to_string();
        }
    }
    match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) => g.trim_end_matches('-').to_string(),
        _ => String::new(),
    }
}

/// Adds Istio's labels where absent; the Pod's labels after.
fn add_labels(meta: &mut Value, workload: &str) -> Map<String, Value> {
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    let labels = &meta["labels"];
    let text = |k: &str| {
        labels[k]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let name = text("service.istio.io/canonical-name")
        .or_else(|| text("app.kubernetes.io/name"))
        .or_else(|| text("app"))
        .unwrap_or_else(|| workload.to_string());
    let revision = text("service.istio.io/canonical-revision")
        .or_else(|| text("app.kubernetes.io/version"))
        .or_else(|| text("version"))
        .unwrap_or_else(|| "latest".to_string());
    let Some(labels) = meta["labels"].as_object_mut() else {
        return Map::new();
    };
    for (k, v) in [
        ("security.istio.io/tlsMode", "istio".to_string()),
        ("service.istio.io/canonical-name", name),
        ("service.istio.io/canonical-revision", revision),
    ] {
        labels.entry(k).or_insert(json!(v));
    }
    labels.clone()
}

/// Adds the status annotation, the default container and Prometheus' annotations (unless the Pod has its
/// own).
fn add_annotations(meta: &mut Value, settings: &Settings, app_containers: &[String]) {
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    let Some(annotations) = meta["annotations"].as_object_mut() else {
        return;
    };
    let init: Vec<&str> = if settings.intercept {
        vec![INIT]
    } else {
        vec![]
    };
    let (init, containers): (Vec<&str>, Vec<&str>) = if settings.native_sidecar {
        ([init, vec![SIDECAR]].concat(), vec![])
    } else {
        (init, vec![SIDECAR])
    };
    let status = json!({
        "initContainers": init,
        "containers": containers,
        "volumes": [TOKEN_VOLUME, ROOT_VOLUME],
        "imagePullSecrets": null,
        "revision": "default",
    });
    annotations.insert(STATUS.into(), json!(status.to_string()));
    if let Some(first) = app_containers.first() {
        for key in [
            "kubectl.kubernetes.io/default-container",
            "kubectl.kubernetes.io/default-logs-container",
        ] {
            annotations.entry(key).or_insert(json!(first));
        }
    }
    if !annotations.keys().any(|k| k.starts_with("prometheus.io/")) {
        annotations.insert("prometheus.io/scrape".into(), json!("true"));
        annotations.insert("prometheus.io/port".into(), json!(STATS_PORT.to_string()));
        annotations.insert("prometheus.io/path".into(), json!("/stats/prometheus"));
    }
}

/// The resources of the sidecar (and the init container): the defaults, then the annotations'.
fn resources(options: &Options, settings: &Settings) -> Value {
    let mut out = json!({});
    for (group, resource, value) in options.resources.iter().chain(&settings.resources) {
        out[*group][*resource] = json!(value);
    }
    out
}

fn with_pull_policy(mut container: Value, options: &Options) -> Value {
    if let Some(policy) = &options.pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    container
}

/// `sextant proxy-init` with istio-init's flags.
fn init_container(options: &Options, settings: &Settings) -> Value {
    let mut flags: Vec<(&str, String)> = vec![
        ("-p", "15001".into()),
        ("-z", "15006".into()),
        ("-u", PROXY_UID.to_string()),
        ("-m", "REDIRECT".into()),
        ("-i", "*".into()),
        ("-x", String::new()),
        ("-b", "*".into()),
        ("-d", settings::OWN_INBOUND_PORTS.into()),
    ];
    for (flag, value) in &settings.traffic {
        let value = if *flag == "-d" {
            // The sidecar's own ports stay uncaptured whatever the Pod excludes besides.
            format!("{},{value}", settings::OWN_INBOUND_PORTS)
        } else {
            value.clone()
        };
        match flags.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) => slot.1 = value,
            None => flags.push((flag, value)),
        }
    }
    let mut args = vec![json!("proxy-init")];
    for (flag, value) in flags {
        args.push(json!(flag));
        args.push(json!(value));
    }
    with_pull_policy(
        json!({
            "name": INIT,
            "image": options.image,
            "args": args,
            "resources": resources(options, settings),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                "readOnlyRootFilesystem": false,
                "runAsGroup": 0,
                "runAsNonRoot": false,
                "runAsUser": 0,
            },
        }),
        options,
    )
}

/// `sextant proxy`, its identity from the downward API and the projected token.
fn sidecar(
    options: &Options,
    settings: &Settings,
    workload: &str,
    labels: &Map<String, Value>,
    app_containers: &[String],
    probers: &Map<String, Value>,
) -> Value {
    let field = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let value = |name: &str, value: &str| json!({"name": name, "value": value});
    let mut env = vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        field("INSTANCE_IP", "status.podIP"),
        field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field("HOST_IP", "status.hostIP"),
        value("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        value(
            "ISTIO_META_INTERCEPTION_MODE",
            if settings.intercept {
                "REDIRECT"
            } else {
                "NONE"
            },
        ),
        value("ISTIO_META_APP_CONTAINERS", &app_containers.join(",")),
        value(
            "ISTIO_METAJSON_LABELS",
            &Value::Object(labels.clone()).to_string(),
        ),
    ];
    if !workload.is_empty() {
        env.push(value("ISTIO_META_WORKLOAD_NAME", workload));
    }
    if !probers.is_empty() {
        env.push(value(
            "ISTIO_KUBE_APP_PROBERS",
            &Value::Object(probers.clone()).to_string(),
        ));
    }
    let status = format!("0.0.0.0:{}", probes::STATUS_PORT);
    let args = [
        "proxy",
        "--xds-addr",
        &options.xds_address,
        "--pilot-san",
        &options.pilot_san,
        "--root-cert",
        &format!("{ROOT_CERT_DIR}/root-cert.pem"),
        "--token-file",
        &format!("{TOKEN_DIR}/istio-token"),
        "--trust-domain",
        &options.trust_domain,
        "--admin-addr",
        "127.0.0.1:15000",
        "--stats-addr",
        &format!("0.0.0.0:{STATS_PORT}"),
        "--status-addr",
        &status,
    ];
    let ready = json!({"httpGet": {"path": "/healthz/ready", "port": probes::STATUS_PORT, "scheme": "HTTP"}});
    let mut readiness = ready.clone();
    readiness["periodSeconds"] = json!(15);
    readiness["timeoutSeconds"] = json!(3);
    readiness["failureThreshold"] = json!(4);
    let mut startup = ready;
    startup["periodSeconds"] = json!(1);
    startup["timeoutSeconds"] = json!(3);
    startup["failureThreshold"] = json!(600);
    with_pull_policy(
        json!({
            "name": SIDECAR,
            "image": options.image,
            "args": args,
            "env": env,
            "ports": [{"name": "http-envoy-prom", "containerPort": STATS_PORT, "protocol": "TCP"}],
            "readinessProbe": readiness,
            "startupProbe": startup,
            "resources": resources(options, settings),
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsGroup": PROXY_UID,
                "runAsNonRoot": true,
                "runAsUser": PROXY_UID,
            },
            "volumeMounts": [
                {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": true},
                {"name": ROOT_VOLUME, "mountPath": ROOT_CERT_DIR, "readOnly": true},
            ],
        }),
        options,
    )
}

#[cfg(test)]
mod tests;
