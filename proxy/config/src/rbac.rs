//! Envoy's RBAC filters, network (`envoy.filters.network.rbac`, checked once per connection) and HTTP
//! (`envoy.filters.http.rbac`, checked per request): policies of permissions (what the connection or request
//! is for: destination port and address, requested server name, and on HTTP headers and the URL path) and
//! principals (who makes it: the peer's certificate, its address, and on HTTP headers and the URL path).
//! Both filters share these types and one engine (`proxy_route::rbac`). The subset pilot emits for Istio's
//! AuthorizationPolicy is converted here; everything else is refused by field (`allow.rs`) or value (here):
//! a network filter refuses the HTTP-only rules, which could never match a connection.

use std::net::IpAddr;

use prost::Name;
use sextant_proto::envoy::config::core::v3 as core;
use sextant_proto::envoy::config::rbac::v3 as pb;
use sextant_proto::envoy::config::route::v3::HeaderMatcher;
use sextant_proto::envoy::extensions::filters::http::rbac::v3 as http;
use sextant_proto::envoy::extensions::filters::network::rbac::v3 as network;
use sextant_proto::envoy::r#type::matcher::v3::PathMatcher;
use sextant_proto::envoy::r#type::v3::Int32Range;
use sextant_proto::google::protobuf::Any;

use crate::decode_payload;
use crate::error::{Partial, at, within};
use crate::matcher::{StringMatcher, string_matcher};
use crate::route::{HeaderMatch, header_value};

/// `envoy.filters.network.rbac`.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// `envoy.filters.http.rbac`.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";

/// What a TLS connection's peer certificate names, as RBAC reads it (filled by `proxy_tls::peer_identity`). A
/// peer without a certificate names nothing: its subject is empty, as Envoy's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The URI SANs, in order.
    pub uri_sans: Vec<String>,
    /// The DNS SANs, in order.
    pub dns_sans: Vec<String>,
    /// The subject in RFC 2253 form (`CN=J. Smith+OU=Sales,O=Sue\, Grabbit and Runn,C=GB`).
    pub subject: String,
}

/// One HTTP RBAC filter (`envoy.extensions.filters.http.rbac.v3.RBAC`) of a connection manager.
#[derive(Debug, Clone)]
pub struct HttpRbac {
    /// `rules_stat_prefix`: inserted after `http.PREFIX.rbac.` in the names of its `allowed`/`denied`
    /// counters, as Envoy joins it (empty: none).
    pub rules_stat_prefix: String,
    /// The rules enforced; `None`: the filter lets every request through and counts nothing (Envoy's filter
    /// without an engine).
    pub rules: Option<Rules>,
}

/// One network RBAC filter.
#[derive(Debug, Clone)]
pub struct Rbac {
    /// Its stats' prefix as configured (Envoy's `<stat_prefix>.rbac.allowed`, one dot between).
    pub stat_prefix: String,
    /// The rules enforced; `None`: the filter lets every connection through and counts nothing (Envoy's
    /// filter without an engine).
    pub rules: Option<Rules>,
}

/// What the policies decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A connection goes on only if some policy matches it.
    Allow,
    /// A connection some policy matches is closed.
    Deny,
}

/// `config.rbac.v3.RBAC`: an action and the policies it applies to.
#[derive(Debug, Clone)]
pub struct Rules {
    /// ALLOW or DENY.
    pub action: Action,
    /// The policies, sorted by name.
    pub policies: Vec<Policy>,
}

/// A policy: it matches a connection when one of its permissions and one of its principals match.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name (the key of the `policies` map).
    pub name: String,
    /// What the connection is for; any one must match.
    pub permissions: Vec<Permission>,
    /// Who makes it; any one must match.
    pub principals: Vec<Principal>,
}

/// A permission: a condition on where the connection goes.
#[derive(Debug, Clone)]
pub enum Permission {
    /// Every connection.
    Any,
    /// The destination port (the original destination's for a redirected connection) equals this.
    DestinationPort(u16),
    /// The destination port is in `start..end` (Envoy's `Int32Range`: end exclusive).
    DestinationPortRange {
        /// First port matched.
        start: u32,
        /// First port past the range.
        end: u32,
    },
    /// The destination address (the original destination's for a redirected connection) is in the range.
    DestinationIp(Cidr),
    /// The TLS SNI (empty when none was sent) matches.
    RequestedServerName(StringMatcher),
    /// HTTP only: a request header (or `:authority`, `:method`, `:path` with its query, `:scheme`) matches.
    Header(HeaderMatch),
    /// HTTP only: the request's path without its query matches (Envoy's `url_path`).
    UrlPath(StringMatcher),
    /// Every one matches.
    And(Vec<Permission>),
    /// Some one matches.
    Or(Vec<Permission>),
    /// It does not match.
    Not(Box<Permission>),
}

