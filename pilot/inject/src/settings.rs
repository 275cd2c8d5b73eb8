//! What a Pod asks of its sidecar through Istio's labels and annotations, read and validated in one pure step
//! before anything is added: whether to inject at all, the traffic proxy-init captures, the sidecar's
//! resources, probe rewriting and native sidecars. A value that cannot work is an error naming the
//! annotation and what it holds.

use std::net::IpAddr;

use serde_json::Value;

use crate::InjectError;

/// `sidecar.istio.io/inject`, as a label (which wins) or an annotation.
pub const INJECT: &str = "sidecar.istio.io/inject";
/// `sidecar.istio.io/rewriteAppHTTPProbers: "false"` keeps the application's probes as they are.
pub const REWRITE_PROBES: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
/// `sidecar.istio.io/interceptionMode`: `REDIRECT` (the default) or `NONE` (no proxy-init).
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
/// `sidecar.istio.io/nativeSidecar: "true"`: the proxy as a Kubernetes native sidecar (an init container
/// with `restartPolicy: Always`), started before and stopped after the application's containers.
pub const NATIVE_SIDECAR: &str = "sidecar.istio.io/nativeSidecar";

/// The traffic annotations and the proxy-init flag each sets.
const TRAFFIC: [(&str, &str, Syntax); 6] = [
    (
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "-i",
        Syntax::CidrsOrAll,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "-x",
        Syntax::Cidrs,
    ),
    (
        "traffic.sidecar.istio.io/includeInboundPorts",
        "-b",
        Syntax::PortsOrAll,
    ),
    (
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "-d",
        Syntax::Ports,
    ),
    (
        "traffic.sidecar.istio.io/includeOutboundPorts",
        "-q",
        Syntax::Ports,
    ),
    (
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "-o",
        Syntax::Ports,
    ),
];

/// The resource annotations and the field each sets.
const RESOURCES: [(&str, &str, &str); 4] = [
    ("sidecar.istio.io/proxyCPU", "requests", "cpu"),
    ("sidecar.istio.io/proxyMemory", "requests", "memory"),
    ("sidecar.istio.io/proxyCPULimit", "limits", "cpu"),
    ("sidecar.istio.io/proxyMemoryLimit", "limits", "memory"),
];

/// The sidecar's own ports, never captured inbound (Prometheus, Istio's health port, the status port).
pub const OWN_INBOUND_PORTS: &str = "15090,15021,15020";

#[derive(Clone, Copy)]
enum Syntax {
    CidrsOrAll,
    Cidrs,
    PortsOrAll,
    Ports,
}

/// What the Pod's labels and annotations ask for.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `Some(where)` when the Pod opted out (`label` or `annotation`).
    pub opted_out: Option<&'static str>,
    /// Whether the application's probes are rewritten to the sidecar's status port.
    pub rewrite_probes: bool,
    /// `false` with `interceptionMode: NONE`: no proxy-init, nothing captured.
    pub intercept: bool,
    /// The proxy as a native sidecar.
    pub native_sidecar: bool,
    /// proxy-init's flags from the traffic annotations (`-i`, `*`), in a fixed order.
    pub traffic: Vec<(&'static str, String)>,
    /// The sidecar's resources from the annotations: (`requests`|`limits`, `cpu`|`memory`, quantity).
    pub resources: Vec<(&'static str, &'static str, String)>,
}

/// Reads the Pod's `labels` and `annotations` (either may be null).
pub fn read(labels: &Value, annotations: &Value) -> Result<Settings, InjectError> {
    let annotation = |key: &str| annotations.get(key).and_then(Value::as_str);
    let flag = |key: &'static str, value: &str| {
        boolean(value).ok_or_else(|| InjectError::Annotation {
            key: key.to_string(),
            value: value.to_string(),
            why: "not a boolean (true, false, yes, no, on, off)".into(),
        })
    };
    let opted_out = match (
        labels.get(INJECT).and_then(Value::as_str),
        annotation(INJECT),
    ) {
        (Some(v), _) => (!flag(INJECT, v)?).then_some("label"),
        (None, Some(v)) => (!flag(INJECT, v)?).then_some("annotation"),
        (None, None) => None,
    };
    let rewrite_probes = annotation(REWRITE_PROBES)
        .map(|v| flag(REWRITE_PROBES, v))
        .transpose()?
        .unwrap_or(true);
    let native_sidecar = annotation(NATIVE_SIDECAR)
        .map(|v| flag(NATIVE_SIDECAR, v))
        .transpose()?
        .unwrap_or(false);
    let intercept = match annotation(INTERCEPTION_MODE) {
        None => true,
        Some(m) if m.eq_ignore_ascii_case("REDIRECT") => true,
        Some(m) if m.eq_ignore_ascii_case("NONE") => false,
        Some(m) => {
            return Err(InjectError::Annotation {
                key: INTERCEPTION_MODE.into(),
                value: m.into(),
                why: "REDIRECT or NONE (proxy-init has no TPROXY mode)".into(),
            });
        }
    };
    let mut traffic = Vec::new();
    for (key, flag, syntax) in TRAFFIC {
        let Some(value) = annotation(key) else {
            continue;
        };
        let value = value.trim();
        check(syntax, value).map_err(|why| InjectError::Annotation {
            key: key.into(),
            value: value.into(),
            why,
        })?;
        traffic.push((flag, value.replace(' ', "")));
    }
    let mut resources = Vec::new();
    for (key, group, resource) in RESOURCES {
        if let Some(value) = annotation(key) {
            if !quantity(value) {
                return Err(InjectError::Annotation {
                    key: key.into(),
                    value: value.into(),
                    why: "not a Kubernetes quantity (100m, 0.5, 128Mi, 1G)".into(),
                });
            }
            resources.push((group, resource, value.to_string()));
        }
    }
    Ok(Settings {
        opted_out,
        rewrite_probes,
        intercept,
        native_sidecar,
        traffic,
        resources,
    })
}

/// Istio's booleans: y, yes, true, on / n, no, false, off (any case).
fn boolean(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

fn check(syntax: Syntax, value: &str) -> Result<(), String> {
    let all = matches!(syntax, Syntax::CidrsOrAll | Syntax::PortsOrAll);
    if all && value == "*" {
        return Ok(());
    }
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match syntax {
            Syntax::CidrsOrAll | Syntax::Cidrs => cidr(item)
                .ok_or_else(|| format!("{item:?} is not a CIDR (10.0.0.0/8, fd00::/8)"))?,
            Syntax::PortsOrAll | Syntax::Ports => {
                item.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{item:?} is not a port (1-65535)"))?;
            }
        }
    }
    Ok(())
}

fn cidr(text: &str) -> Option<()> {
    let (ip, prefix) = text.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(())
}

/// Whether `text` is a Kubernetes quantity: a decimal number, then an optional binary (Ki…Ei), decimal
/// (n, u, m, k, M, G, T, P, E) or exponent (e3) suffix.
pub fn quantity(text: &str) -> bool {
    let number_end = text
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map_or(text.len(), |(i, _)| i);
    let (number, suffix) = text.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    let valid_number = !digits.is_empty()
        && digits != "."
        && digits.matches('.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    let valid_suffix = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix.strip_prefix(['e', 'E']).is_some_and(|exp| {
        let exp = exp.trim_start_matches(['+', '-']);
        !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
    });
    valid_number && valid_suffix
}
