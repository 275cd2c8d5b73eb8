//! The `ip` and `cidr` CEL types and their functions, for policies about `source.ip` and `destination.ip`.
//!
//! The names and semantics follow the Kubernetes CEL IP library, which operators already know: `ip("10.0.0.1")`,
//! `cidr("10.0.0.0/8").containsIP(source.ip)`, `ip(source.ip).isLoopback()`. IP attributes reach CEL as
//! strings (so `source.ip == "10.0.0.1"` and `source.ip.startsWith("10.")` keep working); these functions
//! parse them. A string that is not an address or a prefix is an evaluation error, never a silent `false`.

use std::net::IpAddr;

use cel::common::types::{CelBool, CelInt, CelString, Kind, Type};
use cel::common::value::{StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

static IP_TYPE: Type = Type::simple_type(Kind::Opaque, "net.IP");
static CIDR_TYPE: Type = Type::simple_type(Kind::Opaque, "net.CIDR");

/// An IP address value (`ip("…")`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

/// An IP prefix value (`cidr("…")`): an address and a prefix length; host bits may be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Val for Ip {
    fn get_type(&self) -> &Type {
        &IP_TYPE
    }

    fn cel_type() -> &'static Type {
        &IP_TYPE
    }

    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Ip>() == Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl StaticVal for Ip {}

impl Val for Cidr {
    fn get_type(&self) -> &Type {
        &CIDR_TYPE
    }

    fn cel_type() -> &'static Type {
        &CIDR_TYPE
    }

    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Cidr>() == Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

impl StaticVal for Cidr {}

fn invalid(what: &str, text: &str) -> ExecutionError {
    ExecutionError::function_error(what, format!("{text:?} is not a valid {what}"))
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    // Digits only: `u8::from_str` would also take a leading `+`.
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= bits(addr)).then_some(Cidr { addr, prefix })
}

fn bits(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as a 128-bit number (IPv4 in the low 32 bits) and its width.
fn number(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl Cidr {
    fn mask(&self) -> u128 {
        let width = bits(self.addr);
        let host = width - self.prefix;
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        if host == 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    fn contains(&self, addr: IpAddr) -> bool {
        let (n, width) = number(addr);
        let (base, base_width) = number(self.addr);
        width == base_width && n & self.mask() == base & self.mask()
    }

    fn masked(&self) -> Cidr {
        let (base, _) = number(self.addr);
        let n = base & self.mask();
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(
                u32::try_from(n).unwrap_or_default(),
            )),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }
}

fn ip_of(text: &CelString<'_>) -> Result<Ip, ExecutionError> {
    parse_ip(text).map(Ip).ok_or_else(|| invalid("ip", text))
}

fn cidr_of(text: &CelString<'_>) -> Result<Cidr, ExecutionError> {
    parse_cidr(text).ok_or_else(|| invalid("cidr", text))
}

fn is_ip(text: &CelString<'_>) -> CelBool {
    parse_ip(text).is_some().into()
}

fn is_cidr(text: &CelString<'_>) -> CelBool {
    parse_cidr(text).is_some().into()
}

fn family(ip: &Ip) -> CelInt {
    CelInt::from(match ip.0 {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    })
}

fn is_loopback(ip: &Ip) -> CelBool {
    ip.0.is_loopback().into()
}

fn is_unspecified(ip: &Ip) -> CelBool {
    ip.0.is_unspecified().into()
}

fn link_local_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_unicast(ip: &Ip) -> CelBool {
    link_local_unicast(ip.0).into()
}

/// Go's (and so Kubernetes') definition: not unspecified, loopback, multicast, link-local or broadcast.
fn is_global_unicast(ip: &Ip) -> CelBool {
    let a = ip.0;
    let broadcast = matches!(a, IpAddr::V4(v4) if v4.is_broadcast());
    (!a.is_unspecified()
        && !a.is_loopback()
        && !a.is_multicast()
        && !link_local_unicast(a)
        && !broadcast)
        .into()
}

fn contains_ip(c: &Cidr, ip: &Ip) -> CelBool {
    c.contains(ip.0).into()
}

fn contains_ip_string(c: &Cidr, text: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    Ok(c.contains(ip_of(text)?.0).into())
}

fn contains_cidr(c: &Cidr, other: &Cidr) -> CelBool {
    (other.prefix >= c.prefix && c.contains(other.addr)).into()
}

fn contains_cidr_string(c: &Cidr, text: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    Ok(contains_cidr(c, &cidr_of(text)?))
}

fn cidr_ip(c: &Cidr) -> Ip {
    Ip(c.addr)
}

fn prefix_length(c: &Cidr) -> CelInt {
    CelInt::from(i64::from(c.prefix))
}

fn masked(c: &Cidr) -> Cidr {
    c.masked()
}

fn string_of_ip(ip: &Ip) -> CelString<'static> {
    CelString::from(ip.0.to_string())
}

fn string_of_cidr(c: &Cidr) -> CelString<'static> {
    CelString::from(format!("{}/{}", c.addr, c.prefix))
}