/// A principal: a condition on who makes the connection.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Every connection.
    Any,
    /// A TLS connection whose peer certificate's URI SANs, DNS SANs or subject (in that order) match; with
    /// no matcher, any TLS connection. A plain-text connection never matches.
    Authenticated(Option<StringMatcher>),
    /// The address of the connection's peer (`source_ip`, `direct_remote_ip`, `remote_ip`: the same address
    /// for a connection no proxy protocol or forwarding header re-addresses).
    RemoteIp(Cidr),
    /// HTTP only: a request header (or pseudo-header) matches.
    Header(HeaderMatch),
    /// HTTP only: the request's path without its query matches.
    UrlPath(StringMatcher),
    /// Every one matches.
    And(Vec<Principal>),
    /// Some one matches.
    Or(Vec<Principal>),
    /// It does not match.
    Not(Box<Principal>),
}

/// An address range (`CidrRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The range's address.
    pub address: IpAddr,
    /// Leading bits compared (at most 32 for IPv4, 128 for IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` is in the range; an address of the other family never is (as in Envoy).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Converts a network RBAC filter's `typed_config`.
pub(crate) fn network_rbac(config: &Any) -> Partial<Rbac> {
    if config.type_url != network::Rbac::type_url() {
        return at(
            "",
            format!(
                "{NETWORK_RBAC} needs {}, not {}",
                network::Rbac::type_url(),
                config.type_url
            ),
        );
    }
    let r: network::Rbac = decode_payload(config)?;
    // Envoy's rule (`string.min_len = 1`).
    if r.stat_prefix.is_empty() {
        return at("stat_prefix", "a network RBAC filter needs a stat_prefix");
    }
    match network::rbac::EnforcementType::try_from(r.enforcement_type) {
        Ok(network::rbac::EnforcementType::OneTimeOnFirstByte) => {}
        _ => {
            return at(
                "enforcement_type",
                format!(
                    "enforcement type {} is not implemented (only ONE_TIME_ON_FIRST_BYTE)",
                    r.enforcement_type
                ),
            );
        }
    }
    let rules = match &r.rules {
        Some(rules) => Some(within("rules", self::rules(rules, Layer::Network))?),
        None => None,
    };
    Ok(Rbac {
        stat_prefix: r.stat_prefix.clone(),
        rules,
    })
}

/// Converts an HTTP RBAC filter's `typed_config`. Its other fields (shadow rules, matchers, per-rule stats)
/// are refused by field before this runs.
pub(crate) fn http_rbac(config: &Any) -> Partial<HttpRbac> {
    if config.type_url != http::Rbac::type_url() {
        return at(
            "",
            format!(
                "{HTTP_RBAC} needs {}, not {}",
                http::Rbac::type_url(),
                config.type_url
            ),
        );
    }
    let r: http::Rbac = decode_payload(config)?;
    let rules = match &r.rules {
        Some(rules) => Some(within("rules", self::rules(rules, Layer::Http))?),
        None => None,
    };
    Ok(HttpRbac {
        rules_stat_prefix: r.rules_stat_prefix.clone(),
        rules,
    })
}

/// Which filter the rules belong to: a network filter sees no request, so HTTP rules are refused there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Network,
    Http,
}

impl Layer {
    /// Refuses an HTTP-only rule in a network filter.
    fn needs_http(self, field: &str) -> Partial<()> {
        match self {
            Layer::Http => Ok(()),
            Layer::Network => at(
                field,
                format!("{field} is only implemented in the HTTP RBAC filter ({HTTP_RBAC})"),
            ),
        }
    }
}

fn rules(r: &pb::Rbac, layer: Layer) -> Partial<Rules> {
    let action = match pb::rbac::Action::try_from(r.action) {
        Ok(pb::rbac::Action::Allow) => Action::Allow,
        Ok(pb::rbac::Action::Deny) => Action::Deny,
        Ok(pb::rbac::Action::Log) => return at("action", "action LOG is not implemented"),
        Err(_) => return at("action", format!("unknown action {}", r.action)),
    };
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let policies = names
        .into_iter()
        .map(|name| {
            within(
                &format!("policies[{name:?}]"),
                policy(name, &r.policies[name], layer),
            )
        })
        .collect::<Partial<Vec<_>>>()?;
    Ok(Rules { action, policies })
}

fn policy(name: &str, p: &pb::Policy, layer: Layer) -> Partial<Policy> {
    // Envoy's rules (`repeated.min_items = 1`).
    if p.permissions.is_empty() {
        return at("permissions", "a policy needs a permission");
    }
    if p.principals.is_empty() {
        return at("principals", "a policy needs a principal");
    }
    Ok(Policy {
        name: name.to_string(),
        permissions: list("permissions", &p.permissions, |x| permission(x, layer))?,
        principals: list("principals", &p.principals, |x| principal(x, layer))?,
    })
}

