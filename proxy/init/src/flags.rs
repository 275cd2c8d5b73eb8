//! istio-init's flags as given (strings, with the defaults Istio's sidecar injector passes) and their pure
//! validation into a [`Config`]: every port, id and CIDR parsed, lists split as istio-iptables splits them
//! (commas, empty items skipped), anything else refused with the flag's name and a hint.

use std::fmt;
use std::net::IpAddr;

/// The flags as given on the command line, as istio-iptables takes them. [`Flags::default`] is what Istio's
/// sidecar injector passes to istio-init: `-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x '' -b '*'
/// -d 15090,15021,15020`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flags {
    /// `-p`, `--envoy-port`: where outbound TCP is redirected (the proxy's virtualOutbound).
    pub proxy_port: String,
    /// `-z`, `--inbound-capture-port`: where inbound TCP is redirected (virtualInbound).
    pub inbound_capture_port: String,
    /// `-e`, `--inbound-tunnel-port`: Istio's HBONE tunnel port, never captured inbound nor looped back.
    pub inbound_tunnel_port: String,
    /// `-u`, `--proxy-uid`: the proxy's uids (comma-separated), whose traffic is not captured.
    pub proxy_uid: String,
    /// `-g`, `--proxy-gid`: the proxy's gids; by default the same as `-u`, as in istio-iptables.
    pub proxy_gid: Option<String>,
    /// `-m`, `--istio-inbound-interception-mode`: `REDIRECT` (TPROXY is refused).
    pub interception_mode: String,
    /// `-i`, `--istio-service-cidr`: outbound CIDRs captured; `*` all, empty none.
    pub include_cidrs: String,
    /// `-x`, `--istio-service-exclude-cidr`: outbound CIDRs never captured.
    pub exclude_cidrs: String,
    /// `-b`, `--istio-inbound-ports`: inbound ports captured; `*` all, empty none.
    pub inbound_ports: String,
    /// `-d`, `--istio-local-exclude-ports`: inbound ports not captured when `-b` is `*`.
    pub exclude_inbound_ports: String,
    /// `-q`, `--istio-outbound-ports`: outbound ports captured whatever their destination.
    pub outbound_ports: String,
    /// `-o`, `--istio-local-outbound-ports-exclude`: outbound ports never captured (TCP and UDP).
    pub exclude_outbound_ports: String,
    /// `--ipv6`: also write the IPv6 rules (`ip6tables-restore`); implied by an IPv6 CIDR in `-i` or `-x`.
    pub ipv6: bool,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            proxy_port: "15001".into(),
            inbound_capture_port: "15006".into(),
            inbound_tunnel_port: "15008".into(),
            proxy_uid: "1337".into(),
            proxy_gid: None,
            interception_mode: "REDIRECT".into(),
            include_cidrs: "*".into(),
            exclude_cidrs: String::new(),
            inbound_ports: "*".into(),
            exclude_inbound_ports: "15090,15021,15020".into(),
            outbound_ports: String::new(),
            exclude_outbound_ports: String::new(),
            ipv6: false,
        }
    }
}

/// A validated configuration: what the rules are generated from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Outbound capture port (`-p`).
    pub proxy_port: u16,
    /// Inbound capture port (`-z`).
    pub inbound_capture_port: u16,
    /// Tunnel port (`-e`).
    pub inbound_tunnel_port: u16,
    /// The proxy's uids (`-u`).
    pub proxy_uids: Vec<u32>,
    /// The proxy's gids (`-g`).
    pub proxy_gids: Vec<u32>,
    /// Which inbound connections are captured (`-b`, `-d`).
    pub inbound: Inbound,
    /// Which outbound destinations are captured (`-i`).
    pub outbound: Outbound,
    /// Outbound destinations never captured (`-x`).
    pub exclude_cidrs: Vec<Cidr>,
    /// Outbound ports captured whatever the destination (`-q`).
    pub outbound_ports: Vec<u16>,
    /// Outbound ports never captured (`-o`).
    pub exclude_outbound_ports: Vec<u16>,
    /// Whether IPv6 rules are written.
    pub ipv6: bool,
}

