//! [`Config`] → the nat table's chains and rules, as istio-iptables (`tools/istio-iptables/pkg/capture/run.go`,
//! REDIRECT mode, no DNS capture) writes them, in its order; then the `iptables-restore` text.

use std::fmt::Write as _;

use crate::flags::{Config, Inbound, Outbound};

/// The table every rule goes to.
pub const TABLE: &str = "nat";

/// Our chains, in the order istio-iptables declares them.
pub const CHAINS: [&str; 4] = [INBOUND, REDIRECT, IN_REDIRECT, OUTPUT];

/// Inbound TCP, from PREROUTING: RETURN or on to [`IN_REDIRECT`].
const INBOUND: &str = "ISTIO_INBOUND";
/// Outbound capture: REDIRECT to the proxy port.
const REDIRECT: &str = "ISTIO_REDIRECT";
/// Inbound capture: REDIRECT to the inbound capture port.
const IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
/// Everything locally generated, from OUTPUT: RETURN or on to [`REDIRECT`] / [`IN_REDIRECT`].
const OUTPUT: &str = "ISTIO_OUTPUT";

/// IPv4 or IPv6: which tool applies the rules, and the loopback addresses they name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// The source address of the proxy's connections to the application (Envoy's inbound passthrough binds
    /// it), never captured.
    fn passthrough_source(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }

    /// The loopback destination applications call each other on, never captured (istio-iptables'
    /// `ISTIO_OUTBOUND_IPV4_LOOPBACK_CIDR` default).
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The iptables command prefix: `iptables` or `ip6tables`.
    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// One rule appended to a chain: `-A CHAIN SPEC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The chain (ours, or the built-in PREROUTING / OUTPUT for the jumps into ours).
    pub chain: &'static str,
    /// Matches and target, as iptables takes them.
    pub spec: String,
}

/// The rules of one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Which family.
    pub family: Family,
    /// In the order they are appended.
    pub rules: Vec<Rule>,
}

/// Everything one run writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    /// The IPv4 rules (always).
    pub v4: Rules,
    /// The IPv6 rules, when asked for.
    pub v6: Option<Rules>,
}

/// The rules for `config`. Pure.
pub fn rules(config: &Config) -> RuleSet {
    RuleSet {
        v4: family_rules(config, Family::V4),
        v6: config.ipv6.then(|| family_rules(config, Family::V6)),
    }
}

fn family_rules(config: &Config, family: Family) -> Rules {
    let mut rules = Vec::new();
    let mut add = |chain: &'static str, spec: String| rules.push(Rule { chain, spec });
    let tunnel = config.inbound_tunnel_port;
    let in_family = |addr: &std::net::IpAddr| addr.is_ipv4() == (family == Family::V4);

    add(INBOUND, format!("-p tcp --dport {tunnel} -j RETURN"));
    add(
        REDIRECT,
        format!("-p tcp -j REDIRECT --to-ports {}", config.proxy_port),
    );
    add(
        IN_REDIRECT,
        format!(
            "-p tcp -j REDIRECT --to-ports {}",
            config.inbound_capture_port
        ),
    );

    match &config.inbound {
        Inbound::None => {}
        Inbound::All { except } => {
            add("PREROUTING", format!("-p tcp -j {INBOUND}"));
            for port in except {
                add(INBOUND, format!("-p tcp --dport {port} -j RETURN"));
            }
            add(INBOUND, format!("-p tcp -j {IN_REDIRECT}"));
        }
        Inbound::Ports(ports) => {
            add("PREROUTING", format!("-p tcp -j {INBOUND}"));
            for port in ports {
                add(INBOUND, format!("-p tcp --dport {port} -j {IN_REDIRECT}"));
            }
        }
    }

    add("OUTPUT", format!("-j {OUTPUT}"));
    // Port exclusions come before the proxy's own traffic is looked at: they hold for everybody.
    for port in &config.exclude_outbound_ports {
        add(OUTPUT, format!("-p tcp --dport {port} -j RETURN"));
        add(OUTPUT, format!("-p udp --dport {port} -j RETURN"));
    }
    let source = family.passthrough_source();
    add(OUTPUT, format!("-o lo -s {source} -j RETURN"));

    // An -i range on loopback means the user wants loopback captured: then the application's own calls over
    // lo are not let through (istio-iptables looks at both families' ranges).
    let loopback_included = match &config.outbound {
        Outbound::All => false,
        Outbound::Cidrs(cidrs) => cidrs.iter().any(|c| c.addr.is_loopback()),
    };
    let loopback = family.loopback();
    let owners = config
        .proxy_uids
        .iter()
        .map(|id| ("--uid-owner", id))
        .chain(config.proxy_gids.iter().map(|id| ("--gid-owner", id)));
    for (owner, id) in owners {
        // The proxy calling the pod's own address (an application calling itself through its service's VIP)
        // goes to the inbound side of the proxy.
        add(
            OUTPUT,
            format!(
                "-o lo ! -d {loopback} -p tcp ! --dport {tunnel} -m owner {owner} {id} -j {IN_REDIRECT}"
            ),
        );
        // An application calling itself by its endpoint address over lo is left alone.
        if !loopback_included {
            add(OUTPUT, format!("-o lo -m owner ! {owner} {id} -j RETURN"));
        }
        // The proxy's own traffic, whatever the protocol and destination.
        add(OUTPUT, format!("-m owner {owner} {id} -j RETURN"));
    }

    add(OUTPUT, format!("-d {loopback} -j RETURN"));
    for cidr in config.exclude_cidrs.iter().filter(|c| in_family(&c.addr)) {
        add(OUTPUT, format!("-d {cidr} -j RETURN"));
    }
    for port in &config.outbound_ports {
        add(OUTPUT, format!("-p tcp --dport {port} -j {REDIRECT}"));
    }
    match &config.outbound {
        Outbound::All => add(OUTPUT, format!("-j {REDIRECT}")),
        Outbound::Cidrs(cidrs) => {
            for cidr in cidrs.iter().filter(|c| in_family(&c.addr)) {
                add(OUTPUT, format!("-d {cidr} -j {REDIRECT}"));
            }
        }
    }
    Rules { family, rules }
}

impl Rules {
    /// The `iptables-restore --noflush` input: each of our chains declared (`:CHAIN - [0:0]` creates it, or
    /// flushes it when it exists), then the rules. On a table that holds none of our rules it is the whole
    /// change; [`crate::apply_input`] adds the deletion of earlier jumps into our chains.
    pub fn restore_text(&self) -> String {
        let mut text = format!("*{TABLE}\n");
        for chain in CHAINS {
            let _ = writeln!(text, ":{chain} - [0:0]");
        }
        self.write_rules(&mut text);
        text.push_str("COMMIT\n");
        text
    }

    /// Appends `-A CHAIN SPEC` per rule.
    pub(crate) fn write_rules(&self, text: &mut String) {
        for rule in &self.rules {
            let _ = writeln!(text, "-A {} {}", rule.chain, rule.spec);
        }
    }
}

impl RuleSet {
    /// What `--dry-run` prints: the IPv4 input, then the IPv6 one when asked for, each after a comment line
    /// naming the command it is for (iptables-restore skips comments, so either part can be piped to it).
    pub fn restore_text(&self) -> String {
        let mut text = String::new();
        for rules in std::iter::once(&self.v4).chain(&self.v6) {
            let _ = writeln!(text, "# {}-restore --noflush", rules.family.tool());
            text.push_str(&rules.restore_text());
        }
        text
    }
}

#[cfg(test)]
mod tests;