/// Converts each item of a list, naming `field[i]` in an error.
fn list<P, T>(field: &str, items: &[P], convert: impl Fn(&P) -> Partial<T>) -> Partial<Vec<T>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| within(&format!("{field}[{i}]"), convert(item)))
        .collect()
}

/// A `Set`'s items: at least one (Envoy's `repeated.min_items = 1`).
fn set<P, T>(
    field: &str,
    inner: &str,
    items: &[P],
    convert: impl Fn(&P) -> Partial<T>,
) -> Partial<Vec<T>> {
    if items.is_empty() {
        return at(format!("{field}.{inner}"), "a set needs at least one rule");
    }
    within(field, list(inner, items, convert))
}

fn permission(p: &pb::Permission, layer: Layer) -> Partial<Permission> {
    use pb::permission::Rule as R;
    Ok(match &p.rule {
        Some(R::Any(true)) => Permission::Any,
        Some(R::Any(false)) => return at("any", "any must be true"),
        Some(R::DestinationPort(port)) => match u16::try_from(*port) {
            Ok(port) => Permission::DestinationPort(port),
            Err(_) => {
                return at(
                    "destination_port",
                    format!("port {port} is not in 0..=65535"),
                );
            }
        },
        Some(R::DestinationPortRange(range)) => {
            within("destination_port_range", port_range(range))?
        }
        Some(R::DestinationIp(c)) => Permission::DestinationIp(within("destination_ip", cidr(c))?),
        Some(R::RequestedServerName(m)) => {
            Permission::RequestedServerName(within("requested_server_name", string_matcher(m))?)
        }
        Some(R::Header(h)) => {
            layer.needs_http("header")?;
            Permission::Header(within("header", header(h))?)
        }
        Some(R::UrlPath(m)) => {
            layer.needs_http("url_path")?;
            Permission::UrlPath(within("url_path", url_path(m))?)
        }
        Some(R::AndRules(s)) => Permission::And(set("and_rules", "rules", &s.rules, |x| {
            permission(x, layer)
        })?),
        Some(R::OrRules(s)) => Permission::Or(set("or_rules", "rules", &s.rules, |x| {
            permission(x, layer)
        })?),
        Some(R::NotRule(p)) => Permission::Not(Box::new(within("not_rule", permission(p, layer))?)),
        // Every other rule is refused by field before conversion; this guards the conversion on its own.
        Some(_) => return at("", "this permission is not implemented"),
        None => return at("", "a permission needs a rule"),
    })
}

/// Envoy's `PortRangeMatcher`: both ends in 0..=65536, the start before the end.
fn port_range(range: &Int32Range) -> Partial<Permission> {
    let bound = |v: i32, what: &str| match u32::try_from(v) {
        Ok(v) if v <= 65536 => Ok(v),
        _ => at(what, format!("range {what} {v} is out of bounds")),
    };
    let (start, end) = (bound(range.start, "start")?, bound(range.end, "end")?);
    if start >= end {
        return at(
            "",
            format!("range start {start} cannot be greater or equal than range end {end}"),
        );
    }
    Ok(Permission::DestinationPortRange { start, end })
}

fn principal(p: &pb::Principal, layer: Layer) -> Partial<Principal> {
    use pb::principal::Identifier as I;
    Ok(match &p.identifier {
        Some(I::Any(true)) => Principal::Any,
        Some(I::Any(false)) => return at("any", "any must be true"),
        Some(I::Authenticated(a)) => Principal::Authenticated(match &a.principal_name {
            Some(m) => Some(within("authenticated.principal_name", string_matcher(m))?),
            None => None,
        }),
        // Deprecated for `direct_remote_ip`, which it equals on a connection; Envoy 1.40 still honours it.
        #[allow(deprecated)]
        Some(I::SourceIp(c)) => Principal::RemoteIp(within("source_ip", cidr(c))?),
        Some(I::DirectRemoteIp(c)) => Principal::RemoteIp(within("direct_remote_ip", cidr(c))?),
        Some(I::RemoteIp(c)) => Principal::RemoteIp(within("remote_ip", cidr(c))?),
        Some(I::Header(h)) => {
            layer.needs_http("header")?;
            Principal::Header(within("header", header(h))?)
        }
        Some(I::UrlPath(m)) => {
            layer.needs_http("url_path")?;
            Principal::UrlPath(within("url_path", url_path(m))?)
        }
        Some(I::AndIds(s)) => {
            Principal::And(set("and_ids", "ids", &s.ids, |x| principal(x, layer))?)
        }
        Some(I::OrIds(s)) => Principal::Or(set("or_ids", "ids", &s.ids, |x| principal(x, layer))?),
        Some(I::NotId(p)) => Principal::Not(Box::new(within("not_id", principal(p, layer))?)),
        Some(_) => return at("", "this principal is not implemented"),
        None => return at("", "a principal needs an identifier"),
    })
}

