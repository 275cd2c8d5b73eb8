//! AuthorizationPolicy and PeerAuthentication: checked like every other resource, but failing closed — an
//! invalid one keeps its last good version, or is stood in for by a deny-all (ALLOW without rules) policy,
//! or STRICT mTLS, for what it selects (see [`crate::security`]).

use sextant_resources::ConfigError;
use std::collections::BTreeMap;

use super::Errs;
use crate::load::NetworkingSet;
use crate::security::{AuthorizationPolicy, PeerAuthentication, Security};
use crate::types::{
    AuthorizationAction, AuthorizationPolicySpec, MatchLabels, MtlsMode, PeerAuthenticationSpec,
    Rule, Source,
};

/// The `when` keys a rule may test (`request.headers[NAME]` and `experimental.envoy.filters.*` are
/// checked by prefix).
const CONDITION_KEYS: [&str; 13] = [
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "request.auth.claims",
    "request.headers",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "experimental.envoy.filters",
];

/// Validates the security resources of `set` and assembles those in force: the valid ones, and for each
/// invalid one (here, or left out while loading) its version in `previous` or a fail-closed stand-in.
pub(super) fn security(
    set: &NetworkingSet,
    previous: Option<&Security>,
    errors: &mut Vec<ConfigError>,
) -> Security {
    let mut out = Security::default();
    for r in &set.authorization_policies {
        let before = errors.len();
        authorization(&mut Errs::new(r, "AuthorizationPolicy", errors), &r.spec);
        if errors.len() == before {
            out.authorization.push(AuthorizationPolicy {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                selector: selector(r.spec.selector.as_ref()),
                action: r.spec.action,
                rules: r.spec.rules.clone(),
                fail_closed: None,
            });
        } else if r.spec.action != AuthorizationAction::Audit {
            out.authorization.push(stand_in_authz(
                previous,
                &r.namespace,
                &r.name,
                selector(r.spec.selector.as_ref()),
            ));
        }
    }
    for r in &set.peer_authentications {
        let before = errors.len();
        peer(&mut Errs::new(r, "PeerAuthentication", errors), &r.spec);
        if errors.len() == before {
            out.peer_authentication.push(PeerAuthentication {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                selector: selector(r.spec.selector.as_ref()),
                mode: r.spec.mtls.as_ref().map(|m| m.mode).unwrap_or_default(),
                ports: (r.spec.port_level_mtls.iter())
                    .filter_map(|(p, m)| Some((u16::try_from(*p).ok()?, m.mode)))
                    .collect(),
                fail_closed: None,
            });
        } else {
            out.peer_authentication.push(stand_in_peer(
                previous,
                &r.namespace,
                &r.name,
                selector(r.spec.selector.as_ref()),
            ));
        }
    }
    // Left out before they could be read (not YAML, mistyped, a duplicate name): what they select is
    // unknown, so a stand-in covers their whole namespace.
    for r in &set.rejected {
        let same = |namespace: &str, name: &str| namespace == r.namespace && name == r.name;
        match r.kind.as_str() {
            "AuthorizationPolicy"
                if !(out.authorization.iter()).any(|p| same(&p.namespace, &p.name)) =>
            {
                (out.authorization).push(stand_in_authz(previous, &r.namespace, &r.name, None));
            }
            "PeerAuthentication"
                if !(out.peer_authentication.iter()).any(|p| same(&p.namespace, &p.name)) =>
            {
                (out.peer_authentication).push(stand_in_peer(
                    previous,
                    &r.namespace,
                    &r.name,
                    None,
                ));
            }
            _ => {}
        }
    }
    out
}

fn selector(s: Option<&MatchLabels>) -> Option<crate::types::Labels> {
    s.map(|s| s.match_labels.clone())
}

fn stand_in_authz(
    previous: Option<&Security>,
    namespace: &str,
    name: &str,
    selector: Option<crate::types::Labels>,
) -> AuthorizationPolicy {
    let last = previous.and_then(|p| {
        (p.authorization.iter()).find(|a| a.namespace == namespace && a.name == name)
    });
    match last {
        Some(last) => {
            AuthorizationPolicy {
                fail_closed: Some(last.fail_closed.clone().unwrap_or_else(|| {
                    "invalid: its last good version is still enforced".to_string()
                })),
                ..last.clone()
            }
        }
        None => AuthorizationPolicy {
            namespace: namespace.to_string(),
            name: name.to_string(),
            selector,
            action: AuthorizationAction::Allow,
            rules: Vec::new(),
            fail_closed: Some(
                "invalid and never valid: nothing is allowed to the workloads it selects"
                    .to_string(),
            ),
        },
    }
}

fn stand_in_peer(
    previous: Option<&Security>,
    namespace: &str,
    name: &str,
    selector: Option<crate::types::Labels>,
) -> PeerAuthentication {
    let last = previous.and_then(|p| {
        (p.peer_authentication.iter()).find(|a| a.namespace == namespace && a.name == name)
    });
    match last {
        Some(last) => {
            PeerAuthentication {
                fail_closed: Some(last.fail_closed.clone().unwrap_or_else(|| {
                    "invalid: its last good version is still enforced".to_string()
                })),
                ..last.clone()
            }
        }
        None => PeerAuthentication {
            namespace: namespace.to_string(),
            name: name.to_string(),
            selector,
            mode: MtlsMode::Strict,
            ports: BTreeMap::new(),
            fail_closed: Some(
                "invalid and never valid: STRICT mTLS for the workloads it selects".to_string(),
            ),
        },
    }
}