/// Inbound capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `-b ''`: none.
    None,
    /// `-b '*'`: every port but these (`-d`).
    All {
        /// Ports let through.
        except: Vec<u16>,
    },
    /// `-b 80,443`: these ports only.
    Ports(Vec<u16>),
}

/// Outbound capture by destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// `-i '*'`: every destination.
    All,
    /// `-i 10.0.0.0/8,...`: these CIDRs only (none when empty).
    Cidrs(Vec<Cidr>),
}

/// An address prefix, written back as given (`10.0.0.0/8`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A flag whose value cannot be used; nothing is applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// Not a TCP port.
    #[error("{flag}: {value:?} is not a port (1-65535)")]
    Port {
        /// The flag.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// Not a CIDR.
    #[error("{flag}: {value:?} is not a CIDR")]
    Cidr {
        /// The flag.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// `*` where the flag takes a list only.
    #[error("{flag}: \"*\" is not accepted here")]
    Wildcard {
        /// The flag.
        flag: &'static str,
    },
    /// Not a numeric uid or gid.
    #[error("{flag}: {value:?} is not a numeric id")]
    Id {
        /// The flag.
        flag: &'static str,
        /// The offending item.
        value: String,
    },
    /// `-u`/`-g` naming nobody: every connection of the proxy would loop back to itself.
    #[error("{flag}: no id given")]
    NoId {
        /// The flag.
        flag: &'static str,
    },
    /// An interception mode other than REDIRECT and TPROXY.
    #[error("{flag}: {value:?} is not an interception mode")]
    Mode {
        /// The flag.
        flag: &'static str,
        /// The value.
        value: String,
    },
    /// TPROXY: istio-init's mangle-table rules, policy routing and the proxy's transparent sockets are not
    /// implemented.
    #[error("{flag}: TPROXY interception is not implemented")]
    Tproxy {
        /// The flag.
        flag: &'static str,
    },
}

impl FlagError {
    /// What to do about it, one line.
    pub fn hint(&self) -> &'static str {
        match self {
            FlagError::Port { .. } => {
                "ports are numbers from 1 to 65535, lists are comma-separated (e.g. -d 15090,15021,15020)"
            }
            FlagError::Cidr { .. } => {
                "write ADDRESS/PREFIX, comma-separated (e.g. -x 10.0.0.0/8,fd00::/8); a single address is 10.1.2.3/32"
            }
            FlagError::Wildcard { .. } => {
                "list the CIDRs or ports; \"*\" stands alone, in -i (all outbound) or -b (all inbound)"
            }
            FlagError::Id { .. } => "give numeric ids, comma-separated (e.g. -u 1337)",
            FlagError::NoId { .. } => {
                "the proxy's uid is needed so its own traffic is not captured: -u 1337"
            }
            FlagError::Mode { .. } | FlagError::Tproxy { .. } => {
                "use -m REDIRECT (the default; sextant proxy's capture listeners read SO_ORIGINAL_DST)"
            }
        }
    }
}

const PROXY_PORT: &str = "-p (--envoy-port)";
const INBOUND_CAPTURE_PORT: &str = "-z (--inbound-capture-port)";
const INBOUND_TUNNEL_PORT: &str = "-e (--inbound-tunnel-port)";
const PROXY_UID: &str = "-u (--proxy-uid)";
const PROXY_GID: &str = "-g (--proxy-gid)";
const MODE: &str = "-m (--istio-inbound-interception-mode)";
const INCLUDE_CIDRS: &str = "-i (--istio-service-cidr)";
const EXCLUDE_CIDRS: &str = "-x (--istio-service-exclude-cidr)";
const INBOUND_PORTS: &str = "-b (--istio-inbound-ports)";
const EXCLUDE_INBOUND_PORTS: &str = "-d (--istio-local-exclude-ports)";
const OUTBOUND_PORTS: &str = "-q (--istio-outbound-ports)";
const EXCLUDE_OUTBOUND_PORTS: &str = "-o (--istio-local-outbound-ports-exclude)";

