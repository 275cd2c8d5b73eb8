//! Sidecars: egress hosts, ports, bind addresses, ingress endpoints, and one default per namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sextant_resources::{ConfigError, Resource};

use super::{Errs, is_namespace_name};
use crate::protocol::Protocol;
use crate::sidecar::{Egress, HostImport, ImportNamespace, Ingress, Sidecar, SidecarPort};
use crate::types::{CaptureMode, SidecarSpec};

/// Validates Sidecars; those with errors are left out, and of two without a `workloadSelector` in one
/// namespace the later.
pub(super) fn sidecars(
    list: &[Resource<SidecarSpec>],
    errors: &mut Vec<ConfigError>,
) -> Vec<Sidecar> {
    let mut out: Vec<Sidecar> = Vec::with_capacity(list.len());
    for r in list {
        let before = errors.len();
        let mut e = Errs::new(r, "Sidecar", errors);
        let selector = r.spec.workload_selector.as_ref().map(|s| s.labels.clone());
        if selector.is_none()
            && let Some(first) = out
                .iter()
                .find(|s| s.selector.is_none() && s.resource.namespace == r.namespace)
        {
            e.push(
                "spec.workloadSelector",
                format!(
                    "namespace {:?} already has a Sidecar without workloadSelector ({}); a namespace has one \
                     default Sidecar",
                    r.namespace, first.resource.name
                ),
            );
        }
        let egress = egress(&mut e, &r.spec);
        let ingress = ingress(&mut e, &r.spec);
        if errors.len() == before {
            out.push(Sidecar {
                resource: r.clone(),
                selector,
                egress,
                ingress,
                outbound: (r.spec.outbound_traffic_policy.as_ref())
                    .map(|p| p.mode)
                    .unwrap_or_default(),
            });
        }
    }
    out
}

fn egress(e: &mut Errs<'_, SidecarSpec>, spec: &SidecarSpec) -> Vec<Egress> {
    if spec.egress.is_empty() {
        return vec![Egress::everything()];
    }
    let mut ports = BTreeMap::new();
    let last = spec.egress.len() - 1;
    let mut out = Vec::new();
    for (i, l) in spec.egress.iter().enumerate() {
        let f = format!("spec.egress[{i}]");
        let port = match &l.port {
            Some(p) => {
                let port = sidecar_port(e, &format!("{f}.port"), p);
                if let Some(port) = &port {
                    e.unique(
                        &mut ports,
                        &format!("{f}.port.number"),
                        "egress port",
                        &port.number.to_string(),
                    );
                }
                port
            }
            None if i != last => {
                e.push(
                    &f,
                    "the egress listener without a port (every port) must be the last one",
                );
                None
            }
            None => {
                if l.capture_mode == Some(CaptureMode::None) {
                    e.push(
                        &format!("{f}.captureMode"),
                        "captureMode NONE needs a port to bind; give the listener a port",
                    );
                }
                None
            }
        };
        if l.hosts.is_empty() {
            e.push(
                &format!("{f}.hosts"),
                "an egress listener imports at least one namespace/host",
            );
        }
        let mut hosts = Vec::new();
        for (j, h) in l.hosts.iter().enumerate() {
            let hf = format!("{f}.hosts[{j}]");
            match HostImport::parse(h) {
                None => e.push(
                    &hf,
                    format!(
                        "{h:?} is not namespace/host; write \"./*\" (this namespace), \"*/HOST\" (any namespace) \
                         or \"NAMESPACE/HOST\""
                    ),
                ),
                Some(import) => {
                    if let ImportNamespace::Named(ns) = &import.namespace
                        && !is_namespace_name(ns)
                    {
                        e.push(
                            &hf,
                            format!(
                                "{ns:?} is not a namespace; use \".\", \"*\", \"~\" or a namespace name"
                            ),
                        );
                    }
                    if import.host != "*" {
                        e.host(&hf, &import.host);
                    }
                    hosts.push(import);
                }
            }
        }
        let bind = bind(e, &format!("{f}.bind"), l.bind.as_deref());
        out.push(Egress {
            port,
            bind,
            capture: l.capture_mode.unwrap_or_default(),
            hosts,
        });
    }
    out
}

fn ingress(e: &mut Errs<'_, SidecarSpec>, spec: &SidecarSpec) -> Vec<Ingress> {
    let mut ports = BTreeMap::new();
    let mut out = Vec::new();
    for (i, l) in spec.ingress.iter().enumerate() {
        let f = format!("spec.ingress[{i}]");
        let Some(port) = sidecar_port(e, &format!("{f}.port"), &l.port) else {
            continue;
        };
        e.unique(
            &mut ports,
            &format!("{f}.port.number"),
            "ingress port",
            &port.number.to_string(),
        );
        let Some(protocol) = port.protocol else {
            e.push(
                &format!("{f}.port.protocol"),
                "an ingress port needs a protocol (HTTP, HTTP2, GRPC or TCP)",
            );
            continue;
        };
        if matches!(protocol, Protocol::Https | Protocol::Tls | Protocol::Udp) {
            e.push(
                &format!("{f}.port.protocol"),
                format!(
                    "{protocol} ingress ports are not translated; use HTTP, HTTP2, GRPC or TCP (mesh mTLS is \
                     terminated for every port)"
                ),
            );
        }
        let endpoint = match l.default_endpoint.as_deref() {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.number),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) if a.ip().is_loopback() && a.port() != 0 => a,
                _ => {
                    e.push(
                        &format!("{f}.defaultEndpoint"),
                        format!(
                            "{text:?}: write 127.0.0.1:PORT or [::1]:PORT (the workload's address, 0.0.0.0:PORT, \
                             and unix domain sockets are not supported yet)"
                        ),
                    );
                    continue;
                }
            },
        };
        let bind = bind(e, &format!("{f}.bind"), l.bind.as_deref());
        out.push(Ingress {
            port: port.number,
            protocol,
            bind,
            capture: l.capture_mode.unwrap_or_default(),
            endpoint,
        });
    }
    out
}

fn sidecar_port(
    e: &mut Errs<'_, SidecarSpec>,
    f: &str,
    p: &crate::types::SidecarPort,
) -> Option<SidecarPort> {
    let number = e.port(&format!("{f}.number"), p.number)?;
    let protocol = match p.protocol.as_deref() {
        None => None,
        Some(text) => match Protocol::parse(text) {
            Some(p) => Some(p),
            None => {
                e.push(
                    &format!("{f}.protocol"),
                    format!("unknown protocol {text:?}; use HTTP, HTTP2, GRPC, TCP, TLS or HTTPS"),
                );
                return None;
            }
        },
    };
    Some(SidecarPort { number, protocol })
}

fn bind(e: &mut Errs<'_, SidecarSpec>, f: &str, bind: Option<&str>) -> Option<IpAddr> {
    let text = bind?;
    match text.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            e.push(
                f,
                format!("{text:?} is not an IP address (unix domain sockets are not supported)"),
            );
            None
        }
    }
}