fn authorization(e: &mut Errs<'_, AuthorizationPolicySpec>, spec: &AuthorizationPolicySpec) {
    for (i, rule) in spec.rules.iter().enumerate() {
        rule_checks(e, &format!("spec.rules[{i}]"), rule);
    }
}

fn rule_checks(e: &mut Errs<'_, AuthorizationPolicySpec>, f: &str, rule: &Rule) {
    for (j, from) in rule.from.iter().enumerate() {
        source(e, &format!("{f}.from[{j}].source"), &from.source);
    }
    for (j, to) in rule.to.iter().enumerate() {
        let g = format!("{f}.to[{j}].operation");
        let o = &to.operation;
        let all = [
            &o.hosts,
            &o.not_hosts,
            &o.ports,
            &o.not_ports,
            &o.methods,
            &o.not_methods,
            &o.paths,
            &o.not_paths,
        ];
        if all.iter().all(|l| l.is_empty()) {
            e.push(&g, "an operation must name at least one field");
        }
        for (name, list) in [("ports", &o.ports), ("notPorts", &o.not_ports)] {
            for (k, p) in list.iter().enumerate() {
                port(e, &format!("{g}.{name}[{k}]"), p);
            }
        }
        for (name, list) in [
            ("hosts", &o.hosts),
            ("notHosts", &o.not_hosts),
            ("methods", &o.methods),
            ("notMethods", &o.not_methods),
            ("paths", &o.paths),
            ("notPaths", &o.not_paths),
        ] {
            wildcards(e, &format!("{g}.{name}"), list);
        }
    }
    for (j, c) in rule.when.iter().enumerate() {
        let g = format!("{f}.when[{j}]");
        let known = CONDITION_KEYS.iter().any(|k| {
            c.key == *k
                || c.key.starts_with(&format!("{k}["))
                || c.key.starts_with(&format!("{k}."))
        });
        if !known {
            e.push(
                &format!("{g}.key"),
                format!(
                    "unknown condition key {:?}; use one of {}",
                    c.key,
                    CONDITION_KEYS.join(", ")
                ),
            );
            continue;
        }
        if c.values.is_empty() && c.not_values.is_empty() {
            e.push(&g, "a condition needs values or notValues");
        }
        let ips = matches!(c.key.as_str(), "source.ip" | "remote.ip" | "destination.ip");
        for (name, list) in [("values", &c.values), ("notValues", &c.not_values)] {
            for (k, v) in list.iter().enumerate() {
                let at = format!("{g}.{name}[{k}]");
                if ips {
                    cidr(e, &at, v);
                } else if c.key == "destination.port" {
                    port(e, &at, v);
                }
            }
        }
    }
}

fn source(e: &mut Errs<'_, AuthorizationPolicySpec>, f: &str, s: &Source) {
    let all = [
        &s.principals,
        &s.not_principals,
        &s.request_principals,
        &s.not_request_principals,
        &s.namespaces,
        &s.not_namespaces,
        &s.ip_blocks,
        &s.not_ip_blocks,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
    ];
    if all.iter().all(|l| l.is_empty()) {
        e.push(f, "a source must name at least one field");
    }
    for (name, list) in [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
    ] {
        wildcards(e, &format!("{f}.{name}"), list);
    }
    for (name, list) in [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ] {
        for (k, v) in list.iter().enumerate() {
            cidr(e, &format!("{f}.{name}[{k}]"), v);
        }
    }
}

/// Istio's string matching: exact, `*` alone, `prefix*` or `*suffix`; nothing empty.
fn wildcards(e: &mut Errs<'_, AuthorizationPolicySpec>, f: &str, list: &[String]) {
    for (k, v) in list.iter().enumerate() {
        let inner = v.len() > 1 && v[1..v.len() - 1].contains('*');
        if v.is_empty() || inner || (v.len() > 1 && v.starts_with('*') && v.ends_with('*')) {
            e.push(
                &format!("{f}[{k}]"),
                format!("{v:?}: write an exact value, \"*\", \"prefix*\" or \"*suffix\""),
            );
        }
    }
}

fn port(e: &mut Errs<'_, AuthorizationPolicySpec>, f: &str, v: &str) {
    if !v.parse::<u16>().is_ok_and(|p| p > 0) {
        e.push(f, format!("{v:?} is not a port number (1-65535)"));
    }
}

fn cidr(e: &mut Errs<'_, AuthorizationPolicySpec>, f: &str, v: &str) {
    if crate::security::parse_cidr(v).is_none() {
        e.push(f, format!("{v:?} is not an IP address or CIDR block"));
    }
}

fn peer(e: &mut Errs<'_, PeerAuthenticationSpec>, spec: &PeerAuthenticationSpec) {
    if !spec.port_level_mtls.is_empty() && spec.selector.is_none() {
        e.push(
            "spec.portLevelMtls",
            "port-level mTLS needs a selector (a namespace- or mesh-wide policy sets one mode)",
        );
    }
    for p in spec.port_level_mtls.keys() {
        e.port(&format!("spec.portLevelMtls.{p}"), *p);
    }
}
