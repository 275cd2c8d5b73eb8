//! What to export and where: a role's `--otlp-endpoint`/`--otlp-protocol` flags and OpenTelemetry's standard
//! `OTEL_*` variables, read and validated in one pure step before anything starts. A bad value is an error
//! naming the variable (or flag) and what it should be.

use std::time::Duration;

/// The standard variable naming the collector's base URL.
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable choosing the wire protocol.
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The standard variable naming the service.
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// The standard variable adding resource attributes (`k=v,k2=v2`, values percent-encoded).
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// The standard variable choosing the sampler.
pub const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// The standard variable holding the sampler's argument (the ratio).
pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// The standard variable turning the SDK off whatever else is set.
pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// The standard variable bounding the span queue.
pub const QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// The standard variable bounding one export's spans.
pub const BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// The standard variable: how long (ms) a span may wait for its batch.
pub const SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// The standard variable: how long (ms) one export may take.
pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// The standard variable: how often (ms) metrics are exported.
pub const METRIC_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// The standard variable choosing the span exporter: `otlp` (the default) or `none`.
pub const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// The standard variable choosing the metric exporter: `otlp` (the default) or `none` (for a backend
/// that takes only spans, such as Jaeger).
pub const METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";

/// The ratio sampled when nothing says otherwise: 1%, as Istio's default. A caller's sampled trace is
/// always followed whatever the ratio.
pub const DEFAULT_RATIO: f64 = 0.01;

/// OTLP's two binary transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (the collector's port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, paths `/v1/traces` and `/v1/metrics`).
    HttpProtobuf,
}

/// Which spans are recorded and exported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share of traces, by trace id.
    Ratio(f64),
    /// As the caller decided when a caller's context came with the request, else the inner rule.
    ParentBased(Root),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    /// Every one.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// This share, by trace id.
    Ratio(f64),
}

/// The validated options; `None` from [`resolve`] means export is off.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The collector's base URL (`http://host:4317`, `http://host:4318`).
    pub endpoint: String,
    /// How to talk to it.
    pub protocol: Protocol,
    /// `service.name`.
    pub service_name: String,
    /// Further resource attributes, in the order given.
    pub resource: Vec<(String, String)>,
    /// The sampler.
    pub sampling: Sampling,
    /// Spans waiting for export at most; one more is dropped and counted.
    pub queue_size: usize,
    /// Spans in one export at most.
    pub batch_size: usize,
    /// How long a span waits for a full batch at most.
    pub schedule_delay: Duration,
    /// How long one export may take before it counts as failed.
    pub timeout: Duration,
    /// How often the role's metrics are exported.
    pub metric_interval: Duration,
    /// Whether spans are exported (`OTEL_TRACES_EXPORTER` is not `none`).
    pub traces: bool,
    /// Whether metrics are exported (`OTEL_METRICS_EXPORTER` is not `none`).
    pub metrics: bool,
}

impl Options {
    /// The URL one signal goes to: the endpoint itself for gRPC, `ENDPOINT/v1/traces` (or `metrics`) for
    /// HTTP, as the OTLP exporter specification builds it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn signal_url(&self, signal: &str) -> String {
        match self.protocol {
            Protocol::Grpc => self.endpoint.clone(),
            Protocol::HttpProtobuf => {
                format!("{}/v1/{signal}", self.endpoint.trim_end_matches('/'))
            }
        }
    }
}

