//! DestinationRules: subsets and traffic policies (balancing, pools, outlier detection, client TLS).

use std::collections::BTreeMap;

use sextant_resources::{ConfigError, Resource};

use super::Errs;
use crate::export::ExportTo;
use crate::model::DestinationRule;
use crate::types::{
    ClientTlsSettings, DestinationRuleSpec, LoadBalancerSettings, OutlierDetection, TlsMode,
    TrafficPolicy,
};

const DR: &str = "DestinationRule";

/// Validates DestinationRules into a map by fully qualified host.
pub(super) fn destination_rules(
    list: &[Resource<DestinationRuleSpec>],
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, DestinationRule> {
    let mut out: BTreeMap<String, DestinationRule> = BTreeMap::new();
    for r in list {
        let before = errors.len();
        let mut e = Errs::new(r, DR, errors);
        e.host("spec.host", &r.spec.host);
        e.export_to(&r.spec.export_to);
        let host = crate::host::resolve(&r.spec.host, &r.namespace);
        let mut seen = BTreeMap::new();
        for (i, s) in r.spec.subsets.iter().enumerate() {
            let field = format!("spec.subsets[{i}]");
            if s.name.is_empty() {
                e.push(&format!("{field}.name"), "a subset needs a name");
            }
            e.unique(&mut seen, &format!("{field}.name"), "subset", &s.name);
            if s.labels.is_empty() {
                e.push(
                    &format!("{field}.labels"),
                    format!(
                        "subset {:?} has no labels; a subset selects the endpoints carrying its labels (e.g. version: v1)",
                        s.name
                    ),
                );
            }
            if let Some(tp) = &s.traffic_policy {
                traffic_policy(&mut e, &format!("{field}.trafficPolicy"), tp);
            }
        }
        if let Some(tp) = &r.spec.traffic_policy {
            traffic_policy(&mut e, "spec.trafficPolicy", tp);
        }
        if e.errors.len() > before {
            continue; // left out: it claims no host
        }
        if let Some(first) = out.get(&host) {
            let at = first.resource.origin.locate("spec.host");
            e.push(
                "spec.host",
                format!(
                    "host {host} already has DestinationRule {} (at {at}); merge the two",
                    first.resource.key()
                ),
            );
            continue;
        }
        out.insert(
            host.clone(),
            DestinationRule {
                resource: r.clone(),
                host,
                export_to: ExportTo::resolve(&r.spec.export_to, &r.namespace),
            },
        );
    }
    out
}

fn traffic_policy<S>(e: &mut Errs<'_, S>, field: &str, tp: &TrafficPolicy) {
    if let Some(lb) = &tp.load_balancer {
        load_balancer(e, &format!("{field}.loadBalancer"), lb);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier_detection(e, &format!("{field}.outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(e, &format!("{field}.tls"), tls);
    }
    let mut seen = BTreeMap::new();
    for (i, p) in tp.port_level_settings.iter().enumerate() {
        let f = format!("{field}.portLevelSettings[{i}]");
        match &p.port {
            None => e.push(&f, "a port-level setting needs port: {number: N}"),
            Some(port) => {
                e.port(&format!("{f}.port.number"), port.number);
                e.unique(
                    &mut seen,
                    &format!("{f}.port.number"),
                    "port",
                    &port.number.to_string(),
                );
            }
        }
        if let Some(lb) = &p.load_balancer {
            load_balancer(e, &format!("{f}.loadBalancer"), lb);
        }
        if let Some(od) = &p.outlier_detection {
            outlier_detection(e, &format!("{f}.outlierDetection"), od);
        }
        if let Some(tls) = &p.tls {
            client_tls(e, &format!("{f}.tls"), tls);
        }
    }
}

fn load_balancer<S>(e: &mut Errs<'_, S>, field: &str, lb: &LoadBalancerSettings) {
    match (&lb.simple, &lb.consistent_hash) {
        (Some(_), Some(_)) => e.push(field, "set one of simple and consistentHash, not both"),
        (None, None) => e.push(field, "set simple or consistentHash"),
        (None, Some(ch)) => {
            let keys = [
                ch.http_header_name.is_some(),
                ch.http_cookie.is_some(),
                ch.use_source_ip == Some(true),
                ch.http_query_parameter_name.is_some(),
            ];
            if keys.iter().filter(|k| **k).count() != 1 {
                e.push(
                    &format!("{field}.consistentHash"),
                    "set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
                );
            }
        }
        (Some(_), None) => {}
    }
}

fn outlier_detection<S>(e: &mut Errs<'_, S>, field: &str, od: &OutlierDetection) {
    for (name, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v {
            e.percent(&format!("{field}.{name}"), f64::from(v));
        }
    }
}

fn client_tls<S>(e: &mut Errs<'_, S>, field: &str, tls: &ClientTlsSettings) {
    if tls.mode == TlsMode::IstioMutual {
        for (name, set) in [
            ("clientCertificate", tls.client_certificate.is_some()),
            ("privateKey", tls.private_key.is_some()),
            ("caCertificates", tls.ca_certificates.is_some()),
        ] {
            if set {
                e.push(
                    &format!("{field}.{name}"),
                    "ISTIO_MUTUAL uses the mesh's workload certificates; certificate files belong to MUTUAL",
                );
            }
        }
    }
    if tls.credential_name.is_some() {
        e.push(
            &format!("{field}.credentialName"),
            "credentialName names a Kubernetes secret and pilot reads no secrets; \
             use clientCertificate, privateKey and caCertificates file paths",
        );
    }
    if tls.mode == TlsMode::Mutual
        && tls.credential_name.is_none()
        && (tls.client_certificate.is_none() || tls.private_key.is_none())
    {
        e.push(field, "mode MUTUAL needs clientCertificate and privateKey");
    }
    for (name, path) in [
        ("clientCertificate", &tls.client_certificate),
        ("privateKey", &tls.private_key),
        ("caCertificates", &tls.ca_certificates),
    ] {
        if let Some(p) = path {
            e.file(&format!("{field}.{name}"), p);
        }
    }
    if tls.sni.as_deref().is_some_and(str::is_empty) {
        e.push(
            &format!("{field}.sni"),
            "sni is empty; leave it out or name a host",
        );
    }
}
