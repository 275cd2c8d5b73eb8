//! `sextant proxy-init`: istio-init's flags → `proxy-init`'s validated config → the rules, printed
//! (`--dry-run`), applied with the machine's iptables-restore, or removed (`--clean`).

use crate::{Failure, fail, out};

/// istio-init's (`istio-iptables`) flags, short and long forms, with the values Istio's sidecar injector
/// passes as defaults.
#[derive(clap::Args)]
pub struct ProxyInitArgs {
    /// Port outbound TCP is redirected to (the proxy's virtualOutbound listener).
    #[arg(short = 'p', long = "envoy-port", default_value = "15001")]
    proxy_port: String,
    /// Port inbound TCP is redirected to (the proxy's virtualInbound listener).
    #[arg(short = 'z', long = "inbound-capture-port", default_value = "15006")]
    inbound_capture_port: String,
    /// Istio's tunnel (HBONE) port: never captured inbound, never looped back to the inbound side.
    #[arg(short = 'e', long = "inbound-tunnel-port", default_value = "15008")]
    inbound_tunnel_port: String,
    /// The proxy's uids (comma-separated): their traffic is not captured. Run the proxy as one of them.
    #[arg(short = 'u', long = "proxy-uid", default_value = "1337")]
    proxy_uid: String,
    /// The proxy's gids (comma-separated); by default the same as -u.
    #[arg(short = 'g', long = "proxy-gid")]
    proxy_gid: Option<String>,
    /// Inbound interception mode: REDIRECT (TPROXY is refused).
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        default_value = "REDIRECT"
    )]
    interception_mode: String,
    /// Outbound destinations captured, comma-separated CIDRs; `*` all, empty none.
    #[arg(short = 'i', long = "istio-service-cidr", default_value = "*")]
    include_cidrs: String,
    /// Outbound destinations never captured, comma-separated CIDRs.
    #[arg(short = 'x', long = "istio-service-exclude-cidr", default_value = "")]
    exclude_cidrs: String,
    /// Inbound ports captured, comma-separated; `*` all, empty none.
    #[arg(short = 'b', long = "istio-inbound-ports", default_value = "*")]
    inbound_ports: String,
    /// Inbound ports not captured when -b is `*` (Istio: Prometheus 15090, health 15021, agent 15020).
    #[arg(
        short = 'd',
        long = "istio-local-exclude-ports",
        default_value = "15090,15021,15020"
    )]
    exclude_inbound_ports: String,
    /// Outbound ports captured whatever their destination, comma-separated.
    #[arg(short = 'q', long = "istio-outbound-ports", default_value = "")]
    outbound_ports: String,
    /// Outbound ports never captured (TCP and UDP), comma-separated.
    #[arg(
        short = 'o',
        long = "istio-local-outbound-ports-exclude",
        default_value = ""
    )]
    exclude_outbound_ports: String,
    /// Also write the IPv6 rules (ip6tables-restore); implied by an IPv6 CIDR in -i or -x.
    #[arg(long)]
    ipv6: bool,
    /// Print the rules in iptables-restore format and change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Remove the chains and jump rules proxy-init added (IPv4, and IPv6 where present), nothing else.
    #[arg(long, visible_alias = "cleanup-only", conflicts_with = "dry_run")]
    clean: bool,
    /// istio-init's DNS capture (to pilot-agent's DNS proxy on 15053): refused, sextant has no DNS proxy.
    #[arg(long)]
    redirect_dns: bool,
}

impl ProxyInitArgs {
    fn flags(&self) -> proxy_init::Flags {
        proxy_init::Flags {
            proxy_port: self.proxy_port.clone(),
            inbound_capture_port: self.inbound_capture_port.clone(),
            inbound_tunnel_port: self.inbound_tunnel_port.clone(),
            proxy_uid: self.proxy_uid.clone(),
            proxy_gid: self.proxy_gid.clone(),
            interception_mode: self.interception_mode.clone(),
            include_cidrs: self.include_cidrs.clone(),
            exclude_cidrs: self.exclude_cidrs.clone(),
            inbound_ports: self.inbound_ports.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            outbound_ports: self.outbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            ipv6: self.ipv6,
        }
    }
}

/// Validates every flag before anything is read or written, then prints, applies or cleans.
pub fn run(args: &ProxyInitArgs) -> Result<(), Failure> {
    if args.redirect_dns {
        return Err(fail(
            "--redirect-dns: DNS capture is not implemented (nothing in sextant answers DNS on 15053)",
            "leave DNS uncaptured: drop --redirect-dns",
        ));
    }
    let config = args.flags().validate().map_err(|e| fail(&e, e.hint()))?;
    if args.clean {
        let done = proxy_init::clean(config.ipv6).map_err(|e| fail(&e, e.hint()))?;
        if done.is_empty() {
            eprintln!("proxy-init: nothing of ours in the nat table(s); nothing changed");
        }
        for d in done {
            eprintln!(
                "proxy-init: {} nat: removed {} chains and {} jump rules",
                d.family.tool(),
                d.chains,
                d.rules
            );
        }
        return Ok(());
    }
    let set = proxy_init::rules(&config);
    if args.dry_run {
        return out(&set.restore_text());
    }
    for d in proxy_init::apply(&set).map_err(|e| fail(&e, e.hint()))? {
        eprintln!(
            "proxy-init: {} nat: {} chains, {} rules applied",
            d.family.tool(),
            d.chains,
            d.rules
        );
    }
    Ok(())
}