impl Flags {
    /// Checks every flag (no I/O) and returns the configuration, or the first flag that cannot be used.
    pub fn validate(&self) -> Result<Config, FlagError> {
        match self.interception_mode.trim() {
            "REDIRECT" => {}
            "TPROXY" => return Err(FlagError::Tproxy { flag: MODE }),
            other => {
                return Err(FlagError::Mode {
                    flag: MODE,
                    value: other.to_string(),
                });
            }
        }
        let proxy_port = port(PROXY_PORT, &self.proxy_port)?;
        let inbound_capture_port = port(INBOUND_CAPTURE_PORT, &self.inbound_capture_port)?;
        let inbound_tunnel_port = port(INBOUND_TUNNEL_PORT, &self.inbound_tunnel_port)?;
        let proxy_uids = ids(PROXY_UID, &self.proxy_uid)?;
        let proxy_gids = ids(
            PROXY_GID,
            self.proxy_gid.as_deref().unwrap_or(&self.proxy_uid),
        )?;
        let except = ports(EXCLUDE_INBOUND_PORTS, &self.exclude_inbound_ports)?;
        let inbound = if self.inbound_ports.trim() == "*" {
            Inbound::All { except }
        } else {
            match ports(INBOUND_PORTS, &self.inbound_ports)? {
                p if p.is_empty() => Inbound::None,
                p => Inbound::Ports(p),
            }
        };
        let outbound = if self.include_cidrs.trim() == "*" {
            Outbound::All
        } else {
            Outbound::Cidrs(cidrs(INCLUDE_CIDRS, &self.include_cidrs)?)
        };
        let exclude_cidrs = cidrs(EXCLUDE_CIDRS, &self.exclude_cidrs)?;
        let outbound_ports = ports(OUTBOUND_PORTS, &self.outbound_ports)?;
        let exclude_outbound_ports = ports(EXCLUDE_OUTBOUND_PORTS, &self.exclude_outbound_ports)?;
        let v6_cidr = match &outbound {
            Outbound::All => false,
            Outbound::Cidrs(c) => c.iter().any(|c| c.addr.is_ipv6()),
        } || exclude_cidrs.iter().any(|c| c.addr.is_ipv6());
        Ok(Config {
            proxy_port,
            inbound_capture_port,
            inbound_tunnel_port,
            proxy_uids,
            proxy_gids,
            inbound,
            outbound,
            exclude_cidrs,
            outbound_ports,
            exclude_outbound_ports,
            ipv6: self.ipv6 || v6_cidr,
        })
    }
}

/// The items of a list as istio-iptables splits it: by commas, empty items skipped (we also trim spaces).
fn items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn port(flag: &'static str, value: &str) -> Result<u16, FlagError> {
    match value.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(FlagError::Port {
            flag,
            value: value.to_string(),
        }),
    }
}

fn ports(flag: &'static str, list: &str) -> Result<Vec<u16>, FlagError> {
    items(list)
        .map(|p| {
            if p == "*" {
                Err(FlagError::Wildcard { flag })
            } else {
                port(flag, p)
            }
        })
        .collect()
}

fn ids(flag: &'static str, list: &str) -> Result<Vec<u32>, FlagError> {
    let ids = items(list)
        .map(|id| {
            id.parse::<u32>().map_err(|_| FlagError::Id {
                flag,
                value: id.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(FlagError::NoId { flag });
    }
    Ok(ids)
}

fn cidrs(flag: &'static str, list: &str) -> Result<Vec<Cidr>, FlagError> {
    items(list)
        .map(|c| {
            if c == "*" {
                return Err(FlagError::Wildcard { flag });
            }
            let bad = || FlagError::Cidr {
                flag,
                value: c.to_string(),
            };
            let (addr, len) = c.split_once('/').ok_or_else(bad)?;
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let len: u8 = len.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(bad());
            }
            Ok(Cidr { addr, len })
        })
        .collect()
}

#[cfg(test)]
mod tests;