/// Registers the `ip` and `cidr` functions on `env`.
pub fn library(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn ip_of: (CelString) -> Result<Ip>, name = "ip", id = "ip_string")?;
    cel::add_overload!(env, fn cidr_of: (CelString) -> Result<Cidr>, name = "cidr", id = "cidr_string")?;
    cel::add_overload!(env, fn is_ip: (CelString) -> CelBool, name = "isIP")?;
    cel::add_overload!(env, fn is_cidr: (CelString) -> CelBool, name = "isCIDR")?;
    cel::add_overload!(env, fn string_of_ip: (Ip) -> CelString, name = "string", id = "string_ip")?;
    cel::add_overload!(env, fn string_of_cidr: (Cidr) -> CelString, name = "string", id = "string_cidr")?;
    cel::add_member_overload!(env, fn family: (Ip) -> CelInt)?;
    cel::add_member_overload!(env, fn is_loopback: (Ip) -> CelBool, name = "isLoopback")?;
    cel::add_member_overload!(env, fn is_unspecified: (Ip) -> CelBool, name = "isUnspecified")?;
    cel::add_member_overload!(env, fn is_link_local_unicast: (Ip) -> CelBool, name = "isLinkLocalUnicast")?;
    cel::add_member_overload!(env, fn is_global_unicast: (Ip) -> CelBool, name = "isGlobalUnicast")?;
    cel::add_member_overload!(env, fn contains_ip: (Cidr, Ip) -> CelBool, name = "containsIP")?;
    cel::add_member_overload!(env, fn contains_ip_string: (Cidr, CelString) -> Result<CelBool>, name = "containsIP")?;
    cel::add_member_overload!(env, fn contains_cidr: (Cidr, Cidr) -> CelBool, name = "containsCIDR")?;
    cel::add_member_overload!(env, fn contains_cidr_string: (Cidr, CelString) -> Result<CelBool>, name = "containsCIDR")?;
    cel::add_member_overload!(env, fn cidr_ip: (Cidr) -> Ip, name = "ip", id = "cidr_ip")?;
    cel::add_member_overload!(env, fn prefix_length: (Cidr) -> CelInt, name = "prefixLength")?;
    cel::add_member_overload!(env, fn masked: (Cidr) -> Cidr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_what_they_should() {
        let c = parse_cidr("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            !c.contains("::ffff:10.0.0.1".parse().unwrap()),
            "families differ"
        );
        let all = parse_cidr("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6 = parse_cidr("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert_eq!(
            parse_cidr("192.168.7.9/24").unwrap().masked(),
            parse_cidr("192.168.7.0/24").unwrap()
        );
        assert!(parse_cidr("::/128").is_some());
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/",
            "::/129",
        ] {
            assert!(parse_cidr(bad).is_none(), "{bad}");
        }
    }
}
