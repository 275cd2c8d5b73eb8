//! Gateways: servers, ports, hosts and server TLS, checked against what pilot translates for router proxies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use sextant_resources::{ConfigError, Resource};

use super::Errs;
use crate::protocol::{Protocol, ServerKind};
use crate::types::{GatewaySpec, Server, ServerTlsMode, ServerTlsSettings};

/// Validates Gateways; those with errors are left out.
pub(super) fn gateways(
    list: &[Resource<GatewaySpec>],
    errors: &mut Vec<ConfigError>,
) -> Vec<Resource<GatewaySpec>> {
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let before = errors.len();
        let mut e = Errs::new(r, "Gateway", errors);
        if r.spec.servers.is_empty() {
            e.push("spec.servers", "a gateway needs at least one server");
        }
        let mut names = BTreeMap::new();
        // Port → (the first server's kind, its field), so one port has one kind of server.
        let mut kinds: BTreeMap<u32, (ServerKind, String)> = BTreeMap::new();
        for (i, s) in r.spec.servers.iter().enumerate() {
            let f = format!("spec.servers[{i}]");
            server(&mut e, &f, s);
            if let Some(name) = &s.port.name {
                e.unique(
                    &mut names,
                    &format!("{f}.port.name"),
                    "server port name",
                    name,
                );
            }
            let Some(kind) = ServerKind::of(&s.port.protocol) else {
                continue;
            };
            match kinds.get(&s.port.number) {
                Some((first_kind, first)) if *first_kind != kind => e.push(
                    &format!("{f}.port"),
                    format!(
                        "port {} is already served as {} by {first}; one port serves one of HTTP, HTTPS or TCP",
                        s.port.number,
                        first_kind.as_str()
                    ),
                ),
                Some((ServerKind::Tcp, first)) => e.push(
                    &format!("{f}.port"),
                    format!(
                        "port {} is already a TCP server ({first}); a TCP port takes one server (TCP has no \
                         host to tell servers apart)",
                        s.port.number
                    ),
                ),
                Some(_) => {}
                None => {
                    kinds.insert(s.port.number, (kind, f.clone()));
                }
            }
        }
        if errors.len() == before {
            out.push(r.clone());
        }
    }
    out
}

fn server<S>(e: &mut Errs<'_, S>, f: &str, s: &Server) {
    e.port(&format!("{f}.port.number"), s.port.number);
    if let Some(t) = s.port.target_port {
        e.port(&format!("{f}.port.targetPort"), t);
    }
    if let Some(bind) = &s.bind
        && bind.parse::<IpAddr>().is_err()
    {
        e.push(
            &format!("{f}.bind"),
            format!("{bind:?} is not an IP address (unix domain sockets are not supported)"),
        );
    }
    match Protocol::parse(&s.port.protocol) {
        None => e.push(
            &format!("{f}.port.protocol"),
            format!(
                "unknown protocol {:?}; use HTTP, HTTPS, HTTP2 or GRPC",
                s.port.protocol
            ),
        ),
        Some(Protocol::Https) => match &s.tls {
            None => e.push(
                f,
                "an HTTPS server needs tls settings (mode SIMPLE with serverCertificate and privateKey)",
            ),
            Some(tls) => server_tls(e, &format!("{f}.tls"), tls),
        },
        Some(
            Protocol::Http
            | Protocol::Http2
            | Protocol::Grpc
            | Protocol::GrpcWeb
            | Protocol::Tcp
            | Protocol::Mongo
            | Protocol::Mysql
            | Protocol::Redis,
        ) => {
            if let Some(tls) = &s.tls
                && (tls.mode.is_some() || tls.server_certificate.is_some())
            {
                e.push(
                    &format!("{f}.tls"),
                    format!(
                        "a plain {} server takes only tls.httpsRedirect; terminate TLS on an HTTPS server",
                        s.port.protocol
                    ),
                );
            }
        }
        Some(Protocol::Tls) => match &s.tls {
            None => e.push(
                f,
                "a TLS server needs tls settings: mode PASSTHROUGH (routed by SNI to VirtualService tls \
                 routes), or SIMPLE, MUTUAL or ISTIO_MUTUAL to terminate TLS with VirtualService tcp routes \
                 behind",
            ),
            Some(t)
                if matches!(
                    t.mode,
                    Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough)
                ) => {}
            Some(t) => server_tls(e, &format!("{f}.tls"), t),
        },
        Some(p) => e.push(
            &format!("{f}.port.protocol"),
            format!(
                "{} gateway servers are not translated yet; use HTTP, HTTPS, TCP or TLS",
                p.as_str()
            ),
        ),
    }
    if s.hosts.is_empty() {
        e.push(
            &format!("{f}.hosts"),
            "a server needs at least one host (\"*\" for any)",
        );
    }
    for (j, h) in s.hosts.iter().enumerate() {
        let field = format!("{f}.hosts[{j}]");
        let host = match h.split_once('/') {
            Some((ns, host)) => {
                if ns != "." && ns != "*" && !super::is_namespace_name(ns) {
                    e.push(
                        &field,
                        format!(
                            "{h:?}: the part before '/' must be \".\" (the gateway's namespace), \"*\" or a namespace name"
                        ),
                    );
                }
                host
            }
            None => h.as_str(),
        };
        e.host(&field, host);
    }
}

fn server_tls<S>(e: &mut Errs<'_, S>, f: &str, tls: &ServerTlsSettings) {
    let mode = tls.mode.unwrap_or(ServerTlsMode::Simple);
    match mode {
        ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough => {
            return e.push(
                &format!("{f}.mode"),
                "an HTTPS server terminates TLS; for PASSTHROUGH (VirtualService tls routes) or \
                 AUTO_PASSTHROUGH (Istio's SNI for mesh clusters) use protocol TLS",
            );
        }
        ServerTlsMode::IstioMutual => {
            for (name, set) in [
                ("serverCertificate", tls.server_certificate.is_some()),
                ("privateKey", tls.private_key.is_some()),
                ("caCertificates", tls.ca_certificates.is_some()),
                ("credentialName", tls.credential_name.is_some()),
            ] {
                if set {
                    e.push(
                        &format!("{f}.{name}"),
                        "ISTIO_MUTUAL uses the gateway's mesh certificate; certificates belong to SIMPLE and MUTUAL",
                    );
                }
            }
            return;
        }
        ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual => {}
    }
    if tls.credential_name.is_some() {
        e.push(
            &format!("{f}.credentialName"),
            "credentialName names a Kubernetes secret and pilot reads no secrets; \
             use serverCertificate and privateKey file paths",
        );
    } else if tls.server_certificate.is_none() || tls.private_key.is_none() {
        e.push(
            f,
            "terminating TLS needs serverCertificate and privateKey (file paths on the gateway proxy)",
        );
    }
    if mode != ServerTlsMode::Simple && tls.ca_certificates.is_none() {
        e.push(
            f,
            "mode MUTUAL and OPTIONAL_MUTUAL need caCertificates to check client certificates",
        );
    }
    for (name, path) in [
        ("serverCertificate", &tls.server_certificate),
        ("privateKey", &tls.private_key),
        ("caCertificates", &tls.ca_certificates),
    ] {
        if let Some(p) = path {
            e.file(&format!("{f}.{name}"), p);
        }
    }
}