/// A `HeaderMatcher` (`name`, `string_match` or `present_match`, `invert_match`; the deprecated match forms
/// and `treat_missing_header_as_empty` are refused by field). Names compare case-insensitively, as Envoy's.
fn header(h: &HeaderMatcher) -> Partial<HeaderMatch> {
    // Envoy's rule (`string.min_len = 1`, a well-known header name).
    if h.name.is_empty() {
        return at("name", "a header matcher needs a name");
    }
    Ok(HeaderMatch {
        name: h.name.to_ascii_lowercase(),
        value: header_value(h)?,
        invert: h.invert_match,
    })
}

/// A `PathMatcher`: its `path` StringMatcher (Envoy's rule: required).
fn url_path(m: &PathMatcher) -> Partial<StringMatcher> {
    use sextant_proto::envoy::r#type::matcher::v3::path_matcher::Rule;
    match &m.rule {
        Some(Rule::Path(s)) => within("path", string_matcher(s)),
        None => at("path", "a path matcher needs a path"),
    }
}

/// A `CidrRange`: an IP address and a prefix length, which Envoy clamps to the address's bits.
fn cidr(c: &core::CidrRange) -> Partial<Cidr> {
    let address: IpAddr = c.address_prefix.parse().or_else(|_| {
        at(
            "address_prefix",
            format!("{:?} is not an IP address", c.address_prefix),
        )
    })?;
    let len = c.prefix_len.as_ref().map_or(0, |l| l.value);
    // Envoy's rule (`uint32.lte = 128`).
    if len > 128 {
        return at("prefix_len", format!("prefix length {len} is over 128"));
    }
    let bits: u8 = if address.is_ipv4() { 32 } else { 128 };
    Ok(Cidr {
        address,
        prefix_len: u8::try_from(len).map_or(bits, |l| l.min(bits)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(address: &str, prefix_len: u8) -> Cidr {
        Cidr {
            address: address.parse().expect("an IP"),
            prefix_len,
        }
    }

    #[test]
    fn cidr_ranges_compare_leading_bits_of_one_family() {
        let net = range("10.1.0.0", 16);
        assert!(net.contains("10.1.200.3".parse().expect("ip")));
        assert!(!net.contains("10.2.0.1".parse().expect("ip")));
        assert!(range("0.0.0.0", 0).contains("192.0.2.1".parse().expect("ip")));
        assert!(
            !range("0.0.0.0", 0).contains("::1".parse().expect("ip")),
            "families never mix"
        );
        assert!(range("192.0.2.7", 32).contains("192.0.2.7".parse().expect("ip")));
        assert!(!range("192.0.2.7", 32).contains("192.0.2.8".parse().expect("ip")));
        assert!(range("2001:db8::", 32).contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!range("2001:db8::", 32).contains("2001:db9::".parse().expect("ip")));
        assert!(range("::", 0).contains("::ffff:10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn prefix_lengths_past_the_address_are_clamped_as_envoy_does() {
        let c = cidr(&core::CidrRange {
            address_prefix: "10.0.0.1".into(),
            prefix_len: Some(sextant_proto::google::protobuf::UInt32Value { value: 64 }),
        })
        .expect("valid");
        assert_eq!(c, range("10.0.0.1", 32));
        let (path, _) = cidr(&core::CidrRange {
            address_prefix: "10.0.0.1".into(),
            prefix_len: Some(sextant_proto::google::protobuf::UInt32Value { value: 129 }),
        })
        .expect_err("over 128");
        assert_eq!(path, "prefix_len");
        let (path, reason) = cidr(&core::CidrRange {
            address_prefix: "example.com".into(),
            prefix_len: None,
        })
        .expect_err("not an IP");
        assert_eq!(path, "address_prefix");
        assert!(reason.contains("example.com"), "{reason}");
    }

    #[test]
    fn port_ranges_are_checked_as_envoy_checks_them() {
        let ok = port_range(&Int32Range {
            start: 8000,
            end: 65536,
        })
        .expect("valid");
        assert!(matches!(
            ok,
            Permission::DestinationPortRange {
                start: 8000,
                end: 65536
            }
        ));
        for (start, end, path) in [(-1, 10, "start"), (0, 65537, "end"), (10, 10, "")] {
            let (p, _) = port_range(&Int32Range { start, end }).expect_err("invalid");
            assert_eq!(p, path, "{start}..{end}");
        }
    }
}