/// The role's own flags (each overrides its variable).
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--otlp-endpoint`.
    pub endpoint: Option<String>,
    /// `--otlp-protocol`.
    pub protocol: Option<String>,
}

/// A value that cannot be used; names where it came from.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{source_name}={value:?}: {want}")]
pub struct OptionsError {
    /// The flag or variable.
    pub source_name: String,
    /// What it held.
    pub value: String,
    /// What it should hold.
    pub want: String,
}

fn error(source_name: &str, value: &str, want: impl Into<String>) -> OptionsError {
    OptionsError {
        source_name: source_name.to_string(),
        value: value.to_string(),
        want: want.into(),
    }
}

/// Reads the options from `flags` and the variables `env` looks up; `default_service` names the role when
/// neither `OTEL_SERVICE_NAME` nor a `service.name` resource attribute does. `Ok(None)`: no endpoint is set,
/// or `OTEL_SDK_DISABLED=true`: nothing is exported. Pure: `env` is the only input besides the flags.
pub fn resolve(
    flags: &Flags,
    env: impl Fn(&str) -> Option<String>,
    default_service: &str,
) -> Result<Option<Options>, OptionsError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(v) = var(SDK_DISABLED) {
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => return Ok(None),
            "false" => {}
            _ => return Err(error(SDK_DISABLED, &v, "want true or false")),
        }
    }
    let (endpoint_from, endpoint) = match (&flags.endpoint, var(ENDPOINT)) {
        (Some(e), _) => ("--otlp-endpoint", e.clone()),
        (None, Some(e)) => (ENDPOINT, e),
        (None, None) => return Ok(None),
    };
    let endpoint = checked_endpoint(endpoint_from, endpoint.trim())?;
    let (traces, metrics) = (
        exporter(TRACES_EXPORTER, var(TRACES_EXPORTER))?,
        exporter(METRICS_EXPORTER, var(METRICS_EXPORTER))?,
    );
    if !traces && !metrics {
        return Ok(None);
    }
    let protocol = match (&flags.protocol, var(PROTOCOL)) {
        (Some(p), _) => protocol("--otlp-protocol", p)?,
        (None, Some(p)) => protocol(PROTOCOL, &p)?,
        (None, None) => Protocol::Grpc,
    };
    let resource = match var(RESOURCE_ATTRIBUTES) {
        Some(v) => resource_attributes(&v)?,
        None => Vec::new(),
    };
    let service_name = var(SERVICE_NAME)
        .map(|s| s.trim().to_string())
        .or_else(|| {
            resource
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| default_service.to_string());
    let sampling = sampling(var(SAMPLER).as_deref(), var(SAMPLER_ARG).as_deref())?;
    let queue_size = positive(QUEUE_SIZE, var(QUEUE_SIZE), 2048)?;
    let batch_size = positive(BATCH_SIZE, var(BATCH_SIZE), 512)?.min(queue_size);
    let millis = |name: &str, default: u64| -> Result<Duration, OptionsError> {
        Ok(Duration::from_millis(
            positive(name, var(name), default as usize)? as u64,
        ))
    };
    Ok(Some(Options {
        endpoint,
        protocol,
        service_name,
        resource: resource
            .into_iter()
            .filter(|(k, _)| k != "service.name")
            .collect(),
        sampling,
        queue_size,
        batch_size,
        schedule_delay: millis(SCHEDULE_DELAY, 5000)?,
        timeout: millis(TIMEOUT, 10_000)?,
        metric_interval: millis(METRIC_INTERVAL, 60_000)?,
        traces,
        metrics,
    }))
}

fn checked_endpoint(from: &str, e: &str) -> Result<String, OptionsError> {
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or_else(|| error(from, e, "want http://HOST:PORT or https://HOST:PORT"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains(['?', '#', ' ']) {
        return Err(error(from, e, "want http://HOST:PORT or https://HOST:PORT"));
    }
    Ok(e.to_string())
}

/// `otlp` (or unset): on; `none`: off.
fn exporter(name: &str, v: Option<String>) -> Result<bool, OptionsError> {
    match v.as_deref().map(str::trim) {
        None | Some("otlp") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(error(name, other, "want otlp or none")),
    }
}

fn protocol(from: &str, p: &str) -> Result<Protocol, OptionsError> {
    match p.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        _ => Err(error(from, p, "want grpc or http/protobuf")),
    }
}

fn positive(name: &str, v: Option<String>, default: usize) -> Result<usize, OptionsError> {
    match v {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(error(name, &v, "want a whole number above 0")),
        },
    }
}

fn ratio(arg: Option<&str>) -> Result<f64, OptionsError> {
    match arg {
        None => Ok(DEFAULT_RATIO),
        Some(a) => match a.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(error(SAMPLER_ARG, a, "want a ratio from 0 to 1")),
        },
    }
}

fn sampling(name: Option<&str>, arg: Option<&str>) -> Result<Sampling, OptionsError> {
    Ok(match name.map(str::trim) {
        None | Some("parentbased_traceidratio") => Sampling::ParentBased(Root::Ratio(ratio(arg)?)),
        Some("always_on") => Sampling::AlwaysOn,
        Some("always_off") => Sampling::AlwaysOff,
        Some("traceidratio") => Sampling::Ratio(ratio(arg)?),
        Some("parentbased_always_on") => Sampling::ParentBased(Root::AlwaysOn),
        Some("parentbased_always_off") => Sampling::ParentBased(Root::AlwaysOff),
        Some(other) => {
            return Err(error(
                SAMPLER,
                other,
                "want always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    })
}

/// `k=v,k2=v2` with percent-encoded values (W3C Baggage's form, as the specification says).
fn resource_attributes(v: &str) -> Result<Vec<(String, String)>, OptionsError> {
    v.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (k, val) = pair.split_once('=').ok_or_else(|| {
                error(RESOURCE_ATTRIBUTES, v, format!("{pair:?} is not key=value"))
            })?;
            let k = k.trim();
            if k.is_empty() {
                return Err(error(
                    RESOURCE_ATTRIBUTES,
                    v,
                    format!("{pair:?} has no key"),
                ));
            }
            let val = percent_decoded(val.trim()).ok_or_else(|| {
                error(
                    RESOURCE_ATTRIBUTES,
                    v,
                    format!("{pair:?}: bad percent-encoding"),
                )
            })?;
            Ok((k.to_string(), val))
        })
        .collect()
}

fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolved(flags: Flags, vars: &[(&str, &str)]) -> Result<Option<Options>, OptionsError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&flags, |k| vars.get(k).cloned(), "sextant-hub")
    }

    fn on(vars: &[(&str, &str)]) -> Options {
        let mut all = vec![(ENDPOINT, "http://collector:4317")];
        all.extend_from_slice(vars);
        resolved(Flags::default(), &all)
            .expect("valid")
            .expect("on")
    }

    #[test]
    fn nothing_set_is_off_and_disabled_wins() {
        assert_eq!(resolved(Flags::default(), &[]), Ok(None));
        assert_eq!(
            resolved(
                Flags::default(),
                &[(ENDPOINT, "http://c:4317"), (SDK_DISABLED, "true")]
            ),
            Ok(None)
        );
    }

    #[test]
    fn defaults_follow_the_specification_with_a_one_percent_parent_based_ratio() {
        let o = on(&[]);
        assert_eq!(o.protocol, Protocol::Grpc);
        assert_eq!(o.service_name, "sextant-hub");
        assert_eq!(o.sampling, Sampling::ParentBased(Root::Ratio(0.01)));
        assert_eq!((o.queue_size, o.batch_size), (2048, 512));
        assert_eq!(o.schedule_delay, Duration::from_secs(5));
        assert_eq!(o.signal_url("traces"), "http://collector:4317");
    }

    #[test]
    fn the_flag_overrides_the_variable_and_http_gets_signal_paths() {
        let o = resolved(
            Flags {
                endpoint: Some("http://flag:4318/".into()),
                protocol: Some("http/protobuf".into()),
            },
            &[(ENDPOINT, "http://env:4317"), (PROTOCOL, "grpc")],
        )
        .expect("valid")
        .expect("on");
        assert_eq!(o.signal_url("traces"), "http://flag:4318/v1/traces");
        assert_eq!(o.signal_url("metrics"), "http://flag:4318/v1/metrics");
    }

    #[test]
    fn service_name_and_resource_attributes() {
        let o = on(&[(
            RESOURCE_ATTRIBUTES,
            "service.name=from-attrs,deployment.environment=prod%20eu, k8s.pod.name=p-1",
        )]);
        assert_eq!(o.service_name, "from-attrs");
        assert_eq!(
            o.resource,
            vec![
                ("deployment.environment".to_string(), "prod eu".to_string()),
                ("k8s.pod.name".to_string(), "p-1".to_string())
            ]
        );
        let o = on(&[
            (RESOURCE_ATTRIBUTES, "service.name=from-attrs"),
            (SERVICE_NAME, "named"),
        ]);
        assert_eq!(o.service_name, "named");
    }

    #[test]
    fn each_signal_can_be_turned_off_and_both_off_is_off() {
        let o = on(&[(METRICS_EXPORTER, "none")]);
        assert!(o.traces && !o.metrics);
        let o = on(&[(TRACES_EXPORTER, "none")]);
        assert!(!o.traces && o.metrics);
        assert_eq!(
            resolved(
                Flags::default(),
                &[
                    (ENDPOINT, "http://c:4317"),
                    (TRACES_EXPORTER, "none"),
                    (METRICS_EXPORTER, "none")
                ]
            ),
            Ok(None)
        );
        assert!(
            resolved(
                Flags::default(),
                &[(ENDPOINT, "http://c:4317"), (TRACES_EXPORTER, "zipkin")]
            )
            .expect_err("refused")
            .to_string()
            .contains("want otlp or none")
        );
    }

    #[test]
    fn samplers_by_their_standard_names() {
        let s = |name: &str, arg: &str| on(&[(SAMPLER, name), (SAMPLER_ARG, arg)]).sampling;
        assert_eq!(s("always_off", ""), Sampling::AlwaysOff);
        assert_eq!(s("always_on", ""), Sampling::AlwaysOn);
        assert_eq!(s("traceidratio", "0.25"), Sampling::Ratio(0.25));
        assert_eq!(
            s("parentbased_traceidratio", "1"),
            Sampling::ParentBased(Root::Ratio(1.0))
        );
        assert_eq!(
            s("parentbased_always_off", ""),
            Sampling::ParentBased(Root::AlwaysOff)
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = |flags: Flags, vars: &[(&str, &str)]| {
            resolved(flags, vars).expect_err("refused").to_string()
        };
        let e = |vars: &[(&str, &str)]| {
            let mut all = vec![(ENDPOINT, "http://c:4317")];
            all.extend_from_slice(vars);
            err(Flags::default(), &all)
        };
        assert!(
            err(Flags::default(), &[(ENDPOINT, "collector:4317")])
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=\"collector:4317\": want http://")
        );
        assert!(
            err(
                Flags {
                    endpoint: Some("ftp://x".into()),
                    protocol: None
                },
                &[]
            )
            .starts_with("--otlp-endpoint=")
        );
        assert!(e(&[(PROTOCOL, "http/json")]).contains("want grpc or http/protobuf"));
        assert!(e(&[(SAMPLER, "sometimes")]).starts_with("OTEL_TRACES_SAMPLER=\"sometimes\""));
        assert!(e(&[(SAMPLER_ARG, "1.5")]).contains("ratio from 0 to 1"));
        assert!(e(&[(QUEUE_SIZE, "0")]).starts_with("OTEL_BSP_MAX_QUEUE_SIZE"));
        assert!(e(&[(RESOURCE_ATTRIBUTES, "a=1,b")]).contains("\"b\" is not key=value"));
        assert!(e(&[(RESOURCE_ATTRIBUTES, "a=%zz")]).contains("bad percent-encoding"));
        assert!(e(&[(SDK_DISABLED, "maybe")]).starts_with("OTEL_SDK_DISABLED"));
    }
}
